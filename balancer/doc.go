// Package balancer is the automatic load balancer's elected loop: MOSIX-style
// moves of running jobs from loaded nodes to idle ones, decided by the policy
// of package placement (placement.Balance, a pure function) on a snapshot of
// package pidtable, and carried out as migrations by the jobs' source agents.
//
// Every agent (unless started with --balancer=false) runs a Balancer, which
// campaigns in an etcd election on the agent's session; the winner runs a
// round every second while the cluster's setting (/ssi/balancer/config) says
// enabled. A Balancer knows no HTTP and no agent: it moves jobs through a
// Mover, reads and writes etcd through a Table, and records its decisions
// through Config.Record; the agent wires them (and keeps the GET and PUT
// /v1/balancer handlers).
//
// Where to look: balancer.go (the Balancer, its election and its rounds'
// ticker), round.go (one round: the policy's view of a snapshot, the moves
// started and their outcome, rejections), cost.go (the cost model measured
// from the moves made), backoff.go (failed moves held back per job), and
// status.go (what the leader publishes).
package balancer

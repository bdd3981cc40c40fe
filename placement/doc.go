// Package placement decides where a job runs. It is pure: a snapshot of nodes and
// a request go in, a node name (or a typed error saying why none fits) comes out.
// No I/O, no clocks; randomness comes from the caller's *rand.Rand so decisions are
// reproducible in tests and simulations.
//
// Filters run first and in this order: an explicit node (--node), readiness,
// label constraints, then free capacity against the request's CPUs and memory.
// The policy picks among the nodes that remain:
//
//	random        uniformly at random (the default)
//	least-loaded  the node with the lowest load per core, ties by fewest jobs, then name
//	two-choices   two distinct random candidates, the less loaded of them
//
// Balance is the automatic balancer's policy, MOSIX-style: given the load
// table and the jobs on overloaded nodes it returns the migrations worth their
// cost (expected remaining time, estimated from a job's age, times the
// slowdown saved, against memory / transfer rate + freeze) and, for every job
// it considered and left, the reason. The agent runs it every second and
// carries the moves out; package placement/sim drives the same code with
// synthetic workloads.
//
// Example:
//
//	name, err := placement.Place(nodes, placement.Request{CPUs: 1}, rand.New(rand.NewPCG(1, 2)))
//	plan := placement.Balance(loadTable, jobsOnBusyNodes, placement.BalanceConfig{})
package placement

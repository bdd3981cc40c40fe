// Package agent is the node daemon, `ssi agent`.
//
// An agent registers its node in etcd, keeps the node's status key alive on a
// lease (TTL 5 s) and refreshes its load every second, serves the HTTP API of
// package api, and wires the packages that do the work: its jobs are package
// supervisor's (start through `ssi shim`, exits, signals, figures, adoption
// after a restart, gc), migrations package migrate's, the balancer package
// balancer's, services package service's, the admins' edits of nodes
// (cordon, labels, a drain's request, rm) package nodes's, and carrying a
// drain out package drain's. Any agent accepts any request: it places new
// jobs (package placement) and forwards them, and forwards per-gpid
// requests, to the owner node.
//
// Jobs outlive their agent. A restarted agent reconciles the process table
// in etcd with the job directories (jobs.go, reconcile): it adopts jobs whose
// shim still runs, resolves the migrations and checkpoints its stop
// interrupted, records the exit of jobs that ended meanwhile, and marks Lost
// those whose shim vanished without a status.
//
// Every write of a job's record is a transition of the lifecycle table in
// package pidtable; the agent keeps a watched copy of the records that name
// its node and records lost, within seconds, any that says a job runs here
// where none does (heal.go).
//
// This package is the HTTP edge: errors from the packages it wires carry an
// errdefs kind, and become the API's codes in one place (writeError).
//
// Where to look: jobs.go (who may start what, reconcile), migrate.go (the
// HTTP edge of migrations, both sides; the protocol itself is package
// migrate) and migratehost.go (what migrate is given of the agent: the
// supervisor's jobs, the rollback of a migration a restart interrupted),
// checkpoint.go, balancer.go (wires package balancer: its Mover and routes),
// services.go (package service's controller and routes), nodes.go (package
// nodes and the drain controller wired, their routes), status.go (the
// node's status, over pidtable.StatusLoop) and recent.go (figures and
// placement), stdin.go, and routes.go (every route and
// the role it needs), http.go (the API), access.go (package access wired:
// who may call what, and the certificates' routes; the decisions are
// package access's).
//
// etcd.go connects the agent to the cluster's etcd. Without --etcd-endpoints
// the agent runs an embedded single-member etcd (the first node of a cluster);
// with --etcd-member a node joins that etcd as one more member (a learner
// first, promoted once caught up), which is how three nodes hold a 3-member
// etcd that survives any one's loss; the other agents are its clients, or
// every agent points at an external etcd cluster.
package agent

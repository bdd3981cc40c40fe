// Package agent is the node daemon, `ssi agent`.
//
// An agent registers its node in etcd, keeps the node's status key alive on a
// lease (TTL 5 s) and refreshes its load every second, serves the HTTP API of
// package api, and supervises the jobs it owns through one `ssi shim` each
// (package shim). Any agent accepts any request: it places new jobs (package
// placement) and forwards them, and forwards per-gpid requests, to the owner node.
//
// Jobs outlive their agent. Each job's directory under <data-dir>/jobs/<gpid>
// holds its spec, its output and, once it ends, its exit status; a restarted agent
// reconciles the process table in etcd with those directories: it adopts jobs
// whose shim still runs, records the exit of those that ended meanwhile, and marks
// Lost those whose shim vanished without a status.
//
// Every write of a job's record is a transition of the lifecycle table in
// package pidtable; the agent keeps a watched copy of the records that name
// its node and records lost, within seconds, any that says a job runs here
// where none does (heal.go).
//
// Where to look: jobs.go (start, end, reconcile, signals), migrate.go (the
// HTTP edge of migrations, both sides; the protocol itself is package
// migrate) and migratehost.go (what migrate is given of the agent: its jobs,
// the hand-over of a migrated job, the rollback of one a restart
// interrupted), checkpoint.go, balancer.go (wires package balancer: its Mover
// and routes), services.go (package service's controller and routes),
// status.go and recent.go (figures and placement), stdin.go, and routes.go
// (every route and the role it needs), http.go, auth.go, pki.go, revoke.go,
// renew.go, audit.go (the API, who may call it, and their certificates).
//
// Without --etcd-endpoints the agent runs an embedded single-member etcd (the
// first node of a cluster); the others point at it, or every agent points at an
// external etcd cluster.
package agent

// Package hollow runs hollow nodes: many light fake nodes in one process,
// for testing and measuring the control plane at fleet size on one machine
// (as Kubernetes' kubemark does with hollow kubelets).
//
// A hollow node is the etcd side of a real agent over a fake job runner. It
// makes the same pidtable calls a real agent does, so nothing in etcd tells
// it from a real node:
//
//   - it registers with Store.RegisterNode, holds its own etcd session
//     (concurrency.Session, its own lease of LeaseTTL seconds) and keeps its
//     status key on that lease, measured every second and written when it
//     says something new (pidtable.StatusGate), as the
//     agent's status loop does; a lost lease is replaced, as the agent does;
//   - its fake jobs are created with Store.Create (a gpid from the node's own
//     block, pidtable/gpids.go), started with the Start transition, ended
//     with the End transition (exited 0) after their lifetime, and archived
//     with Store.ArchiveAt after the retention, as package supervisor does
//     for real jobs; no shim, no process, no CRIU.
//
// What a hollow node serves is a subset of the agent API, one server for
// every node of the process (api.go): run, wait, logs, signal, and moves of
// its fake jobs to other hollow nodes (migrate.go, the fake checkpointer).
// What a hollow node does not do: it takes no part in the balancer's or
// the drain controller's elections, and it does not watch the table (it
// knows its own jobs because it made them). Its jobs report the CPU demand
// Config.JobDemand, so the balancer plans on them like on any other.
//
// A Cluster is N hollow nodes sharing one etcd client:
//
//	c, err := hollow.Start(ctx, hollow.Config{Etcd: cli, Prefix: "h", Nodes: 1000, Jobs: 100, Addr: "127.0.0.1:1"})
//	...
//	c.Kill("h-0017") // a crash: the node stops, its lease expires after LeaseTTL
//	c.Stop()         // every node ends its jobs and revokes its lease
//
// `ssi agent --hollow N` runs a Cluster with a small control API (Handler)
// to list the nodes and kill or stop one.
package hollow

// Package metrics is an agent's Prometheus metrics: their definitions, one
// registry per agent (never the default registry), and the few calls the
// agent's code makes where something happens.
//
// Exported, and why:
//   - New(Config) returns a *Metrics holding its own prometheus.Registry,
//     with the Go runtime's and the process's collectors, and a collector
//     that reads gauges (jobs by state) at scrape time from what the agent
//     already watches, through Config's functions: no loop of its own.
//   - Handler serves the registry (promhttp.HandlerFor), for the agent's
//     --metrics-listen address and its GET /v1/metrics route.
//   - Spawned, Ended, Migrated, Checkpointed and Event are counted where the
//     agent starts a job, the supervisor records an end, the source agent
//     finishes a migration, a checkpoint is taken, and an event is recorded
//     (the balancer's decisions among them).
//   - EtcdInterceptor is a gRPC unary client interceptor for the agent's etcd
//     client: the latency of each etcd request, by method.
//
// The counting methods (Spawned ... Balanced, and EtcdInterceptor's
// interceptor) are safe on a nil *Metrics (they count nothing), so code and
// tests that make an agent without metrics need no checks. Labels are few
// and bounded (node, method, outcome, state, decision, kind): never a gpid or
// a user. docs/CLI.md ("Metrics") lists every metric.
package metrics

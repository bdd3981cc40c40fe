// Package isolate confines a job: its cgroup (CPU and memory limits, process
// listing, usage figures) on cgroup v1 or v2 through opencontainers/cgroups, and the
// namespace flags a job's PID 1 is cloned with.
//
// Every job gets the cgroup <parent>/<node>/<gpid>, /ssi/<node>/<gpid> by default
// (per node, because the nodes of a local cluster share one kernel). The agent creates it with the job's limits
// before the job starts; the job's shim moves the job's init into it before the job
// runs any user code, and removes it once the job is gone.
package isolate

// Package supervisor keeps the jobs of one node: it starts them through
// their shim (package shim) in their cgroup (package isolate), records how
// they end in the process table (package pidtable), signals them, feeds and
// holds their stdin, samples their figures for the node's status, adopts
// them after an agent restart, and forgets them once they ended long ago or
// moved away.
//
// A job outlives its agent. Its directory, <jobs-dir>/<gpid>, holds its spec,
// its output and, once it ended, its exit status (the shim writes them); the
// agent that starts again adopts the jobs whose shim still runs (Recover) and
// records the ends that happened meanwhile.
//
// The supervisor is the registry package migrate and the checkpoint store
// work on: a Job is a migrate.Job, MarkBusy reserves one for a dump, Add
// supervises a job a restore made here, Forget ends this node's part in one
// that moved away.
//
// Errors carry an errdefs kind (an invalid request, a job that is not
// running here, a busy one); the agent's HTTP edge turns them into the API's
// codes.
package supervisor

// Package clusterfs shows the cluster as a read-only file tree, in the spirit
// of Plan 9 and of Linux's /proc, served over FUSE (hanwen/go-fuse) by
// `ssi fs MOUNTPOINT`:
//
//	proc/<gpid>/status    the job's record: "Key:\tvalue" lines, as /proc/PID/status
//	proc/<gpid>/node      the node that runs it, one line
//	proc/<gpid>/cmdline   its argv, NUL-separated, as /proc/PID/cmdline
//	proc/<gpid>/stdout    what it wrote to stdout so far (grows: tail -f works)
//	proc/<gpid>/stderr    what it wrote to stderr so far
//	nodes/<name>/status   the node: address, Ready, CPUs, memory, load, demand, jobs
//	nodes/<name>/jobs     its live jobs, one "gpid user state command" line each
//
// Everything comes from the API the caller's certificate allows (GET
// /v1/procs, /v1/nodes, /v1/procs/GPID/logs): a user sees the same jobs in
// the tree as in `ssi ps -A`. The process and node tables are read at most
// once per TTL (one second by default) whatever the number of files read; a
// job's output is fetched incrementally (from the offset already read) and
// kept in memory while the file system is mounted.
package clusterfs

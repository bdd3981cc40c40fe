// Package shim runs one job: `ssi shim` supervises it from outside its namespaces
// and `ssi init` is PID 1 inside them.
//
// Process tree on a node (containerd-shim and tini in one picture):
//
//	ssi agent                 may die and restart at any time
//	ssi shim <jobdir>         own session; outlives the agent; owns the job's output
//	  └─ ssi-init  (PID 1 in new PID, IPC, UTS namespaces; session leader; root)
//	       └─ CMD ARGS...     own process group; stdout/stderr are pipes to the shim,
//	                          stdin a pipe from it (attached runs) or /dev/null;
//	                          with -t one pty for all three, whose master the shim holds
//
// The shim writes everything the job prints to <jobdir>/log (see package joblog),
// feeds the job's stdin with what the agent passes it on <jobdir>/stdin.sock
// (byte offsets, so that a resend is harmless; see stdin.go),
// records its own and init's identity in <jobdir>/shim.json, and when init is gone
// removes the job's cgroup and writes <jobdir>/exit.json. The agent reads those
// files, so an agent that is killed and restarted finds its jobs, their output and
// their exit status intact.
//
// Init is cmd/ssi-init, a small static C program (one thread and a few pages
// for CRIU to carry at every move); where it is missing beside ssi-shim, the
// shim's own Go init (RunInit) does the same. Init starts CMD as the job's
// user, forwards catchable signals to the job's process group, reaps orphans, and
// exits with the job's status (128+N if the job was killed by signal N). When CMD
// cannot be found it prints a message and exits 127 (126 if not executable), as a
// shell does. Only fds 0-2 are open in the job: a clean tree for CRIU to dump.
package shim

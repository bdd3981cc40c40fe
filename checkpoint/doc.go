// Package checkpoint drives CRIU (through go-criu) for ssi: it probes the CRIU
// binary (Probe), dumps a job's process tree into an image directory (Dump) and
// restores one (Restore), and reports CRIU failures as typed errors that quote the
// "Error" lines of CRIU's own log (*CRIUError). It knows nothing about etcd or the
// migration protocol; package migrate builds on it.
//
// # What it expects of a job
//
// The tree to dump is rooted at a job's init as started by package shim: PID 1 of
// its own PID (and IPC, UTS) namespace, session leader, in the host's mount and
// network namespaces, with only fds 0-2 open (stdin /dev/null, stdout and stderr
// pipes to the shim). Such a tree dumps without --shell-job. Its pipes are external
// to the tree, so a restore must re-plumb them with inherit-fd (RestoreOpts.Inherit,
// keys from FileKey read on the dump side); a restored task whose stdout pipe has no
// reader dies of SIGPIPE while CRIU reports success.
//
// # CRIU version
//
// CRIU 4.2 or newer is required (MinVersion): Debian 12's 3.17 fails `criu check`
// on this project's kernels and 4.1 cannot dump inet sockets on Linux 6.16+. The
// default binary is /usr/local/sbin/criu (DefaultCRIUPath), where
// hack/install-criu.sh puts it; the `criu` on PATH may be the broken distribution
// one. Probe returns an error wrapping ErrCRIUUnavailable (an *UnavailableError
// saying what is wrong) when that binary is missing, too old or fails `criu check`.
//
// # Cancellation
//
// go-criu takes no context and runs CRIU as a child (`criu swrk`) it does not expose.
// Dump and Restore check the context before starting CRIU and at every CRIU
// notification (pre-dump, network lock, post-dump, pre-restore, setup-namespaces,
// post-restore, ...): a cancelled context fails the notification, which makes CRIU
// roll back (a dump resumes the tree, a restore kills what it restored) and the call
// returns an error wrapping ctx.Err(). Between two notifications CRIU cannot be
// interrupted: killing it mid-dump would leave the tree ptrace-seized with CRIU's
// parasite inside, so the wrappers never do. A context deadline shorter than CRIU's
// default also bounds the freezing phase of a dump (CRIU's --timeout).
package checkpoint

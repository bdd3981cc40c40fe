package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/checkpoint/criulog"
)

// ErrRestore wraps a failed CRIU restore; the message quotes CRIU's error lines.
var ErrRestore = errors.New("shim: criu restore failed")

// criuRestore runs `criu restore` so that the restored tree's root becomes this
// process's child (--restore-detached --restore-sibling), with the job's stdout
// and stderr pipes (CRIU keys in rs) replaced by stdout and stderr, into cgroup.
// The tree is left stopped (SIGSTOP); the agent resumes it once it owns the job.
//
// The images carry no cgroups (the agent dumps with IgnoreCgroups): CRIU
// runs inside the job's cgroup, which this node made with the job's limits,
// and every task it forks is born there (RunCgexec: cgroup v1 has no way to
// fork a child straight into a cgroup but to be in it).
//
// The shim execs the criu binary rather than linking go-criu: go-criu's package
// initialisation makes the Go runtime open an epoll fd at start-up, and init runs
// from this same binary, where every fd is one more thing for CRIU to dump.
//
// stdin, when set, replaces the job's stdin pipe (rs.StdinKey): CRIU restores
// no contents into a pipe it inherits, which is why the source drained it.
func criuRestore(ctx context.Context, rs RestoreSpec, cgroup string, stdout, stderr, stdin *os.File) (int, error) {
	if rs.CRIUPath == "" || rs.ImagesDir == "" || rs.StdoutKey == "" || rs.StderrKey == "" {
		return 0, fmt.Errorf("%w: incomplete %s: %+v", ErrRestore, RestoreFile, rs)
	}
	const log, pidfile = RestoreLog, "restore.pid"
	work := rs.WorkDir
	if work == "" {
		work = rs.ImagesDir
	}
	_ = os.Remove(filepath.Join(work, pidfile)) // a stale pidfile fails the restore
	args := []string{"restore",
		"--images-dir", rs.ImagesDir, "--work-dir", work, "--log-file", log, "-v4",
		"--restore-detached", "--restore-sibling", "--pidfile", pidfile,
		"--inherit-fd", "fd[3]:" + rs.StdoutKey, "--inherit-fd", "fd[4]:" + rs.StderrKey,
		"--manage-cgroups=ignore", "--file-locks",
		// Connected TCP sockets in the images can only have been dumped
		// without their state, for a job that re-makes its connections
		// (migrate.JobFlags): they are restored closed. ssi dumps no
		// connection with its state (--tcp-established) yet; when it does,
		// this must follow the dump's flag.
		"--tcp-close",
		// The job's mount namespace (checkpoint.Flags.NodeMounts): rebuilt on
		// this node's /, with the mounts it shared with its node bound again
		// from the same paths here.
		"--ext-mount-map", "auto", "--root", "/",
		// The restored copy stays stopped until the migration commits, so that a
		// target cut off from its source never runs a second copy.
		"--leave-stopped"}
	if rs.LazyPages != "" {
		if err := startLazyPages(ctx, rs, work); err != nil {
			return 0, err
		}
		args = append(args, "--lazy-pages")
	}
	extra := []*os.File{stdout, stderr}
	if stdin != nil && rs.StdinKey != "" {
		extra = append(extra, stdin)
		args = append(args, "--inherit-fd", "fd[5]:"+rs.StdinKey)
	}
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("%w: find own binary: %w", ErrRestore, err)
	}
	cmd := exec.CommandContext(ctx, self, append([]string{"cgexec", cgroup, "--", rs.CRIUPath}, args...)...)
	cmd.ExtraFiles = extra
	out, err := cmd.CombinedOutput()
	if err != nil {
		reapAny() // a root CRIU forked and killed on failure is our child
		b, _ := os.ReadFile(filepath.Join(work, log))
		lines := criulog.ErrorLines(b, 8)
		if len(lines) == 0 {
			lines = []string{strings.TrimSpace(string(out))}
		}
		return 0, fmt.Errorf("%w: %s (%w; log: %s)", ErrRestore, strings.Join(lines, " | "), err, filepath.Join(work, log))
	}
	b, err := os.ReadFile(filepath.Join(work, pidfile))
	if err != nil {
		return 0, fmt.Errorf("%w: read pidfile: %w", ErrRestore, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%w: pidfile holds %q", ErrRestore, b)
	}
	return pid, nil
}

// reapAny reaps children that have exited, without blocking.
func reapAny() {
	for {
		var ws unix.WaitStatus
		if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}

// startLazyPages starts CRIU's lazy-pages daemon for a post-copy restore: it
// takes the restored tree's userfaultfds from the restore and fills its memory
// from the source's page server, on faults and in the background, then exits.
// It is this shim's child; the Go runtime reaps it.
func startLazyPages(ctx context.Context, rs RestoreSpec, work string) error {
	host, port, err := net.SplitHostPort(rs.LazyPages)
	if err != nil {
		return fmt.Errorf("%w: lazy_pages %q: %w", ErrRestore, rs.LazyPages, err)
	}
	const log, sock = "lazy-pages.log", "lazy-pages.socket"
	_ = os.Remove(filepath.Join(work, sock))
	args := []string{"lazy-pages", "--page-server", "--address", host, "--port", port,
		"--images-dir", rs.ImagesDir, "--work-dir", work, "--log-file", log, "-v4"}
	if rs.LazyPagesTLS != nil {
		args = append(args, rs.LazyPagesTLS.ClientArgs()...)
	}
	cmd := exec.Command(rs.CRIUPath, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: start lazy-pages: %w", ErrRestore, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// The restore connects to the daemon's socket in the work dir: wait for it.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(filepath.Join(work, sock)); err == nil {
			return nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(work, log))
			return fmt.Errorf("%w: lazy-pages daemon exited (%v): %s (log: %s)", ErrRestore, err, strings.Join(criulog.ErrorLines(b, 8), " | "), filepath.Join(work, log))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return fmt.Errorf("%w: lazy-pages daemon: %w", ErrRestore, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("%w: lazy-pages daemon made no socket in 10s (log: %s)", ErrRestore, filepath.Join(work, log))
		}
	}
}

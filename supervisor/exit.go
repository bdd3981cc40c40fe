package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// watch waits, in a goroutine of the supervisor's life, for j's shim to
// exit, then records how the job ended. wait, if set, reaps the shim.
func (s *Supervisor) watch(j *Job, wait func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := waitExit(s.life, j.state.Shim)
		if s.life.Err() != nil {
			return // the agent stops; the next one adopts the job
		}
		if wait != nil {
			_ = wait()
		}
		if err != nil {
			s.log.Error("wait for shim", "gpid", j.gpid, "err", err)
		}
		s.Finish(s.life, j)
	}()
}

// errNotOwner stops Finish from recording an end for a job another node owns.
var errNotOwner = errors.New("supervisor: job owned by another node")

// Finish records the end of j in etcd, retrying while etcd is unreachable
// (until ctx is done). A job that migrated away, or an uncommitted migration
// copy, ends only locally. A job that ends while it is being migrated or
// checkpointed ends here too (the End transition clears the migration): the
// migration then finds its record gone and reports the end instead of
// resuming anything.
func (s *Supervisor) Finish(ctx context.Context, j *Job) {
	var ex shim.Exit
	err := shim.ReadJSON(j.dir, shim.ExitFile, &ex)
	s.mu.Lock()
	dumping := j.busy != ""
	s.mu.Unlock()
	tr := pidtable.End
	var ended pidtable.State // what the end recorded, if it did
	update := func(p *pidtable.Proc) error {
		if p.Node != s.cfg.Node {
			return fmt.Errorf("%w: gpid %d is owned by %s", errNotOwner, p.GPID, p.Node)
		}
		switch {
		case err == nil && dumping && initCrashedInAbortedDump(ex.Code, j.dir):
			p.State, p.Error = pidtable.Lost, "the job ended while CRIU was dumping it (for a migration or a checkpoint), and the aborted dump left the job's init crashed (a SIGTRAP in CRIU's parasite code, exit 2): the job's own exit status is unknown"
		case err == nil && dumping && trappedInAbortedDump(ex.Code):
			p.State, p.Error = pidtable.Lost, TrappedInAbortedDump
		case err != nil && p.State == pidtable.Starting && p.RestoredFrom != "":
			p.State, p.Error = pidtable.Lost, "the restore of checkpoint "+p.RestoredFrom+" was interrupted (its agent stopped); restore it again: ssi restore "+p.RestoredFrom
		case err != nil:
			p.State, p.Error = pidtable.Lost, "the job's shim exited without an exit status (see "+filepath.Join(j.dir, shim.ShimLog)+")"
		default:
			code := ex.Code
			p.State, p.ExitCode, p.Error = pidtable.Exited, &code, ex.Error
		}
		p.Ended = time.Now().UTC()
		ended = p.State
		return nil
	}
	var moved migrate.MovedMark
	if shim.ReadJSON(j.dir, shim.MovedFile, &moved) == nil {
		// The job did not end: it migrated away, or was a copy that was never
		// committed, or was stopped into a checkpoint.
		tr = pidtable.CheckpointStop
		update = func(p *pidtable.Proc) error {
			if moved.Checkpoint == "" || p.Node != s.cfg.Node || p.State != pidtable.Checkpointing || p.Checkpoint != moved.Checkpoint {
				return errNotOwner
			}
			p.State, p.PID, p.InitPID, p.Ended = pidtable.Checkpointed, 0, 0, time.Now().UTC()
			return nil
		}
	}
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		_, _, uerr := s.cfg.Table.Transition(ctx, j.gpid, tr, s.cfg.Node, update)
		if uerr == nil && ended != "" && s.cfg.Ended != nil {
			s.cfg.Ended(ended)
		}
		if uerr == nil || errors.Is(uerr, pidtable.ErrNotFound) || errors.Is(uerr, errNotOwner) {
			break
		}
		if errors.Is(uerr, pidtable.ErrIllegalTransition) {
			// Ended already (the healer, say), or no longer ours: nothing to record.
			s.log.Warn("job end not recorded: its record does not allow it", "gpid", j.gpid, "err", uerr)
			break
		}
		s.log.Warn("record job end", "gpid", j.gpid, "err", uerr)
		select {
		case <-ctx.Done():
			// The agent stops: the next one records the end (Recover).
			return
		case <-time.After(backoff):
		}
	}
	s.mu.Lock()
	delete(s.jobs, j.gpid)
	s.mu.Unlock()
	close(j.done)
	if moved.Time.IsZero() {
		s.log.Info("job ended", "gpid", j.gpid, "code", ex.Code, "lost", err != nil)
	} else {
		s.log.Info("the job's copy here is gone; the job goes on elsewhere or in a checkpoint", "gpid", j.gpid, "checkpoint", moved.Checkpoint, "hand_over", moved.HandOver)
	}
}

// initCrashedInAbortedDump recognises a known CRIU defect: a task of the job
// dies while CRIU is dumping the tree, the dump aborts, and CRIU leaves the
// job's init, which it had infected, running its parasite code; the
// parasite's trap reaches init with no tracer, and the Go runtime in init
// dies of it (exit status 2, "SIGTRAP: trace trap" on the job's stderr),
// taking the job's own status with its PID namespace. Such an end is
// recorded lost, with the reason, not as the job's exit 2 (docs/ROBUSTNESS.md).
func initCrashedInAbortedDump(code int, dir string) bool {
	if code != 2 {
		return false
	}
	f, err := os.Open(filepath.Join(dir, shim.LogFile))
	if err != nil {
		return false
	}
	defer f.Close()
	const tail = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > tail {
		_, _ = f.Seek(fi.Size()-tail, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, tail))
	return bytes.Contains(b, []byte("SIGTRAP: trace trap"))
}

// TrappedInAbortedDump is the reason a job is recorded lost when its main
// process died of SIGTRAP while CRIU was dumping it (trappedInAbortedDump).
const TrappedInAbortedDump = "the job ended while CRIU was dumping it (for a migration or a checkpoint), and the aborted dump left its main process in CRIU's parasite code, whose trap killed it (SIGTRAP, status 133): the job's own exit status is unknown"

// trappedInAbortedDump recognises the same CRIU defect with ssi-init as
// the job's init (no Go runtime to crash): the task killed under the dump
// (a host kill -9, say) is reported by the kernel killed by the parasite's
// SIGTRAP, not by what ended it (CRIU's log: "Task N is in unexpected
// state"). During a dump a SIGTRAP death is CRIU's, not the job's own:
// recorded lost, with the reason, not as exit 133 (docs/ROBUSTNESS.md).
func trappedInAbortedDump(code int) bool { return code == 128+int(unix.SIGTRAP) }

// waitExit blocks until the process id names has exited, or ctx is done,
// using a pidfd through the runtime's poller (no thread blocked per job;
// works for non-children).
func waitExit(ctx context.Context, id shim.ProcID) error {
	fd, err := unix.PidfdOpen(id.PID, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", id.PID, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	if !id.Alive() { // the PID was reused or the shim is a zombie: it is gone
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("pidfd %d: %w", id.PID, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	err = rc.Read(func(fd uintptr) bool {
		n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return n > 0
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

package migrate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// Jobs that hold file locks. CRIU's restore takes the job's locks again
// (--file-locks), and on a file both nodes see (a shared file system, or one
// kernel) it would wait for the frozen source copy, which still holds them:
// the job stayed frozen until the restore's bound and the move failed. So a
// job that holds locks hands them over: once its images are safely on the
// target (transferred and checked), the source copy is killed, which releases
// every lock it held, and only then does the target restore. Should the
// restore or the commit fail, the source restores the job from the very same
// images, which it keeps until the migration is over (restoreHere).
//
// The invariant holds: the source copy is dead before the target copy
// exists, so there are never two live copies and a lock is never held by two;
// before the commit the record names the source, and the rollback brings the
// job back there from its images, so a failure loses no job. What this costs:
// from the hand-over to the commit the job exists only as images (on both
// nodes). Were the source agent to die in that window, its successor finds
// the job's record still migrating, its shim gone and its directory marked:
// it rolls the migration back like any other (the target discards its copy)
// and restores the job from the images the dump left in /dev/shm
// (the agent's reconcile, RollbackOrphan). Only the machine itself going down then loses the
// job: its images are in memory.

// jobLocks lists the file locks the job's processes hold (POSIX, OFD and
// flock locks, and leases), as /proc/PID/fdinfo shows them.
func jobLocks(j Job) ([]string, error) {
	pids, err := j.Cgroup().Pids()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, pid := range pids {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
		for _, fd := range fds {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if rest, ok := strings.CutPrefix(line, "lock:"); ok {
					target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
					f := strings.Fields(rest)
					kind := strings.Join(f[1:min(len(f), 4)], " ")
					out = append(out, fmt.Sprintf("%s (%s, pid %d fd %s)", target, kind, pid, fd.Name()))
				}
			}
		}
	}
	return out, nil
}

// handOver kills the stopped source copy of a job that holds file locks, so
// that the target's restore can take them. Its directory is marked first, so
// that its end is no end of the job (finish, the shim).
func (m *migration) handOver(ctx context.Context) error {
	if err := shim.WriteJSON(m.j.Dir(), shim.MovedFile, MovedMark{Time: time.Now().UTC(), HandOver: true, Keys: m.keys}); err != nil {
		return err
	}
	m.handedOver = true
	killJob(m.j)
	select {
	case <-m.j.Done():
	case <-ctx.Done():
		// restoreHere, in the rollback, waits for the copy to be gone.
		return fmt.Errorf("the source copy of gpid %d did not die after SIGKILL: %w", m.gpid, ctx.Err())
	}
	m.mg.log.Info("handed the job's file locks over: source copy killed after the transfer", "gpid", m.gpid, "locks", len(m.locks))
	m.send(api.MigrateEvent{Phase: "handover"})
	return nil
}

// lose records the job lost, saying why: its last copy is gone.
func (m *migration) lose(ctx context.Context, why string) {
	ctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	_, _, err := m.mg.store.Transition(ctx, m.gpid, pidtable.End, m.mg.cfg.Name, func(p *pidtable.Proc) error {
		p.State, p.Error, p.PID, p.InitPID = pidtable.Lost, why, 0, 0
		return nil
	})
	m.mg.log.Error("job lost", "gpid", m.gpid, "why", why, "err", err)
}

// restoreHere brings a handed-over job back on this node from its images,
// stopped, as the rollback of a migration that failed after the hand-over.
func (m *migration) restoreHere(ctx context.Context) error {
	mg, old := m.mg, m.j
	// The killed copy's shim must be gone first: until then it could still
	// record an exit (its moved mark is removed below).
	select {
	case <-old.Done():
	case <-time.After(30 * time.Second):
		return fmt.Errorf("the killed source copy's shim did not exit")
	}
	var spec shim.Spec
	if err := shim.ReadJSON(old.Dir(), shim.SpecFile, &spec); err != nil {
		return err
	}
	for _, f := range []string{shim.MovedFile, shim.StateFile, shim.ExitFile} {
		_ = os.Remove(filepath.Join(old.Dir(), f))
	}
	_ = os.Remove(filepath.Join(old.Dir(), lazyDumpFile))
	rs := shim.RestoreSpec{ImagesDir: m.images, StdoutKey: m.keys[0], StderrKey: m.keys[1], StdinKey: old.State().StdinKey, CRIUPath: mg.cfg.CRIUPath}
	if err := shim.WriteJSON(old.Dir(), shim.RestoreFile, rs); err != nil {
		return err
	}
	cg, err := isolate.OpenCgroup(spec.Cgroup)
	if err != nil {
		if cg, err = isolate.CreateCgroup(spec.Cgroup, mg.jobs.Limits(old.Resources())); err != nil {
			return err
		}
	}
	cmd, st, err := shim.Launch(ctx, mg.cfg.ShimExe, old.Dir(), shim.ModeRestore)
	if err != nil {
		if ctx.Err() != nil {
			pids, _ := cg.Pids()
			err = fmt.Errorf("%s: %w", checkpoint.WhyBlocked(pids, filePaths(m.files)), err)
		}
		if cmd != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		return fmt.Errorf("restore on %s from its images: %w", mg.cfg.Name, err)
	}
	cpus, memory := old.Resources()
	j := mg.jobs.Adopt(Restored{GPID: m.gpid, Dir: old.Dir(), State: st, Cgroup: cg, Cmd: cmd, CPUs: cpus, Memory: memory, Replaces: old})
	_ = os.Remove(filepath.Join(old.Dir(), shim.RestoreFile))
	m.j = j
	mg.log.Info("restored a handed-over job on its source from its images", "gpid", m.gpid, "pid", st.MainPID)
	return nil
}

// MovedMark is the content of a job directory's moved.json.
type MovedMark struct {
	Time time.Time `json:"time"`
	// Checkpoint is set when the job was stopped into a checkpoint rather than
	// migrated away.
	Checkpoint string `json:"checkpoint,omitempty"`
	// HandOver is set when the stopped source copy of a migration was killed
	// to release its file locks before the target's restore (handover.go).
	HandOver bool `json:"hand_over,omitempty"`
	// Keys are the job's stdout and stderr pipe keys at the dump, with which
	// a restarted agent restores a handed-over job from its images.
	Keys [2]string `json:"keys,omitzero"`
}

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/failpoint"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// Take saves a checkpoint of p, a job running here.
func (s *Store) Take(ctx context.Context, p pidtable.Proc, req api.CheckpointRequest) (api.CheckpointResult, error) {
	start := time.Now()
	name := req.Name
	if name == "" {
		name = fmt.Sprintf("%d-%s", p.GPID, start.UTC().Format("20060102-150405.000"))
	}
	if err := pidtable.ValidCheckpointName(name); err != nil {
		return api.CheckpointResult{}, errdefs.Invalidf("--name: %v", err)
	}
	switch {
	case p.State.Ended():
		return api.CheckpointResult{}, errdefs.Conflictf("gpid %d has already %s", p.GPID, p.DescribeEnd())
	case p.State != pidtable.Running:
		return api.CheckpointResult{}, errdefs.Conflictf("gpid %d is %s, not running; retry when it is", p.GPID, p.State)
	case p.TTY:
		return api.CheckpointResult{}, migrate.RefuseTTY(p.GPID, "checkpointed")
	case s.cfg.CRIUErr != nil:
		return api.CheckpointResult{}, errdefs.Conflictf("node %s cannot checkpoint jobs: %v", s.cfg.Node, s.cfg.CRIUErr)
	}
	// Signals are held off while the job is frozen for the dump (supervisor.Signal).
	j, err := s.cfg.Jobs.MarkBusy(p.GPID, "being checkpointed")
	if err != nil {
		return api.CheckpointResult{}, err
	}
	defer s.cfg.Jobs.ClearBusy(j)
	c := pidtable.Checkpoint{Name: name, State: pidtable.Saving, GPID: p.GPID, Node: s.cfg.Node, Created: start.UTC(), LeaveRunning: req.LeaveRunning, Proc: p, Auto: req.Auto}
	crev, err := s.cfg.Table.CreateCheckpoint(ctx, c)
	if errors.Is(err, pidtable.ErrExists) {
		return api.CheckpointResult{}, errdefs.Conflictf("a checkpoint named %q exists already; choose another --name, or remove it first (ssi checkpoints rm %s)", name, name)
	}
	if err != nil {
		return api.CheckpointResult{}, err
	}
	dir := s.Dir(name)
	if _, _, err := s.cfg.Table.Transition(ctx, p.GPID, pidtable.CheckpointClaim, s.cfg.Node, func(q *pidtable.Proc) error {
		if q.Node != s.cfg.Node || q.State != pidtable.Running {
			return errdefs.Conflictf("gpid %d is %s on %s, not running here", q.GPID, q.State, q.Node)
		}
		q.State, q.Checkpoint = pidtable.Checkpointing, name
		return nil
	}); err != nil {
		_ = s.cfg.Table.DeleteCheckpoint(context.WithoutCancel(ctx), name, crev)
		return api.CheckpointResult{}, err
	}
	dumped := false
	// fail undoes the checkpoint: the job runs on as if it had not been taken.
	fail := func(cause error) (api.CheckpointResult, error) {
		ctx := context.WithoutCancel(ctx)
		if dumped {
			j.Resume()
		}
		_ = os.RemoveAll(dir)
		if err := s.cfg.Table.DeleteCheckpoint(ctx, name, crev); err != nil {
			s.log.Warn("remove record of failed checkpoint", "checkpoint", name, "err", err)
		}
		if err := s.Release(ctx, p.GPID, name); err != nil {
			if q, _, gerr := s.cfg.Table.Get(ctx, p.GPID); gerr == nil && q.State.Ended() {
				cause = errdefs.Conflictf("gpid %d ended during the checkpoint: it %s; no checkpoint was kept (the checkpoint stopped at: %v)", p.GPID, q.DescribeEnd(), cause)
			}
		}
		s.log.Warn("checkpoint failed", "gpid", p.GPID, "checkpoint", name, "err", cause)
		return api.CheckpointResult{}, cause
	}
	if err := failpoint.Hit("checkpoint/after-claim"); err != nil {
		return fail(err)
	}
	images := filepath.Join(dir, "images")
	if err := os.MkdirAll(images, 0o700); err != nil {
		return fail(fmt.Errorf("checkpoint dir: %w", err))
	}
	init := j.State().Init.PID
	var meta Meta
	if meta.StdoutKey, err = checkpoint.FileKey(init, 1); err == nil {
		meta.StderrKey, err = checkpoint.FileKey(init, 2)
	}
	if err != nil {
		return fail(err)
	}
	if meta.CPUFlags, err = s.cfg.CPU.Flags(); err != nil {
		return fail(err)
	}
	frozenAt := time.Now()
	if err := s.cfg.Dumper.Dump(ctx, checkpoint.DumpOpts{
		PID: init, ImagesDir: images, LeaveStopped: true,
		Flags: migrate.JobFlags(p),
	}, j); err != nil {
		dumped = true // a failed dump may still leave the tree stopped
		return fail(err)
	}
	dumped = true
	dumpTime := time.Since(frozenAt)
	// The files and their sizes as the dump saw them: the tree is stopped.
	if meta.Files, err = migrate.JobFiles(j, false); err != nil {
		return fail(err)
	}
	if err := failpoint.Hit("checkpoint/after-dump"); err != nil {
		return fail(err)
	}
	// What the job wrote before the dump belongs to the checkpoint: let the
	// shim drain the pipes, then note how far the log goes.
	logPath := filepath.Join(j.Dir(), shim.LogFile)
	migrate.WaitDrained(init, logPath)
	fi, err := os.Stat(logPath)
	if err != nil {
		return fail(fmt.Errorf("job log: %w", err))
	}
	var frozen time.Duration
	if req.LeaveRunning {
		j.Resume()
		dumped = false
		frozen = time.Since(frozenAt)
	}
	if err := copyPrefix(logPath, filepath.Join(dir, shim.LogFile), fi.Size()); err != nil {
		return fail(err)
	}
	if err := copyPrefix(filepath.Join(j.Dir(), shim.SpecFile), filepath.Join(dir, shim.SpecFile), -1); err != nil {
		return fail(err)
	}
	if err := shim.WriteJSON(dir, MetaFile, meta); err != nil {
		return fail(err)
	}
	c.State, c.Size = pidtable.Ready, migrate.DirSize(images)+fi.Size()
	if _, err := s.cfg.Table.SwapCheckpoint(ctx, c, crev); err != nil {
		return fail(err)
	}
	// From here on the checkpoint is kept, whatever happens to the job.
	if err := failpoint.Hit("checkpoint/after-save"); err != nil {
		_ = s.Release(ctx, p.GPID, name)
		j.Resume()
		return api.CheckpointResult{}, err
	}
	if req.LeaveRunning {
		_ = s.Release(ctx, p.GPID, name)
	} else {
		// The checkpoint is saved: stop the job. The marker tells the shim and
		// finish that the job did not end but was put away.
		if err := shim.WriteJSON(j.Dir(), shim.MovedFile, migrate.MovedMark{Time: time.Now().UTC(), Checkpoint: name}); err != nil {
			return fail(err)
		}
		j.Kill()
		select {
		case <-j.Done(): // Finish recorded the job as Checkpointed
		case <-time.After(10 * time.Second):
			s.log.Warn("shim of a checkpointed job did not exit", "gpid", p.GPID)
		}
		if cg := j.Cgroup(); cg != nil {
			_ = cg.Destroy()
		}
		frozen = time.Since(frozenAt)
	}
	s.log.Info("checkpointed", "gpid", p.GPID, "checkpoint", name, "bytes", c.Size, "leave_running", req.LeaveRunning, "frozen", frozen)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return api.CheckpointResult{Checkpoint: c, FrozenMS: ms(frozen), DumpMS: ms(dumpTime), TotalMS: ms(time.Since(start))}, nil
}

// Release returns a job claimed by a checkpoint to Running. It fails when
// the record moved on (the job ended during the checkpoint).
func (s *Store) Release(ctx context.Context, gpid uint64, name string) error {
	_, _, err := s.cfg.Table.Transition(ctx, gpid, pidtable.CheckpointRelease, s.cfg.Node, func(q *pidtable.Proc) error {
		if q.Node != s.cfg.Node || q.State != pidtable.Checkpointing || q.Checkpoint != name {
			return fmt.Errorf("record changed under the checkpoint: %v", q)
		}
		q.State, q.Checkpoint = pidtable.Running, ""
		return nil
	})
	if err != nil {
		s.log.Warn("release job after checkpoint", "gpid", gpid, "checkpoint", name, "err", err)
	}
	return err
}

// copyPrefix copies the first n bytes of src (all of it when n < 0) to a new
// file dst.
func copyPrefix(src, dst string, n int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	var r io.Reader = in
	if n >= 0 {
		r = io.LimitReader(in, n)
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

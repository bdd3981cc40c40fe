package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/failpoint"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
	"github.com/ssi-cluster/ssi/supervisor"
)

// Restore brings checkpoint c back as a job running on this node:
// under its own gpid (which must not be running anywhere) or, asNew, a new one;
// token is the placement it serves (see supervisor.Job).
func (s *Store) Restore(ctx context.Context, c pidtable.Checkpoint, asNew bool, token string) (api.CheckpointRestoreResult, error) {
	return s.restore(ctx, c, asNew, nil, token)
}

// Failover restores checkpoint c, held here, as its job, which still runs
// on dead according to its record: dead's lease is gone and its agent has
// fenced the job (package failover). The gpid is claimed from dead
// (pidtable.Store.FailoverClaim) with epoch+1; a failed restore records
// the job lost, with the reason.
func (s *Store) Failover(ctx context.Context, c pidtable.Checkpoint, dead string) (api.CheckpointRestoreResult, error) {
	if dead == "" || dead == s.cfg.Node {
		return api.CheckpointRestoreResult{}, errdefs.Invalidf("failover of gpid %d from node %q to node %s: name the dead node it ran on", c.GPID, dead, s.cfg.Node)
	}
	return s.restore(ctx, c, false, &handOff{
		what: "failover of",
		from: dead,
		claim: func(ctx context.Context) (pidtable.Proc, error) {
			p, _, err := s.cfg.Table.FailoverClaim(ctx, c.GPID, dead, s.cfg.Node, c.Name)
			return p, err
		},
		lost: fmt.Sprintf("node %s died and the restore of checkpoint %s on node %s failed; restore an older checkpoint with ssi restore", dead, c.Name, s.cfg.Node),
	}, "")
}

// TakeOver restores checkpoint c here as its job, which runs on from at
// epoch according to its record, on from's request (Handover, on from): from
// has killed its copy. The gpid is claimed from from
// (pidtable.Store.HandoverClaim) with epoch+1, so the record goes from
// running there to starting here; a failed restore records the job lost,
// with the reason.
func (s *Store) TakeOver(ctx context.Context, c pidtable.Checkpoint, from string, epoch uint64) (api.CheckpointRestoreResult, error) {
	if from == "" || from == s.cfg.Node {
		return api.CheckpointRestoreResult{}, errdefs.Invalidf("handover of gpid %d from node %q to node %s: name the node it runs on", c.GPID, from, s.cfg.Node)
	}
	return s.restore(ctx, c, false, &handOff{
		what: "handover of",
		from: from,
		claim: func(ctx context.Context) (pidtable.Proc, error) {
			p, _, err := s.cfg.Table.HandoverClaim(ctx, c.GPID, from, epoch, s.cfg.Node, c.Name)
			return p, err
		},
		lost: fmt.Sprintf("node %s stopped the job to have it restored from checkpoint %s on node %s, and that restore failed; restore it (or an older checkpoint) with ssi restore", from, c.Name, s.cfg.Node),
	}, "")
}

// handOff is a restore that takes the job from the node its record names
// (failover, handover), instead of from an ended record.
type handOff struct {
	// what names the operation in errors; from is the node it ran on.
	what, from string
	// claim makes the record Starting here, with epoch+1.
	claim func(ctx context.Context) (pidtable.Proc, error)
	// lost is the record's error if the restore then fails.
	lost string
}

func (s *Store) restore(ctx context.Context, c pidtable.Checkpoint, asNew bool, h *handOff, token string) (api.CheckpointRestoreResult, error) {
	start := time.Now()
	res := api.CheckpointRestoreResult{Checkpoint: c.Name, Node: s.cfg.Node, From: c.Node}
	if s.cfg.CRIUErr != nil {
		return res, errdefs.Conflictf("node %s cannot restore jobs: %v", s.cfg.Node, s.cfg.CRIUErr)
	}
	var holder pidtable.Node
	if c.Node != s.cfg.Node {
		snap, err := s.cfg.Table.NodesSnapshot(ctx)
		if err != nil {
			return res, err
		}
		var ok bool
		if holder, ok = snap.Node(c.Node); !ok || !snap.Ready(c.Node) {
			return res, errdefs.Unavailablef("checkpoint %s is held by node %s, which is NotReady; it can be restored once that node's agent is back", c.Name, c.Node)
		}
	}
	if _, err := user.Lookup(c.Proc.User); err != nil {
		return res, errdefs.Conflictf("user %q, whom the job runs as, does not exist on node %s: %v", c.Proc.User, s.cfg.Node, err)
	}

	// Claim the gpid for this node. The record (Starting, owned here) is the
	// fence: no second restore of the same gpid can get past this point.
	proc := c.Proc
	proc.Node, proc.State, proc.PID, proc.InitPID = s.cfg.Node, pidtable.Starting, 0, 0
	proc.ExitCode, proc.Error, proc.Ended, proc.Started = nil, "", time.Time{}, time.Time{}
	proc.Migration, proc.MigrationError, proc.MigrationFailed = nil, "", time.Time{}
	proc.Checkpoint, proc.RestoredFrom = "", c.Name
	var undoRecord func(context.Context)
	switch old, orev, err := s.cfg.Table.Get(ctx, c.GPID); {
	case h != nil:
		claimed, err := h.claim(ctx)
		if err != nil {
			if errors.Is(err, pidtable.ErrChanged) {
				return res, errdefs.Conflictf("%s gpid %d from %s: %v", h.what, c.GPID, h.from, err)
			}
			return res, s.claimError(err)
		}
		proc = claimed
		undoRecord = func(ctx context.Context) {
			// The job cannot go back to the node it left (dead, or its copy
			// killed): it is lost, with the reason.
			_, _, _ = s.cfg.Table.Transition(ctx, c.GPID, pidtable.RestoreUndo, s.cfg.Node, func(p *pidtable.Proc) error {
				if p.Node != s.cfg.Node || p.State != pidtable.Starting {
					return fmt.Errorf("changed")
				}
				p.Epoch++
				p.State, p.Error = pidtable.Lost, h.lost
				return nil
			})
		}
	case asNew:
		proc.GPID, proc.Created = 0, time.Time{}
		created, err := s.cfg.Table.Create(ctx, proc)
		if err != nil {
			return res, s.claimError(err)
		}
		proc = created
		undoRecord = func(ctx context.Context) { _ = s.cfg.Table.Delete(ctx, proc.GPID, s.cfg.Node) }
	case errors.Is(err, pidtable.ErrNotFound):
		// The job ended and was forgotten since: its gpid is still its own.
		proc.Epoch++
		if _, err := s.cfg.Table.Recreate(ctx, proc); err != nil {
			if errors.Is(err, pidtable.ErrExists) {
				return res, errdefs.Conflictf("gpid %d reappeared while restoring checkpoint %s; retry", c.GPID, c.Name)
			}
			return res, s.claimError(err)
		}
		undoRecord = func(ctx context.Context) { _ = s.cfg.Table.Delete(ctx, proc.GPID, s.cfg.Node) }
	case err != nil:
		return res, err
	case !old.State.Ended():
		return res, errdefs.Conflictf("gpid %d is still %s on %s: restoring checkpoint %s under the same gpid would run it twice. Stop it first (ssi kill %d), or restore a copy under a new gpid with --as-new", c.GPID, old.State, old.Node, c.Name, c.GPID)
	default:
		proc.Epoch, proc.Created = old.Epoch+1, old.Created
		if _, _, err := s.cfg.Table.TransitionAt(ctx, c.GPID, orev, pidtable.RestoreClaim, s.cfg.Node, func(p *pidtable.Proc) error { *p = proc; return nil }); err != nil {
			if errors.Is(err, pidtable.ErrChanged) {
				return res, errdefs.Conflictf("gpid %d changed while restoring checkpoint %s (restored elsewhere at the same time?); see ssi ps -a", c.GPID, c.Name)
			}
			return res, err
		}
		undoRecord = func(ctx context.Context) {
			// Put the ended record back, with a higher epoch: it no longer runs here.
			_, _, _ = s.cfg.Table.Transition(ctx, old.GPID, pidtable.RestoreUndo, s.cfg.Node, func(p *pidtable.Proc) error {
				if p.Node != s.cfg.Node || p.State != pidtable.Starting {
					return fmt.Errorf("changed")
				}
				epoch := p.Epoch + 1
				*p = old
				p.Epoch = epoch
				return nil
			})
		}
	}
	gpid := proc.GPID
	res.GPID = gpid
	log := s.log.With("gpid", gpid, "checkpoint", c.Name)
	if err := failpoint.Hit("restore/after-claim"); err != nil {
		undoRecord(context.WithoutCancel(ctx))
		return res, err
	}

	dir := s.cfg.Jobs.Dir(gpid)
	var images string
	var cg *isolate.Cgroup
	var launched *supervisor.Job
	fail := func(cause error) (api.CheckpointRestoreResult, error) {
		ctx := context.WithoutCancel(ctx)
		if launched != nil {
			s.cfg.Jobs.Abandon(launched)
			cg = launched.Cgroup()
		}
		if cg != nil {
			_ = cg.Destroy()
		}
		if images != "" && c.Node != s.cfg.Node {
			_ = os.RemoveAll(images)
		}
		_ = os.RemoveAll(dir)
		undoRecord(ctx)
		log.Warn("restore failed", "err", cause)
		return res, cause
	}
	// What is left of the job's earlier life here is replaced.
	if _, err := s.cfg.Jobs.NewDir(gpid); err != nil {
		return fail(err)
	}
	// The checkpoint's files: read in place where it is held, or shipped here.
	from := s.Dir(c.Name)
	images = filepath.Join(from, "images")
	if c.Node != s.cfg.Node {
		images = s.cfg.Dumper.ImagesDir("ckpt", gpid)
		from = filepath.Join(dir, ".incoming")
		t := time.Now()
		n, err := s.fetch(ctx, holder, c, images, from)
		if err != nil {
			return fail(err)
		}
		res.ImageBytes, res.TransferMS = n, float64(time.Since(t).Microseconds())/1000
	}
	var meta Meta
	var spec shim.Spec
	if err := shim.ReadJSON(from, MetaFile, &meta); err != nil {
		return fail(err)
	}
	if err := shim.ReadJSON(from, shim.SpecFile, &spec); err != nil {
		return fail(err)
	}
	if err := s.cfg.CPU.Check(meta.CPUFlags); err != nil {
		return fail(err)
	}
	if err := migrate.CheckFilesPresent(s.cfg.Node, meta.Files, spec.Workdir); err != nil {
		return fail(err)
	}
	if err := migrate.CheckFileSizes(s.cfg.Node, meta.Files, "checkpoint "+c.Name+" was taken", "put it back as it was, or restore on a node where it is unchanged"); err != nil {
		return fail(err)
	}
	if err := copyPrefix(filepath.Join(from, shim.LogFile), filepath.Join(dir, shim.LogFile), -1); err != nil {
		return fail(err)
	}
	if c.Node != s.cfg.Node {
		_ = os.RemoveAll(from)
	}
	spec.GPID, spec.Node, spec.Cgroup = gpid, s.cfg.Node, isolate.CgroupPath(s.cfg.CgroupParent, s.cfg.Node, gpid)
	if err := shim.WriteJSON(dir, shim.SpecFile, spec); err != nil {
		return fail(err)
	}
	rs := shim.RestoreSpec{ImagesDir: images, WorkDir: dir, StdoutKey: meta.StdoutKey, StderrKey: meta.StderrKey, CRIUPath: s.cfg.CRIUPath}
	if err := shim.WriteJSON(dir, shim.RestoreFile, rs); err != nil {
		return fail(err)
	}

	var err error
	if cg, err = isolate.CreateCgroup(spec.Cgroup, s.cfg.Jobs.Limits(proc.CPUs, proc.Memory)); err != nil {
		return fail(err)
	}
	t := time.Now()
	cmd, st, err := shim.Launch(ctx, s.cfg.ShimExe, dir, shim.ModeRestore)
	if err != nil {
		if cmd != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		return fail(errdefs.Conflictf("node %s could not restore checkpoint %s: %v", s.cfg.Node, c.Name, err))
	}
	res.RestoreMS = float64(time.Since(t).Microseconds()) / 1000
	j := s.cfg.Jobs.Add(supervisor.Launched{GPID: gpid, Dir: dir, State: st, Cgroup: cg, CPUs: proc.CPUs, Memory: proc.Memory, Placed: time.Now(), Token: token, Wait: cmd.Wait})
	cg = nil // the job's now: Finish and the shim remove it
	launched = j
	if err := failpoint.Hit("restore/after-launch"); err != nil {
		return fail(err)
	}
	// The restored copy is stopped. It may run once the record says it does.
	if _, _, err := s.cfg.Table.Transition(ctx, gpid, pidtable.Start, s.cfg.Node, func(p *pidtable.Proc) error {
		if p.Node != s.cfg.Node || p.State != pidtable.Starting {
			return fmt.Errorf("gpid %d changed during the restore: %v", gpid, p)
		}
		now := time.Now().UTC()
		p.State, p.PID, p.InitPID, p.Started, p.Arrived = pidtable.Running, st.MainPID, st.Init.PID, now, now
		return nil
	}); err != nil {
		return fail(err)
	}
	// A crash here leaves the copy stopped until the agent restarts and, the
	// record naming this node, resumes it.
	ferr := failpoint.Hit("restore/after-running")
	j.Resume()
	_ = os.Remove(filepath.Join(dir, shim.RestoreFile))
	if c.Node != s.cfg.Node {
		go os.RemoveAll(images)
	}
	if ferr != nil {
		return res, ferr
	}
	res.TotalMS = float64(time.Since(start).Microseconds()) / 1000
	log.Info("restored checkpoint", "pid", st.MainPID, "from", c.Node, "total_ms", res.TotalMS)
	return res, nil
}

func (s *Store) claimError(err error) error {
	if errors.Is(err, pidtable.ErrNodeNotReady) {
		return errdefs.Unavailablef("node %s lost its etcd lease; retry in a few seconds", s.cfg.Node)
	}
	return err
}

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/failpoint"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// A checkpoint is kept by the node that took it, on disk (it outlives a
// reboot), in <data dir>/checkpoints/<name>/:
//
//	images/    CRIU's images of the job's process tree
//	log        the job's output up to the dump (the restored job goes on from it)
//	spec.json  the job's shim spec (command, environment, user, limits)
//	meta.json  checkpointMeta
//
// Its record in etcd (pidtable.Checkpoint) names the node; a restore on
// another node fetches the directory from it as a checksummed stream.

// checkpointTimeout bounds taking or restoring one checkpoint.
const checkpointTimeout = 5 * time.Minute

// checkpointMeta is what a restore needs besides the images.
type checkpointMeta struct {
	// StdoutKey and StderrKey identify the job's output pipes in the images,
	// for CRIU's --inherit-fd.
	StdoutKey string `json:"stdout_key"`
	StderrKey string `json:"stderr_key"`
	// Files the job mapped or held open: a node restoring it must have them.
	Files []api.FileCheck `json:"files"`
	// CPUFlags are the feature flags of the CPU it was dumped on.
	CPUFlags []string `json:"cpu_flags,omitempty"`
}

const checkpointMetaFile = "meta.json"

func (a *Agent) checkpointsDir() string { return filepath.Join(a.cfg.DataDir, "checkpoints") }

func (a *Agent) checkpointDir(name string) string { return filepath.Join(a.checkpointsDir(), name) }

// handleCheckpoint is POST /v1/procs/{gpid}/checkpoint, served by the owner.
func (a *Agent) handleCheckpoint(w http.ResponseWriter, r *http.Request) {
	p, ok := a.owned(w, r)
	if !ok {
		return
	}
	var req api.CheckpointRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	// A checkpoint must not stop half-way because the client went away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), checkpointTimeout)
	defer cancel()
	res, err := a.checkpoint(ctx, p, req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

// checkpoint saves a checkpoint of p, a job running here.
func (a *Agent) checkpoint(ctx context.Context, p pidtable.Proc, req api.CheckpointRequest) (api.CheckpointResult, error) {
	start := time.Now()
	name := req.Name
	if name == "" {
		name = fmt.Sprintf("%d-%s", p.GPID, start.UTC().Format("20060102-150405.000"))
	}
	if err := pidtable.ValidCheckpointName(name); err != nil {
		return api.CheckpointResult{}, api.Errorf(api.CodeBadRequest, "--name: %v", err)
	}
	switch {
	case p.State.Ended():
		return api.CheckpointResult{}, api.Errorf(api.CodeConflict, "gpid %d has already %s", p.GPID, p.DescribeEnd())
	case p.State != pidtable.Running:
		return api.CheckpointResult{}, api.Errorf(api.CodeConflict, "gpid %d is %s, not running; retry when it is", p.GPID, p.State)
	case p.TTY:
		return api.CheckpointResult{}, migrate.RefuseTTY(p.GPID, "checkpointed")
	case a.criuErr != nil:
		return api.CheckpointResult{}, api.Errorf(api.CodeConflict, "node %s cannot checkpoint jobs: %v", a.cfg.Name, a.criuErr)
	}
	// Signals are held off while the job is frozen for the dump (agent.signal).
	j, err := a.markBusy(p.GPID, "being checkpointed")
	if err != nil {
		return api.CheckpointResult{}, err
	}
	defer a.clearBusy(j)
	c := pidtable.Checkpoint{Name: name, State: pidtable.Saving, GPID: p.GPID, Node: a.cfg.Name, Created: start.UTC(), LeaveRunning: req.LeaveRunning, Proc: p}
	crev, err := a.store.CreateCheckpoint(ctx, c)
	if errors.Is(err, pidtable.ErrExists) {
		return api.CheckpointResult{}, api.Errorf(api.CodeConflict, "a checkpoint named %q exists already; choose another --name, or remove it first (ssi checkpoints rm %s)", name, name)
	}
	if err != nil {
		return api.CheckpointResult{}, err
	}
	dir := a.checkpointDir(name)
	if _, _, err := a.store.Transition(ctx, p.GPID, pidtable.CheckpointClaim, a.cfg.Name, func(q *pidtable.Proc) error {
		if q.Node != a.cfg.Name || q.State != pidtable.Running {
			return api.Errorf(api.CodeConflict, "gpid %d is %s on %s, not running here", q.GPID, q.State, q.Node)
		}
		q.State, q.Checkpoint = pidtable.Checkpointing, name
		return nil
	}); err != nil {
		_ = a.store.DeleteCheckpoint(context.WithoutCancel(ctx), name, crev)
		return api.CheckpointResult{}, err
	}
	dumped := false
	// fail undoes the checkpoint: the job runs on as if it had not been taken.
	fail := func(cause error) (api.CheckpointResult, error) {
		ctx := context.WithoutCancel(ctx)
		if dumped {
			resume(j)
		}
		_ = os.RemoveAll(dir)
		if err := a.store.DeleteCheckpoint(ctx, name, crev); err != nil {
			a.log.Warn("remove record of failed checkpoint", "checkpoint", name, "err", err)
		}
		if err := a.releaseCheckpointing(ctx, p.GPID, name); err != nil {
			if q, _, gerr := a.store.Get(ctx, p.GPID); gerr == nil && q.State.Ended() {
				cause = api.Errorf(api.CodeConflict, "gpid %d ended during the checkpoint: it %s; no checkpoint was kept (the checkpoint stopped at: %v)", p.GPID, q.DescribeEnd(), cause)
			}
		}
		a.log.Warn("checkpoint failed", "gpid", p.GPID, "checkpoint", name, "err", cause)
		return api.CheckpointResult{}, cause
	}
	if err := failpoint.Hit("checkpoint/after-claim"); err != nil {
		return fail(err)
	}
	images := filepath.Join(dir, "images")
	if err := os.MkdirAll(images, 0o700); err != nil {
		return fail(fmt.Errorf("checkpoint dir: %w", err))
	}
	init := j.state.Init.PID
	var meta checkpointMeta
	if meta.StdoutKey, err = checkpoint.FileKey(init, 1); err == nil {
		meta.StderrKey, err = checkpoint.FileKey(init, 2)
	}
	if err != nil {
		return fail(err)
	}
	if meta.CPUFlags, err = a.cpu.flags(); err != nil {
		return fail(err)
	}
	frozenAt := time.Now()
	if err := a.mig.Dump(ctx, checkpoint.DumpOpts{
		PID: init, ImagesDir: images, LeaveStopped: true,
		Flags: migrate.CRIUFlags(),
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
	logPath := filepath.Join(j.dir, shim.LogFile)
	migrate.WaitDrained(init, logPath)
	fi, err := os.Stat(logPath)
	if err != nil {
		return fail(fmt.Errorf("job log: %w", err))
	}
	var frozen time.Duration
	if req.LeaveRunning {
		resume(j)
		dumped = false
		frozen = time.Since(frozenAt)
	}
	if err := copyPrefix(logPath, filepath.Join(dir, shim.LogFile), fi.Size()); err != nil {
		return fail(err)
	}
	if err := copyPrefix(filepath.Join(j.dir, shim.SpecFile), filepath.Join(dir, shim.SpecFile), -1); err != nil {
		return fail(err)
	}
	if err := shim.WriteJSON(dir, checkpointMetaFile, meta); err != nil {
		return fail(err)
	}
	c.State, c.Size = pidtable.Ready, migrate.DirSize(images)+fi.Size()
	if _, err := a.store.SwapCheckpoint(ctx, c, crev); err != nil {
		return fail(err)
	}
	// From here on the checkpoint is kept, whatever happens to the job.
	if err := failpoint.Hit("checkpoint/after-save"); err != nil {
		_ = a.releaseCheckpointing(ctx, p.GPID, name)
		resume(j)
		return api.CheckpointResult{}, err
	}
	if req.LeaveRunning {
		_ = a.releaseCheckpointing(ctx, p.GPID, name)
	} else {
		// The checkpoint is saved: stop the job. The marker tells the shim and
		// finish that the job did not end but was put away.
		if err := shim.WriteJSON(j.dir, shim.MovedFile, migrate.MovedMark{Time: time.Now().UTC(), Checkpoint: name}); err != nil {
			return fail(err)
		}
		killJob(j)
		select {
		case <-j.done: // finish recorded the job as Checkpointed
		case <-time.After(10 * time.Second):
			a.log.Warn("shim of a checkpointed job did not exit", "gpid", p.GPID)
		}
		if j.cgroup != nil {
			_ = j.cgroup.Destroy()
		}
		frozen = time.Since(frozenAt)
	}
	a.log.Info("checkpointed", "gpid", p.GPID, "checkpoint", name, "bytes", c.Size, "leave_running", req.LeaveRunning, "frozen", frozen)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return api.CheckpointResult{Checkpoint: c, FrozenMS: ms(frozen), DumpMS: ms(dumpTime), TotalMS: ms(time.Since(start))}, nil
}

// releaseCheckpointing returns a job claimed by a checkpoint to Running. It
// fails when the record moved on (the job ended during the checkpoint).
func (a *Agent) releaseCheckpointing(ctx context.Context, gpid uint64, name string) error {
	_, _, err := a.store.Transition(ctx, gpid, pidtable.CheckpointRelease, a.cfg.Name, func(q *pidtable.Proc) error {
		if q.Node != a.cfg.Name || q.State != pidtable.Checkpointing || q.Checkpoint != name {
			return fmt.Errorf("record changed under the checkpoint: %v", q)
		}
		q.State, q.Checkpoint = pidtable.Running, ""
		return nil
	})
	if err != nil {
		a.log.Warn("release job after checkpoint", "gpid", gpid, "checkpoint", name, "err", err)
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

// handleCheckpoints is GET /v1/checkpoints.
func (a *Agent) handleCheckpoints(w http.ResponseWriter, r *http.Request) {
	cs, err := a.store.Checkpoints(r.Context(), "")
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	snap, err := a.store.NodesSnapshot(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	who := callerOf(r)
	out := make([]api.CheckpointInfo, 0, len(cs))
	for _, c := range cs {
		if !visible(who, c.Proc.User) {
			continue
		}
		out = append(out, api.CheckpointInfo{Checkpoint: c, NodeReady: snap.Ready(c.Node)})
	}
	writeJSON(w, http.StatusOK, out)
}

// readCheckpoint reads the record of the checkpoint a request names.
func (a *Agent) readCheckpoint(r *http.Request) (pidtable.Checkpoint, int64, error) {
	name := r.PathValue("name")
	if err := pidtable.ValidCheckpointName(name); err != nil {
		return pidtable.Checkpoint{}, 0, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	c, rev, err := a.store.GetCheckpoint(r.Context(), name)
	if errors.Is(err, pidtable.ErrNotFound) {
		return c, 0, api.Errorf(api.CodeNotFound, "no checkpoint named %q (see ssi checkpoints)", name)
	}
	return c, rev, err
}

// usableCheckpoint is the request's checkpoint, which guard read and
// admitted the caller to, if it is completely saved.
func usableCheckpoint(r *http.Request) (pidtable.Checkpoint, int64, error) {
	c, rev, err := checkpointOf(r)
	if err == nil && c.State != pidtable.Ready {
		err = api.Errorf(api.CodeConflict, "checkpoint %s is still being saved; retry when it is done", c.Name)
	}
	return c, rev, err
}

// handleDeleteCheckpoint is DELETE /v1/checkpoints/{name}, served by the node
// holding it (or anywhere, for the record, when that node is gone).
func (a *Agent) handleDeleteCheckpoint(w http.ResponseWriter, r *http.Request) {
	c, rev, err := usableCheckpoint(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if c.Node != a.cfg.Name {
		snap, err := a.store.NodesSnapshot(r.Context())
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		if snap.Ready(c.Node) && !forwarded(r) {
			a.forward(w, r, c.Node)
			return
		}
		// The holder is down: forget the record; its agent removes the images
		// when it starts again (a checkpoint dir without a record is garbage).
	}
	if err := a.store.DeleteCheckpoint(r.Context(), c.Name, rev); err != nil {
		a.writeError(w, r, err)
		return
	}
	if c.Node == a.cfg.Name {
		if err := os.RemoveAll(a.checkpointDir(c.Name)); err != nil {
			a.log.Warn("remove checkpoint", "checkpoint", c.Name, "err", err)
		}
	}
	a.log.Info("checkpoint removed", "checkpoint", c.Name)
	w.WriteHeader(http.StatusNoContent)
}

// handleCheckpointImages is GET /v1/checkpoints/{name}/images, agent to agent:
// the holder streams the checkpoint to the node restoring it.
func (a *Agent) handleCheckpointImages(w http.ResponseWriter, r *http.Request) {
	c, _, err := a.readCheckpoint(r)
	if err == nil && (c.Node != a.cfg.Name || c.State != pidtable.Ready) {
		err = api.Errorf(api.CodeConflict, "checkpoint %s is not held here ready (%s on %s)", c.Name, c.State, c.Node)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	dir := a.checkpointDir(c.Name)
	w.Header().Set("Content-Type", "application/x-tar")
	if _, err := migrate.WriteStream(w,
		migrate.Source{Prefix: "images", Dir: filepath.Join(dir, "images")},
		migrate.Source{Prefix: "job", Dir: dir, Files: []string{shim.LogFile, shim.SpecFile, checkpointMetaFile}}); err != nil {
		// Too late for a status: the reader's checksum check fails on the cut stream.
		a.log.Warn("stream checkpoint", "checkpoint", c.Name, "err", err)
	}
}

// handleCheckpointRestore is POST /v1/checkpoints/{name}/restore: placed at the
// agent the client reached, carried out by the target node.
func (a *Agent) handleCheckpointRestore(w http.ResponseWriter, r *http.Request) {
	var req api.CheckpointRestoreRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	c, _, err := usableCheckpoint(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	pr := api.RunRequest{Node: req.Node, Placement: req.Placement, CPUs: c.Proc.CPUs, Memory: c.Proc.Memory}
	token, ok := a.servesHere(w, r, pr)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), checkpointTimeout)
	defer cancel()
	res, err := a.restoreCheckpoint(ctx, c, req.AsNew, token)
	a.served.add(placedJob{token: token, at: time.Now()}) // the job is counted here now, or gone
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

// restoreCheckpoint brings checkpoint c back as a job running on this node:
// under its own gpid (which must not be running anywhere) or, asNew, a new one;
// token is the placement it serves (recent.go).
func (a *Agent) restoreCheckpoint(ctx context.Context, c pidtable.Checkpoint, asNew bool, token string) (api.CheckpointRestoreResult, error) {
	start := time.Now()
	res := api.CheckpointRestoreResult{Checkpoint: c.Name, Node: a.cfg.Name, From: c.Node}
	if a.criuErr != nil {
		return res, api.Errorf(api.CodeConflict, "node %s cannot restore jobs: %v", a.cfg.Name, a.criuErr)
	}
	var holder pidtable.Node
	if c.Node != a.cfg.Name {
		snap, err := a.store.NodesSnapshot(ctx)
		if err != nil {
			return res, err
		}
		var ok bool
		if holder, ok = snap.Node(c.Node); !ok || !snap.Ready(c.Node) {
			return res, api.Errorf(api.CodeNotReady, "checkpoint %s is held by node %s, which is NotReady; it can be restored once that node's agent is back", c.Name, c.Node)
		}
	}
	if _, err := user.Lookup(c.Proc.User); err != nil {
		return res, api.Errorf(api.CodeConflict, "user %q, whom the job runs as, does not exist on node %s: %v", c.Proc.User, a.cfg.Name, err)
	}

	// Claim the gpid for this node. The record (Starting, owned here) is the
	// fence: no second restore of the same gpid can get past this point.
	proc := c.Proc
	proc.Node, proc.State, proc.PID, proc.InitPID = a.cfg.Name, pidtable.Starting, 0, 0
	proc.ExitCode, proc.Error, proc.Ended, proc.Started = nil, "", time.Time{}, time.Time{}
	proc.Migration, proc.MigrationError, proc.MigrationFailed = nil, "", time.Time{}
	proc.Checkpoint, proc.RestoredFrom = "", c.Name
	var undoRecord func(context.Context)
	switch old, orev, err := a.store.Get(ctx, c.GPID); {
	case asNew:
		proc.GPID, proc.Created = 0, time.Time{}
		created, err := a.store.Create(ctx, proc)
		if err != nil {
			return res, a.claimError(err)
		}
		proc = created
		undoRecord = func(ctx context.Context) { _ = a.store.Delete(ctx, proc.GPID, a.cfg.Name) }
	case errors.Is(err, pidtable.ErrNotFound):
		// The job ended and was forgotten since: its gpid is still its own.
		proc.Epoch++
		if _, err := a.store.Recreate(ctx, proc); err != nil {
			if errors.Is(err, pidtable.ErrExists) {
				return res, api.Errorf(api.CodeConflict, "gpid %d reappeared while restoring checkpoint %s; retry", c.GPID, c.Name)
			}
			return res, a.claimError(err)
		}
		undoRecord = func(ctx context.Context) { _ = a.store.Delete(ctx, proc.GPID, a.cfg.Name) }
	case err != nil:
		return res, err
	case !old.State.Ended():
		return res, api.Errorf(api.CodeConflict, "gpid %d is still %s on %s: restoring checkpoint %s under the same gpid would run it twice. Stop it first (ssi kill %d), or restore a copy under a new gpid with --as-new", c.GPID, old.State, old.Node, c.Name, c.GPID)
	default:
		proc.Epoch, proc.Created = old.Epoch+1, old.Created
		if _, _, err := a.store.TransitionAt(ctx, c.GPID, orev, pidtable.RestoreClaim, a.cfg.Name, func(p *pidtable.Proc) error { *p = proc; return nil }); err != nil {
			if errors.Is(err, pidtable.ErrChanged) {
				return res, api.Errorf(api.CodeConflict, "gpid %d changed while restoring checkpoint %s (restored elsewhere at the same time?); see ssi ps -a", c.GPID, c.Name)
			}
			return res, err
		}
		undoRecord = func(ctx context.Context) {
			// Put the ended record back, with a higher epoch: it no longer runs here.
			_, _, _ = a.store.Transition(ctx, old.GPID, pidtable.RestoreUndo, a.cfg.Name, func(p *pidtable.Proc) error {
				if p.Node != a.cfg.Name || p.State != pidtable.Starting {
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
	log := a.log.With("gpid", gpid, "checkpoint", c.Name)
	if err := failpoint.Hit("restore/after-claim"); err != nil {
		undoRecord(context.WithoutCancel(ctx))
		return res, err
	}

	dir := a.jobDir(gpid)
	var images string
	var cg *isolate.Cgroup
	var launched *job
	fail := func(cause error) (api.CheckpointRestoreResult, error) {
		ctx := context.WithoutCancel(ctx)
		if launched != nil {
			// Marked, so that its end is not recorded as the job's exit.
			_ = shim.WriteJSON(dir, shim.MovedFile, migrate.MovedMark{Time: time.Now().UTC()})
			killJob(launched)
			select {
			case <-launched.done:
			case <-time.After(10 * time.Second):
			}
			cg = launched.cgroup
		}
		if cg != nil {
			_ = cg.Destroy()
		}
		if images != "" && c.Node != a.cfg.Name {
			_ = os.RemoveAll(images)
		}
		_ = os.RemoveAll(dir)
		undoRecord(ctx)
		log.Warn("restore failed", "err", cause)
		return res, cause
	}
	// What is left of the job's earlier life here is replaced; dirMu keeps
	// removeMovedDir from removing the new directory.
	a.dirMu.Lock()
	a.removeJobDir(gpid)
	err := os.MkdirAll(dir, 0o700)
	a.dirMu.Unlock()
	if err != nil {
		return fail(fmt.Errorf("job dir: %w", err))
	}
	// The checkpoint's files: read in place where it is held, or shipped here.
	from := a.checkpointDir(c.Name)
	images = filepath.Join(from, "images")
	if c.Node != a.cfg.Name {
		images = a.mig.ImagesDir("ckpt", gpid)
		from = filepath.Join(dir, ".incoming")
		t := time.Now()
		n, err := a.fetchCheckpoint(ctx, holder, c, images, from)
		if err != nil {
			return fail(err)
		}
		res.ImageBytes, res.TransferMS = n, float64(time.Since(t).Microseconds())/1000
	}
	var meta checkpointMeta
	var spec shim.Spec
	if err := shim.ReadJSON(from, checkpointMetaFile, &meta); err != nil {
		return fail(err)
	}
	if err := shim.ReadJSON(from, shim.SpecFile, &spec); err != nil {
		return fail(err)
	}
	if err := a.checkCPU(meta.CPUFlags); err != nil {
		return fail(err)
	}
	if err := migrate.CheckFilesPresent(a.cfg.Name, meta.Files, spec.Workdir); err != nil {
		return fail(err)
	}
	if err := migrate.CheckFileSizes(a.cfg.Name, meta.Files, "checkpoint "+c.Name+" was taken", "put it back as it was, or restore on a node where it is unchanged"); err != nil {
		return fail(err)
	}
	if err := copyPrefix(filepath.Join(from, shim.LogFile), filepath.Join(dir, shim.LogFile), -1); err != nil {
		return fail(err)
	}
	if c.Node != a.cfg.Name {
		_ = os.RemoveAll(from)
	}
	spec.GPID, spec.Node, spec.Cgroup = gpid, a.cfg.Name, isolate.CgroupPath(a.cfg.CgroupParent, a.cfg.Name, gpid)
	if err := shim.WriteJSON(dir, shim.SpecFile, spec); err != nil {
		return fail(err)
	}
	rs := shim.RestoreSpec{ImagesDir: images, WorkDir: dir, StdoutKey: meta.StdoutKey, StderrKey: meta.StderrKey, CRIUPath: a.criuPath}
	if err := shim.WriteJSON(dir, shim.RestoreFile, rs); err != nil {
		return fail(err)
	}

	if cg, err = isolate.CreateCgroup(spec.Cgroup, a.limits(proc.CPUs, proc.Memory)); err != nil {
		return fail(err)
	}
	t := time.Now()
	cmd, st, err := shim.Launch(ctx, a.cfg.ShimExe, dir, shim.ModeRestore)
	if err != nil {
		if cmd != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		return fail(api.Errorf(api.CodeConflict, "node %s could not restore checkpoint %s: %v", a.cfg.Name, c.Name, err))
	}
	res.RestoreMS = float64(time.Since(t).Microseconds()) / 1000
	j := &job{gpid: gpid, dir: dir, state: st, cgroup: cg, cpus: proc.CPUs, memory: proc.Memory, placed: time.Now(), token: token, done: make(chan struct{})}
	cg = nil // the job's now: finish and the shim remove it
	launched = j
	a.mu.Lock()
	a.jobs[gpid] = j
	a.mu.Unlock()
	go a.watch(j, cmd)
	if err := failpoint.Hit("restore/after-launch"); err != nil {
		return fail(err)
	}
	// The restored copy is stopped. It may run once the record says it does.
	if _, _, err := a.store.Transition(ctx, gpid, pidtable.Start, a.cfg.Name, func(p *pidtable.Proc) error {
		if p.Node != a.cfg.Name || p.State != pidtable.Starting {
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
	resume(j)
	_ = os.Remove(filepath.Join(dir, shim.RestoreFile))
	if c.Node != a.cfg.Name {
		go os.RemoveAll(images)
	}
	if ferr != nil {
		return res, ferr
	}
	res.TotalMS = float64(time.Since(start).Microseconds()) / 1000
	log.Info("restored checkpoint", "pid", st.MainPID, "from", c.Node, "total_ms", res.TotalMS)
	return res, nil
}

func (a *Agent) claimError(err error) error {
	if errors.Is(err, pidtable.ErrNodeNotReady) {
		return api.Errorf(api.CodeNotReady, "node %s lost its etcd lease; retry in a few seconds", a.cfg.Name)
	}
	return err
}

// fetchCheckpoint streams checkpoint name from its holder: images into images,
// the job files into jobFiles. It returns the bytes received.
func (a *Agent) fetchCheckpoint(ctx context.Context, holder pidtable.Node, c pidtable.Checkpoint, images, jobFiles string) (int64, error) {
	name := c.Name
	for _, d := range []string{images, jobFiles} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return 0, err
		}
	}
	u := fmt.Sprintf("%s://%s/v1/checkpoints/%s/images", a.scheme(), holder.Addr, url.PathEscape(name))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set(api.HeaderForwarded, a.cfg.Name)
	resp, err := (&http.Client{Transport: a.peer}).Do(req)
	if err != nil {
		return 0, api.Errorf(api.CodeNotReady, "fetch checkpoint %s from %s: %v", name, holder.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return 0, &e
		}
		return 0, fmt.Errorf("fetch checkpoint %s from %s: HTTP %d", name, holder.Name, resp.StatusCode)
	}
	// No more than the job's memory limit allows (its pages cannot exceed it).
	n, err := migrate.ReadStream(resp.Body, map[string]string{"images": images, "job": jobFiles}, migrate.ImageBytesFor(c.Proc.Memory))
	if err != nil {
		return n, api.Errorf(api.CodeConflict, "checkpoint %s from %s: %v", name, holder.Name, err)
	}
	return n, nil
}

// reconcileCheckpoints runs at agent start: it removes checkpoints this node
// was still saving when its agent stopped, and directories that no record
// names (removed while this node was down).
func (a *Agent) reconcileCheckpoints(ctx context.Context) error {
	cs, err := a.store.Checkpoints(ctx, a.cfg.Name)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, c := range cs {
		if c.State == pidtable.Ready {
			keep[c.Name] = true
			continue
		}
		_, rev, err := a.store.GetCheckpoint(ctx, c.Name)
		if err == nil {
			err = a.store.DeleteCheckpoint(ctx, c.Name, rev)
		}
		a.log.Warn("removed a checkpoint interrupted by an agent restart", "checkpoint", c.Name, "gpid", c.GPID, "err", err)
	}
	entries, err := os.ReadDir(a.checkpointsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("agent: list checkpoints: %w", err)
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			if err := os.RemoveAll(filepath.Join(a.checkpointsDir(), e.Name())); err != nil {
				a.log.Warn("remove stale checkpoint dir", "dir", e.Name(), "err", err)
			}
		}
	}
	return nil
}

package agent

// The target's side of a migration: prepare, the image stream, the restore
// (a stopped copy), and then either the resume once the record names this
// node, or the discard of what was prepared (an abort, a rollback seen in the
// record, or the migration's bound).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/failpoint"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
	"golang.org/x/sys/unix"
)

// incoming is a migration this node is the target of.
type incoming struct {
	id     string
	from   string // the source node: the only one that may drive this migration
	proc   pidtable.Proc
	dir    string
	images string
	cgroup *isolate.Cgroup
	job    *job // set once restored
}

// handlePrepare is the first step of a migration to this node, from the
// node the job's record names as owner (guard read the record).
func (a *Agent) handlePrepare(w http.ResponseWriter, r *http.Request) {
	p, ok := a.admittedJob(w, r)
	if !ok {
		return
	}
	gpid := p.GPID
	var req api.PrepareRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := a.checkPrepare(p, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := a.prepare(gpid, req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := failpoint.Hit("migrate/target/after-prepare"); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) prepare(gpid uint64, req api.PrepareRequest) error {
	if req.Proc.GPID != gpid || req.Spec.GPID != gpid || req.ID == "" {
		return api.Errorf(api.CodeBadRequest, "prepare: gpid/spec mismatch")
	}
	if a.criuErr != nil {
		return api.Errorf(api.CodeConflict, "node %s cannot restore jobs: %v", a.cfg.Name, a.criuErr)
	}
	if err := a.checkCPU(req.CPUFlags); err != nil {
		return err
	}
	if err := checkFilesPresent(a.cfg.Name, req.Files, req.Spec.Workdir); err != nil {
		return err
	}
	if a.localJob(gpid) != nil {
		return api.Errorf(api.CodeConflict, "gpid %d already runs on %s", gpid, a.cfg.Name)
	}
	a.abortIncoming(gpid) // a stale attempt
	in := &incoming{id: req.ID, from: req.Proc.Node, proc: req.Proc, dir: a.jobDir(gpid), images: a.imagesDir("in", gpid)}
	spec := req.Spec
	spec.Node, spec.Cgroup = a.cfg.Name, isolate.CgroupPath(a.cfg.CgroupParent, a.cfg.Name, gpid)
	// The directory of an earlier stay of the job here is replaced; dirMu
	// keeps removeMovedDir from removing the new one.
	a.dirMu.Lock()
	a.removeJobDir(gpid)
	for _, d := range []string{in.dir, in.images, stageDir(in)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			a.dirMu.Unlock()
			a.discard(in)
			return err
		}
	}
	a.dirMu.Unlock()
	if err := shim.WriteJSON(in.dir, shim.SpecFile, spec); err != nil {
		a.discard(in)
		return err
	}
	cg, err := isolate.CreateCgroup(spec.Cgroup, a.limits(req.Proc.CPUs, req.Proc.Memory))
	if err != nil {
		a.discard(in)
		return err
	}
	in.cgroup = cg
	a.mu.Lock()
	a.incoming[gpid] = in
	a.mu.Unlock()
	go a.watchIncoming(gpid, in)
	return nil
}

// incomingFor returns the prepared migration of gpid with the given id.
// Only the node that prepared it may drive it (from).
func (a *Agent) incomingFor(gpid uint64, id, from string) (*incoming, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	in := a.incoming[gpid]
	if in == nil || in.id != id {
		return nil, api.Errorf(api.CodeConflict, "no prepared migration %s of gpid %d on %s", id, gpid, a.cfg.Name)
	}
	if in.from != from {
		return nil, api.Errorf(api.CodeForbidden, "migration %s of gpid %d is driven by node %s, not %s", id, gpid, in.from, from)
	}
	return in, nil
}

func (a *Agent) handleImages(w http.ResponseWriter, r *http.Request) {
	from := callerOf(r).node // the migration's source: guard admitted it
	gpid, err := pathGPID(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	in, err := a.incomingFor(gpid, r.Header.Get("X-Ssi-Migration"), from)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	release, err := a.acquireStream(from)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	defer release()
	stage := stageDir(in)
	_, err = migrate.ReadStream(r.Body, map[string]string{"images": in.images, "job": stage}, imageBytesFor(in.proc.Memory))
	// Read the stream to its end (tar padding) so the connection is reusable
	// rather than closed under a request that picks it up next.
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "image stream for gpid %d: %v", gpid, err))
		return
	}
	// Only the log is taken from the job part of the stream.
	if err := os.Rename(filepath.Join(stage, shim.LogFile), filepath.Join(in.dir, shim.LogFile)); err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "image stream for gpid %d carries no job log: %v", gpid, err))
		return
	}
	if err := adoptStdinFile(stage, in.dir); err != nil {
		a.writeError(w, r, err)
		return
	}
	_ = os.RemoveAll(stage)
	if err := failpoint.Hit("migrate/target/after-images"); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleCheck checks, before a lock holder's source copy hands its locks over
// (handover.go), that the target has every file the job uses with the size
// it had at the dump: a refusal then costs no restore on either side.
func (a *Agent) handleCheck(w http.ResponseWriter, r *http.Request) {
	gpid, req, from, ok := a.stepRequest(w, r)
	if !ok {
		return
	}
	if _, err := a.incomingFor(gpid, req.ID, from); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := a.checkFrozenFiles(gpid, req.Files); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkFrozenFiles checks that this node has every file an incoming job uses
// with the size it had when the job was frozen for its move (files.go).
// restoreBound is how long a target's restore may take: 2 s less than the
// source's bound for the step (boundMS), so the source hears why it did not
// finish; 2 minutes (the shim's bound for CRIU) when the source gave none.
func restoreBound(boundMS int64) time.Duration {
	if boundMS <= 0 {
		return 2 * time.Minute
	}
	return max(time.Duration(boundMS)*time.Millisecond-2*time.Second, time.Second)
}

// filePaths lists the paths of files.
func filePaths(files []api.FileCheck) []string {
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.Path
	}
	return paths
}

func (a *Agent) checkFrozenFiles(gpid uint64, files []api.FileCheck) error {
	return checkFileSizes(a.cfg.Name, files, "the job was frozen for its move", fmt.Sprintf("a retry may succeed once it is left alone (ssi migrate %d %s)", gpid, a.cfg.Name))
}

func (a *Agent) handleRestore(w http.ResponseWriter, r *http.Request) {
	gpid, req, from, ok := a.stepRequest(w, r)
	if !ok {
		return
	}
	in, err := a.incomingFor(gpid, req.ID, from)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	tl := &timeline{node: a.cfg.Name}
	t := time.Now()
	if err := a.checkFrozenFiles(gpid, req.Files); err != nil {
		a.writeError(w, r, err)
		return
	}
	t = tl.since("check files", t)
	rs := shim.RestoreSpec{ImagesDir: in.images, StdoutKey: req.StdoutKey, StderrKey: req.StderrKey, StdinKey: req.StdinKey, CRIUPath: a.criuPath, LazyPages: req.LazyPages}
	if req.LazyPages != "" {
		tlsFiles, err := lazyPagesTLS(req, in.images)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		rs.LazyPagesTLS = &tlsFiles
	}
	if err := shim.WriteJSON(in.dir, shim.RestoreFile, rs); err != nil {
		a.writeError(w, r, err)
		return
	}
	t = tl.since("write restore spec", t)
	bound := restoreBound(req.BoundMS)
	ctx, cancel := context.WithTimeout(r.Context(), bound)
	defer cancel()
	cmd, st, err := shim.Launch(ctx, a.cfg.ShimExe, in.dir, shim.ModeRestore)
	if err == nil {
		tl.add([]api.Step{{Node: a.cfg.Name, Name: "criu restore", MS: st.CRIUMS}})
		tl.since("shim restore (with criu)", t)
	}
	if err != nil && ctx.Err() != nil && r.Context().Err() == nil {
		// Stuck, most likely on a file lock someone else holds: say so
		// while the source still waits for the answer; the abort that
		// follows kills what is in the job's cgroup (CRIU included).
		pids, _ := in.cgroup.Pids()
		why := checkpoint.WhyBlocked(pids, filePaths(req.Files))
		a.log.Warn("restore stuck", "gpid", gpid, "after", bound, "why", why)
		err = fmt.Errorf("the restore did not finish within %s: %s: %w", bound, why, err)
	}
	if err != nil {
		if cmd != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		a.writeError(w, r, a.restoreFailed(gpid, in.images, err))
		return
	}
	j := &job{gpid: gpid, dir: in.dir, state: st, cgroup: in.cgroup, cpus: in.proc.CPUs, memory: in.proc.Memory, arrivedFrom: in.from, done: make(chan struct{})}
	a.mu.Lock()
	in.job = j
	a.jobs[gpid] = j
	a.mu.Unlock()
	go a.watch(j, cmd)
	a.log.Info("restored migrated job", "gpid", gpid, "pid", st.MainPID)
	// Until the source commits, the record names the source: the job is ours
	// once it does (watchIncoming then resumes it). A later abort kills this copy.
	if err := failpoint.Hit("migrate/target/after-restore"); err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.RestoreResponse{State: st, Steps: tl.list()})
}

// watchIncoming follows the job's record for as long as this node is the target
// of a migration it was prepared for: once the record names this node (the
// commit) it resumes the restored copy; once the record shows the migration
// over without naming this node (rolled back, e.g. while the source could not
// reach us to abort) it discards what it prepared, so a partition between the
// two agents leaves nothing stopped behind. Past the migration timeout it
// discards too, unless the job is ours.
func (a *Agent) watchIncoming(gpid uint64, in *incoming) {
	deadline := time.Now().Add(migrationTimeout + time.Minute)
	for {
		time.Sleep(50 * time.Millisecond)
		a.mu.Lock()
		gone, restored := a.incoming[gpid] != in, in.job != nil
		a.mu.Unlock()
		if gone {
			return // resumed, or aborted
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p, _, err := a.store.Get(ctx, gpid)
		cancel()
		switch {
		case err == nil && p.Node == a.cfg.Name:
			if restored {
				a.resumeCommitted(gpid, in)
				return
			}
		case err == nil && (p.Migration == nil || p.Migration.ID != in.id):
			a.log.Warn("discarding an incoming migration its source gave up", "gpid", gpid, "migration", in.id)
			a.abortIncoming(gpid)
			return
		case errors.Is(err, pidtable.ErrNotFound):
			a.abortIncoming(gpid)
			return
		}
		// Past the bound, give up on a migration the record shows is not ours;
		// while etcd cannot say, keep waiting: a committed copy may be the only one.
		if err == nil && time.Now().After(deadline) && p.Node != a.cfg.Name {
			a.log.Warn("discarding an incoming migration that did not complete in time", "gpid", gpid, "migration", in.id)
			a.abortIncoming(gpid)
			return
		}
		if err != nil {
			time.Sleep(500 * time.Millisecond) // etcd unreachable: poll more gently
		}
	}
}

func (a *Agent) handleAbort(w http.ResponseWriter, r *http.Request) {
	gpid, req, from, ok := a.stepRequest(w, r)
	if !ok {
		return
	}
	if _, err := a.incomingFor(gpid, req.ID, from); err != nil {
		if api.IsCode(err, api.CodeForbidden) {
			a.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent) // nothing to discard
		return
	}
	a.abortIncoming(gpid)
	w.WriteHeader(http.StatusNoContent)
}

// abortIncoming discards a prepared or restored migration that was not committed.
func (a *Agent) abortIncoming(gpid uint64) {
	a.mu.Lock()
	in := a.incoming[gpid]
	a.mu.Unlock()
	if in == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	p, _, err := a.store.Get(ctx, gpid)
	cancel()
	if err == nil && p.Node == a.cfg.Name {
		// Committed to us after all: the copy is the job; run it.
		a.log.Error("refusing to abort a committed migration; resuming it", "gpid", gpid)
		a.resumeCommitted(gpid, in)
		return
	}
	a.mu.Lock()
	mine := a.incoming[gpid] == in
	if mine {
		delete(a.incoming, gpid)
	}
	a.mu.Unlock()
	if mine {
		a.discard(in)
		a.log.Info("discarded incoming migration", "gpid", gpid)
	}
}

// discard kills a restored copy (if any) and removes what prepare made.
func (a *Agent) discard(in *incoming) {
	if in.job != nil {
		_ = unix.Kill(in.job.state.Init.PID, unix.SIGKILL)
		select {
		case <-in.job.done:
		case <-time.After(10 * time.Second):
		}
	}
	if in.cgroup != nil {
		_ = in.cgroup.Destroy()
	}
	_ = os.RemoveAll(in.images)
	_ = os.RemoveAll(in.dir)
}

// stageDir receives the job files of an image stream, on the job dir's
// filesystem so they can be renamed into place.
func stageDir(in *incoming) string { return filepath.Join(in.dir, ".incoming") }

func (a *Agent) handleResume(w http.ResponseWriter, r *http.Request) {
	gpid, req, from, ok := a.stepRequest(w, r)
	if !ok {
		return
	}
	in, err := a.incomingFor(gpid, req.ID, from)
	if err != nil {
		if j := a.localJob(gpid); j != nil && !api.IsCode(err, api.CodeForbidden) {
			w.WriteHeader(http.StatusNoContent) // resumed already (watchIncoming)
			return
		}
		a.writeError(w, r, err)
		return
	}
	// Only the record may tell a copy to run: resume strictly after the commit.
	p, _, err := a.store.Get(r.Context(), gpid)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if p.Node != a.cfg.Name {
		a.writeError(w, r, api.Errorf(api.CodeConflict, "gpid %d is owned by %s: its copy here stays stopped", gpid, p.Node))
		return
	}
	a.resumeCommitted(gpid, in)
	w.WriteHeader(http.StatusNoContent)
}

// resumeCommitted continues a restored copy whose migration committed to this
// node, and forgets the migration. Only the caller that removes the migration
// sends SIGCONT: a second, late SIGCONT could land in the middle of the job's
// next dump and make CRIU fail ("stopped by 5 unexpectedly").
func (a *Agent) resumeCommitted(gpid uint64, in *incoming) {
	a.mu.Lock()
	mine := a.incoming[gpid] == in
	if mine {
		delete(a.incoming, gpid)
	}
	a.mu.Unlock()
	if mine && in.job != nil {
		resume(in.job)
		_ = os.Remove(filepath.Join(in.dir, shim.RestoreFile))
		a.kickStatus()
	}
	if mine {
		// Restored and resumed: the images are no longer needed. Removed in the
		// background, so that neither the freeze nor the source waits for it.
		go os.RemoveAll(in.images)
	}
}

// removeStaleImages deletes images left by an earlier run of this agent (a crash
// mid-migration); a starting agent has no migration in flight.
func (a *Agent) removeStaleImages() {
	if err := os.RemoveAll(a.imagesRoot()); err != nil {
		a.log.Warn("remove stale images", "dir", a.imagesRoot(), "err", err)
	}
}

// stepRequest decodes the gpid and body of a restore, resume or abort request,
// answering the error itself when ok is false.
func (a *Agent) stepRequest(w http.ResponseWriter, r *http.Request) (gpid uint64, req api.RestoreRequest, from string, ok bool) {
	from = callerOf(r).node // the migration's source: guard admitted it
	gpid, err := pathGPID(r)
	if err == nil {
		err = decode(r, &req)
	}
	if err != nil {
		a.writeError(w, r, err)
		return 0, req, "", false
	}
	return gpid, req, from, true
}

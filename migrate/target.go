package migrate

// The target's side of a migration: prepare, the image stream, the restore
// (a stopped copy), and then either the resume once the record names this
// node, or the discard of what was prepared (an abort, a rollback seen in the
// record, or the migration's bound). The agent's HTTP handlers call these
// methods; from is always the caller's node, as the agent's guard admitted it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/failpoint"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// incoming is a migration this node is the target of.
type incoming struct {
	id     string
	from   string // the source node: the only one that may drive this migration
	proc   pidtable.Proc
	dir    string
	images string
	cgroup *isolate.Cgroup
	job    Job // set once restored
}

// IncomingSource is the node that prepared a migration of gpid to this node,
// if there is one in flight.
func (mg *Migrator) IncomingSource(gpid uint64) (from string, ok bool) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if in := mg.incoming[gpid]; in != nil {
		return in.from, true
	}
	return "", false
}

// ExpectIncoming records a migration id of gpid from node from as prepared
// here, without preparing anything: for tests of the agent's HTTP edge.
func (mg *Migrator) ExpectIncoming(gpid uint64, id, from string) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	mg.incoming[gpid] = &incoming{id: id, from: from}
}

// PrepareIncoming is the first step of a migration of gpid to this node;
// req has been checked against the job's record by the agent.
func (mg *Migrator) PrepareIncoming(gpid uint64, req api.PrepareRequest) error {
	if err := mg.prepare(gpid, req); err != nil {
		return err
	}
	return failpoint.Hit("migrate/target/after-prepare")
}

func (mg *Migrator) prepare(gpid uint64, req api.PrepareRequest) error {
	if req.Proc.GPID != gpid || req.Spec.GPID != gpid || req.ID == "" {
		return errdefs.Invalidf("prepare: gpid/spec mismatch")
	}
	if mg.cfg.CRIUErr != nil {
		return errdefs.Conflictf("node %s cannot restore jobs: %v", mg.cfg.Name, mg.cfg.CRIUErr)
	}
	// The source checked this node's record; the record may predate a
	// restart with another binary.
	if err := CheckProtocol(mg.cfg.Name, mg.cfg.Version, pidtable.Node{Name: req.Proc.Node, Version: req.Version, Protocol: req.Protocol}); err != nil {
		return err
	}
	if err := mg.cpu.Check(req.CPUFlags); err != nil {
		return err
	}
	if err := CheckFilesPresent(mg.cfg.Name, req.Files, req.Spec.Workdir); err != nil {
		return err
	}
	if mg.jobs.Job(gpid) != nil {
		return errdefs.Conflictf("gpid %d already runs on %s", gpid, mg.cfg.Name)
	}
	mg.abortIncoming(gpid) // a stale attempt
	in := &incoming{id: req.ID, from: req.Proc.Node, proc: req.Proc, images: mg.ImagesDir("in", gpid)}
	spec := req.Spec
	spec.Node, spec.Cgroup = mg.cfg.Name, isolate.CgroupPath(mg.cfg.CgroupParent, mg.cfg.Name, gpid)
	// The directory of an earlier stay of the job here is replaced (NewDir
	// keeps the agent from removing the new one).
	var err error
	if in.dir, err = mg.jobs.NewDir(gpid); err != nil {
		mg.discard(in)
		return err
	}
	for _, d := range []string{in.images, stageDir(in)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			mg.discard(in)
			return err
		}
	}
	if err := shim.WriteJSON(in.dir, shim.SpecFile, spec); err != nil {
		mg.discard(in)
		return err
	}
	cg, err := isolate.CreateCgroup(spec.Cgroup, mg.jobs.Limits(req.Proc.CPUs, req.Proc.Memory))
	if err != nil {
		mg.discard(in)
		return err
	}
	in.cgroup = cg
	mg.mu.Lock()
	mg.incoming[gpid] = in
	mg.mu.Unlock()
	go mg.watchIncoming(gpid, in)
	return nil
}

// incomingFor returns the prepared migration of gpid with the given id.
// Only the node that prepared it may drive it (from).
func (mg *Migrator) incomingFor(gpid uint64, id, from string) (*incoming, error) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	in := mg.incoming[gpid]
	if in == nil || in.id != id {
		return nil, errdefs.Conflictf("no prepared migration %s of gpid %d on %s", id, gpid, mg.cfg.Name)
	}
	if in.from != from {
		return nil, errdefs.Forbiddenf("migration %s of gpid %d is driven by node %s, not %s", id, gpid, in.from, from)
	}
	return in, nil
}

// ReceiveImages reads the image stream of migration id of gpid, from node
// from, into what prepare made.
func (mg *Migrator) ReceiveImages(gpid uint64, id, from string, body io.Reader) error {
	in, err := mg.incomingFor(gpid, id, from)
	if err != nil {
		return err
	}
	release, err := mg.acquireStream(from)
	if err != nil {
		return err
	}
	defer release()
	stage := stageDir(in)
	_, err = ReadStream(body, map[string]string{"images": in.images, "job": stage}, ImageBytesFor(in.proc.Memory))
	// Read the stream to its end (tar padding) so the connection is reusable
	// rather than closed under a request that picks it up next.
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 1<<20))
	if err != nil {
		return errdefs.Invalidf("image stream for gpid %d: %v", gpid, err)
	}
	if _, err := os.Stat(filepath.Join(stage, shim.LogFile+logPrefixSuffix)); err == nil {
		// The job's log so far, sent ahead of the freeze (shipLogPrefix):
		// kept aside until its tail comes with the images.
		return os.Rename(filepath.Join(stage, shim.LogFile+logPrefixSuffix), filepath.Join(in.dir, logPrefixFile))
	}
	// Only the log is taken from the job part of the stream.
	if err := adoptLog(stage, in.dir); err != nil {
		return errdefs.Invalidf("image stream for gpid %d: %v", gpid, err)
	}
	if err := adoptStdinFile(stage, in.dir); err != nil {
		return err
	}
	_ = os.RemoveAll(stage)
	return failpoint.Hit("migrate/target/after-images")
}

// acquireStream takes one of the image-stream slots of peer; release gives it back.
func (mg *Migrator) acquireStream(peer string) (release func(), err error) {
	mg.streamsMu.Lock()
	defer mg.streamsMu.Unlock()
	if mg.streams[peer] >= maxStreamsPerPeer {
		return nil, errdefs.Conflictf("node %s already has %d image streams in flight to %s: at most %d; retry later", peer, mg.streams[peer], mg.cfg.Name, maxStreamsPerPeer)
	}
	mg.streams[peer]++
	return func() {
		mg.streamsMu.Lock()
		mg.streams[peer]--
		if mg.streams[peer] == 0 {
			delete(mg.streams, peer)
		}
		mg.streamsMu.Unlock()
	}, nil
}

// CheckIncoming checks, before a lock holder's source copy hands its locks
// over (handover.go), that this node has every file the job uses with the
// size it had at the dump: a refusal then costs no restore on either side.
func (mg *Migrator) CheckIncoming(gpid uint64, req api.RestoreRequest, from string) error {
	if _, err := mg.incomingFor(gpid, req.ID, from); err != nil {
		return err
	}
	return mg.checkFrozenFiles(gpid, req.Files)
}

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

// checkFrozenFiles checks that this node has every file an incoming job uses
// with the size it had when the job was frozen for its move (files.go).
func (mg *Migrator) checkFrozenFiles(gpid uint64, files []api.FileCheck) error {
	return CheckFileSizes(mg.cfg.Name, files, "the job was frozen for its move", fmt.Sprintf("a retry may succeed once it is left alone (ssi migrate %d %s)", gpid, mg.cfg.Name))
}

// RestoreIncoming restores the job of a prepared migration, stopped. ctx is
// the request's: a source that gave up cancels the restore.
func (mg *Migrator) RestoreIncoming(ctx context.Context, gpid uint64, req api.RestoreRequest, from string) (api.RestoreResponse, error) {
	in, err := mg.incomingFor(gpid, req.ID, from)
	if err != nil {
		return api.RestoreResponse{}, err
	}
	tl := &timeline{node: mg.cfg.Name}
	t := time.Now()
	if err := mg.checkFrozenFiles(gpid, req.Files); err != nil {
		return api.RestoreResponse{}, err
	}
	t = tl.since("check files", t)
	rs := shim.RestoreSpec{ImagesDir: in.images, StdoutKey: req.StdoutKey, StderrKey: req.StderrKey, StdinKey: req.StdinKey, CRIUPath: mg.cfg.CRIUPath, LazyPages: req.LazyPages}
	if req.LazyPages != "" {
		tlsFiles, err := lazyPagesTLS(req, in.images)
		if err != nil {
			return api.RestoreResponse{}, err
		}
		rs.LazyPagesTLS = &tlsFiles
	}
	if err := shim.WriteJSON(in.dir, shim.RestoreFile, rs); err != nil {
		return api.RestoreResponse{}, err
	}
	t = tl.since("write restore spec", t)
	bound := restoreBound(req.BoundMS)
	deadline := time.Now().Add(bound)
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	cmd, st, err := shim.Launch(rctx, mg.cfg.ShimExe, in.dir, shim.ModeRestore)
	if err == nil {
		tl.add([]api.Step{{Node: mg.cfg.Name, Name: "criu restore", MS: st.CRIUMS}})
		tl.since("shim restore (with criu)", t)
	}
	// The shim's read deadline can fire a hair before the context says it
	// expired: the clock decides.
	if err != nil && !time.Now().Before(deadline) && ctx.Err() == nil {
		// Stuck, most likely on a file lock someone else holds: say so
		// while the source still waits for the answer; the abort that
		// follows kills what is in the job's cgroup (CRIU included).
		pids, _ := in.cgroup.Pids()
		why := checkpoint.WhyBlocked(pids, filePaths(req.Files))
		mg.log.Warn("restore stuck", "gpid", gpid, "after", bound, "why", why)
		err = fmt.Errorf("the restore did not finish within %s: %s: %w", bound, why, err)
	}
	if err != nil {
		if cmd != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		return api.RestoreResponse{}, mg.RestoreFailed(gpid, in.images, err)
	}
	j := mg.jobs.Adopt(Restored{GPID: gpid, Dir: in.dir, State: st, Cgroup: in.cgroup, Cmd: cmd, CPUs: in.proc.CPUs, Memory: in.proc.Memory, ArrivedFrom: in.from})
	mg.mu.Lock()
	in.job = j
	mg.mu.Unlock()
	mg.log.Info("restored migrated job", "gpid", gpid, "pid", st.MainPID)
	// Until the source commits, the record names the source: the job is ours
	// once it does (watchIncoming then resumes it). A later abort kills this copy.
	if err := failpoint.Hit("migrate/target/after-restore"); err != nil {
		return api.RestoreResponse{}, err
	}
	return api.RestoreResponse{State: st, Steps: tl.list()}, nil
}

// watchIncoming follows the job's record for as long as this node is the target
// of a migration it was prepared for: once the record names this node (the
// commit) it resumes the restored copy; once the record shows the migration
// over without naming this node (rolled back, e.g. while the source could not
// reach us to abort) it discards what it prepared, so a partition between the
// two agents leaves nothing stopped behind. Past the migration timeout it
// discards too, unless the job is ours.
func (mg *Migrator) watchIncoming(gpid uint64, in *incoming) {
	deadline := time.Now().Add(Timeout + time.Minute)
	for {
		select {
		case <-mg.life.Done():
			return // the agent stops; its successor reconciles
		case <-time.After(50 * time.Millisecond):
		}
		mg.mu.Lock()
		gone, restored := mg.incoming[gpid] != in, in.job != nil
		mg.mu.Unlock()
		if gone {
			return // resumed, or aborted
		}
		ctx, cancel := context.WithTimeout(mg.life, 5*time.Second)
		p, _, err := mg.store.Get(ctx, gpid)
		cancel()
		switch {
		case err == nil && p.Node == mg.cfg.Name:
			if restored {
				mg.resumeCommitted(gpid, in)
				return
			}
		case err == nil && (p.Migration == nil || p.Migration.ID != in.id):
			mg.log.Warn("discarding an incoming migration its source gave up", "gpid", gpid, "migration", in.id)
			mg.abortIncoming(gpid)
			return
		case errors.Is(err, pidtable.ErrNotFound):
			mg.abortIncoming(gpid)
			return
		}
		// Past the bound, give up on a migration the record shows is not ours;
		// while etcd cannot say, keep waiting: a committed copy may be the only one.
		if err == nil && time.Now().After(deadline) && p.Node != mg.cfg.Name {
			mg.log.Warn("discarding an incoming migration that did not complete in time", "gpid", gpid, "migration", in.id)
			mg.abortIncoming(gpid)
			return
		}
		if err != nil {
			time.Sleep(500 * time.Millisecond) // etcd unreachable: poll more gently
		}
	}
}

// AbortIncoming discards migration id of gpid, driven by from; nothing to
// discard is no error, a caller that does not drive the migration is.
func (mg *Migrator) AbortIncoming(gpid uint64, id, from string) error {
	if _, err := mg.incomingFor(gpid, id, from); err != nil {
		if errors.Is(err, errdefs.ErrForbidden) {
			return err
		}
		return nil // nothing to discard
	}
	mg.abortIncoming(gpid)
	return nil
}

// abortIncoming discards a prepared or restored migration that was not committed.
func (mg *Migrator) abortIncoming(gpid uint64) {
	mg.mu.Lock()
	in := mg.incoming[gpid]
	mg.mu.Unlock()
	if in == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	p, _, err := mg.store.Get(ctx, gpid)
	cancel()
	if err == nil && p.Node == mg.cfg.Name {
		// Committed to us after all: the copy is the job; run it.
		mg.log.Error("refusing to abort a committed migration; resuming it", "gpid", gpid)
		mg.resumeCommitted(gpid, in)
		return
	}
	mg.mu.Lock()
	mine := mg.incoming[gpid] == in
	if mine {
		delete(mg.incoming, gpid)
	}
	mg.mu.Unlock()
	if mine {
		mg.discard(in)
		mg.log.Info("discarded incoming migration", "gpid", gpid)
	}
}

// discard kills a restored copy (if any) and removes what prepare made.
func (mg *Migrator) discard(in *incoming) {
	if in.job != nil {
		_ = unix.Kill(in.job.State().Init.PID, unix.SIGKILL)
		select {
		case <-in.job.Done():
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

// ResumeIncoming continues the restored copy of migration id of gpid, driven
// by from, once the record names this node (strictly after the commit).
func (mg *Migrator) ResumeIncoming(ctx context.Context, gpid uint64, id, from string) error {
	in, err := mg.incomingFor(gpid, id, from)
	if err != nil {
		if j := mg.jobs.Job(gpid); j != nil && !errors.Is(err, errdefs.ErrForbidden) {
			return nil // resumed already (watchIncoming)
		}
		return err
	}
	// Only the record may tell a copy to run: resume strictly after the commit.
	p, _, err := mg.store.Get(ctx, gpid)
	if err != nil {
		return err
	}
	if p.Node != mg.cfg.Name {
		return errdefs.Conflictf("gpid %d is owned by %s: its copy here stays stopped", gpid, p.Node)
	}
	mg.resumeCommitted(gpid, in)
	return nil
}

// resumeCommitted continues a restored copy whose migration committed to this
// node, and forgets the migration. Only the caller that removes the migration
// sends SIGCONT: a second, late SIGCONT could land in the middle of the job's
// next dump and make CRIU fail ("stopped by 5 unexpectedly").
func (mg *Migrator) resumeCommitted(gpid uint64, in *incoming) {
	mg.mu.Lock()
	mine := mg.incoming[gpid] == in
	if mine {
		delete(mg.incoming, gpid)
	}
	mg.mu.Unlock()
	if mine && in.job != nil {
		resume(in.job)
		_ = os.Remove(filepath.Join(in.dir, shim.RestoreFile))
		mg.jobs.StatusChanged()
	}
	if mine {
		// Restored and resumed: the images are no longer needed. Removed in the
		// background, so that neither the freeze nor the source waits for it.
		go os.RemoveAll(in.images)
	}
}

// adoptStdinFile moves the stdin a migration shipped (if any) from the
// stage into the job dir, for the restoring shim.
func adoptStdinFile(stage, dir string) error {
	err := os.Rename(filepath.Join(stage, shim.StdinFile), filepath.Join(dir, shim.StdinFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("adopt shipped stdin: %w", err)
	}
	return nil
}

// The job's log in two parts: what it held when the migration was prepared,
// sent while the job still ran, and what it wrote since, with the images.
const (
	// logPrefixSuffix names the first part in the stream (log.pre); the
	// target keeps it as logPrefixFile until the rest comes.
	logPrefixSuffix = ".pre"
	logPrefixFile   = ".log.pre"
	// logTailPrefix names the second part: log.tail-N, N the bytes before it.
	logTailPrefix = ".tail-"
)

// logTailSuffix names the part of a log that starts at byte from.
func logTailSuffix(from int64) string { return logTailPrefix + strconv.FormatInt(from, 10) }

// adoptLog moves the job log a stream brought into dir: whole (stage/log), or
// its tail (stage/log.tail-N) appended to the N bytes sent ahead.
func adoptLog(stage, dir string) error {
	if err := os.Rename(filepath.Join(stage, shim.LogFile), filepath.Join(dir, shim.LogFile)); err == nil {
		return nil
	}
	tails, _ := filepath.Glob(filepath.Join(stage, shim.LogFile+logTailPrefix+"*"))
	if len(tails) != 1 {
		return errors.New("it carries no job log")
	}
	from, err := strconv.ParseInt(strings.TrimPrefix(filepath.Base(tails[0]), shim.LogFile+logTailPrefix), 10, 64)
	if err != nil {
		return fmt.Errorf("bad log part %s", filepath.Base(tails[0]))
	}
	pre := filepath.Join(dir, logPrefixFile)
	fi, err := os.Stat(pre)
	if err != nil || fi.Size() != from {
		return fmt.Errorf("the log's tail starts at byte %d, but the part sent ahead is missing or of another size (%v)", from, err)
	}
	out, err := os.OpenFile(pre, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	tail, err := os.Open(tails[0])
	if err != nil {
		out.Close()
		return err
	}
	_, err = io.Copy(out, tail)
	tail.Close()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("join the job's log: %w", err)
	}
	return os.Rename(pre, filepath.Join(dir, shim.LogFile))
}

// migratedJobFiles are the files of a job dir that travel with its images.
func migratedJobFiles() []string { return []string{shim.LogFile, shim.StdinFile} }

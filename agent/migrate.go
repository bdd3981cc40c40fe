package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/failpoint"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/shim"
)

// migrationTimeout bounds a whole migration; rollback has its own bound.
const migrationTimeout = 5 * time.Minute

// etcdStepTimeout bounds one record update of a migration step.
const etcdStepTimeout = 10 * time.Second

// Limits of what a target accepts: maxImageBytes bounds one image stream (and
// a job with a memory limit gets imageBytesFor), maxStreamsPerPeer the image
// streams one source node may have in flight at once.
const (
	maxImageBytes     = 64 << 30
	maxStreamsPerPeer = 2
	// imageSlack covers what a job's images hold beyond its memory: CRIU's
	// metadata, the job's log.
	imageSlack = 256 << 20
)

// imageBytesFor is the largest image stream accepted for a job with the given
// memory limit (0: none): its pages cannot exceed the limit.
func imageBytesFor(memory int64) int64 {
	if memory > 0 && memory < (maxImageBytes-imageSlack)/2 {
		return 2*memory + imageSlack
	}
	return maxImageBytes
}

// imagesRoot is this agent's memory-backed directory for images in flight. It is
// keyed by the data dir, which is unique per agent on a machine: node names are
// not (several local clusters may share one kernel, and /dev/shm).
func (a *Agent) imagesRoot() string { return ImagesRoot(a.cfg.DataDir) }

// ImagesRoot returns the memory-backed directory where the agent with data dir
// dataDir keeps migration images in flight.
func ImagesRoot(dataDir string) string {
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join("/dev/shm", "ssi-"+hex.EncodeToString(sum[:6]))
}

// imagesDir is where a job's images in flight are kept.
func (a *Agent) imagesDir(kind string, gpid uint64) string {
	return filepath.Join(a.imagesRoot(), fmt.Sprintf("%s-%d", kind, gpid))
}

// handleMigrate is POST /v1/procs/{gpid}/migrate at the owner: it runs the
// migration and streams its progress as NDJSON events.
func (a *Agent) handleMigrate(w http.ResponseWriter, r *http.Request) {
	p, ok := a.owned(w, r)
	if !ok {
		return
	}
	var req api.MigrateRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	target, err := a.checkTarget(r.Context(), p, req.Node)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	var mu sync.Mutex
	send := func(ev api.MigrateEvent) {
		mu.Lock()
		defer mu.Unlock()
		b, _ := json.Marshal(ev)
		_, _ = w.Write(append(b, '\n'))
		if flusher != nil {
			flusher.Flush()
		}
	}
	// The migration must not stop half-way because the client went away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), migrationTimeout)
	defer cancel()
	m := &migration{a: a, gpid: p.GPID, target: target, send: send, id: newID(), postcopy: req.PostCopy, tl: &timeline{node: a.cfg.Name}}
	st, err := migrate.Run(ctx, m)
	if !errors.Is(err, migrate.ErrCommitUncertain) { // settleLater clears it then
		a.clearBusy(m.j)
	}
	if err != nil {
		ev := api.MigrateEvent{Error: err.Error(), Code: api.CodeInternal}
		var ae *api.Error
		if errors.As(err, &ae) {
			ev.Code = ae.Code
		}
		a.log.Warn("migration failed", "gpid", p.GPID, "target", target.Name, "err", err)
		send(ev)
		return
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	stats := &api.MigrateStats{
		GPID: p.GPID, From: a.cfg.Name, To: target.Name, FrozenMS: ms(st.Frozen), ImageBytes: st.ImageBytes,
		DumpMS: ms(st.Dump), TransferMS: ms(st.Transfer), RestoreMS: ms(st.Restore), TotalMS: ms(st.Total),
		PostCopy: m.postcopy, PagesMS: ms(m.pagesWait), LazyBytes: m.lazyBytes, Note: m.note,
		Steps: m.tl.list(),
	}
	a.log.Info("migrated", "gpid", p.GPID, "target", target.Name, "frozen_ms", stats.FrozenMS, "image_bytes", st.ImageBytes, "total_ms", stats.TotalMS)
	send(api.MigrateEvent{Done: true, Stats: stats})
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// checkTarget validates a migration request before anything is touched.
func (a *Agent) checkTarget(ctx context.Context, p pidtable.Proc, node string) (pidtable.Node, error) {
	if node == "" {
		return pidtable.Node{}, api.Errorf(api.CodeBadRequest, "no target node given")
	}
	if node == p.Node {
		return pidtable.Node{}, api.Errorf(api.CodeBadRequest, "gpid %d already runs on %s", p.GPID, node)
	}
	switch {
	case p.State == pidtable.Migrating && p.Migration != nil:
		return pidtable.Node{}, api.Errorf(api.CodeConflict, "gpid %d is already being migrated to %s (since %s); wait for it to finish", p.GPID, p.Migration.Target, p.Migration.Started.Format(time.TimeOnly))
	case p.State.Ended():
		return pidtable.Node{}, api.Errorf(api.CodeConflict, "gpid %d has already %s", p.GPID, describeEnd(p))
	case p.State != pidtable.Running:
		return pidtable.Node{}, api.Errorf(api.CodeConflict, "gpid %d is %s, not running", p.GPID, p.State)
	case p.TTY:
		return pidtable.Node{}, errTTY(p.GPID, "moved")
	}
	if a.criuErr != nil {
		return pidtable.Node{}, api.Errorf(api.CodeConflict, "node %s cannot checkpoint jobs: %v", a.cfg.Name, a.criuErr)
	}
	snap, err := a.store.NodesSnapshot(ctx)
	if err != nil {
		return pidtable.Node{}, err
	}
	n, ok := snap.Node(node)
	if !ok {
		names := make([]string, 0, len(snap.Nodes))
		for _, n := range snap.Nodes {
			names = append(names, n.Name)
		}
		return pidtable.Node{}, api.Errorf(api.CodeNotFound, "unknown node %q (known nodes: %s)", node, strings.Join(names, ", "))
	}
	if !snap.Ready(node) {
		return pidtable.Node{}, api.Errorf(api.CodeNotReady, "node %s is NotReady (its agent is not running)", node)
	}
	return n, nil
}

// migration is the source side of one migration: migrate.Steps over this agent.
type migration struct {
	a      *Agent
	gpid   uint64
	id     string
	target pidtable.Node
	send   func(api.MigrateEvent)

	j        *job
	rev      int64 // the record's revision after our last write
	images   string
	keys     [2]string
	restored shim.State
	prepared bool
	// released: settleCommit released the record after an unanswered commit.
	released bool
	// imageBytes is the size of the dumped images.
	imageBytes int64
	// files are the files the job uses, with their sizes at the dump;
	// locks the file locks it holds (handover.go).
	files []api.FileCheck
	locks []string
	// handedOver: the source copy was killed to release its locks.
	handedOver bool
	// note says what the migration did differently from what was asked.
	note string
	// tl times the steps from the freeze to the resume.
	tl *timeline
	// postcopy: the memory follows after the restore, served by lazy (the
	// dump's page server) for pagesWait; lazyBytes is what was left to page
	// over: the job's resident memory at the dump less the pages the images
	// carry (lazyDump).
	postcopy  bool
	lazy      *checkpoint.LazyDump
	lazyTLS   *pki.PageServerCreds
	pagesWait time.Duration
	lazyBytes int64
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (m *migration) Progress(p migrate.Phase) {
	m.send(api.MigrateEvent{Phase: string(p)})
}

// setPhase records the phase in the job's record, guarded by our revision.
func (m *migration) setPhase(ctx context.Context, phase migrate.Phase) error {
	// etcd unreachable fails the step in seconds, not at the migration's bound.
	ctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	_, rev, err := m.a.store.TransitionAt(ctx, m.gpid, m.rev, pidtable.Edit, m.a.cfg.Name, func(p *pidtable.Proc) error {
		if p.Migration == nil || p.Migration.ID != m.id {
			return fmt.Errorf("%w: it is %s", errMigrationGone, p.State)
		}
		p.Migration.Phase = string(phase)
		return nil
	})
	if err != nil {
		return err
	}
	m.rev = rev
	return nil
}

func (m *migration) Claim(ctx context.Context) error {
	// Signals are held off from here on (agent.signal): one sent to the
	// frozen source copy would be lost with it once the target's copy runs.
	j, err := m.a.markBusy(m.gpid, "being migrated to "+m.target.Name)
	if err != nil {
		if lj := m.a.localJob(m.gpid); lj == nil || !lj.state.Init.Alive() {
			// Its process is gone: it has just ended; its end is being recorded.
			for range 20 {
				var end *migrate.JobEnded
				if errors.As(m.ended(ctx), &end) {
					return api.Errorf(api.CodeConflict, "gpid %d ended before it could be moved: it %s", m.gpid, end.How)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		return err
	}
	m.j = j
	cctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	_, rev, err := m.a.store.Transition(cctx, m.gpid, pidtable.MigrationClaim, m.a.cfg.Name, func(p *pidtable.Proc) error {
		if p.Node != m.a.cfg.Name || p.State != pidtable.Running {
			return api.Errorf(api.CodeConflict, "gpid %d is %s on %s, not running here", p.GPID, p.State, p.Node)
		}
		p.State = pidtable.Migrating
		p.Migration = &pidtable.Migration{ID: m.id, Target: m.target.Name, Phase: string(migrate.Claim), Started: time.Now().UTC()}
		return nil
	})
	if err != nil {
		m.a.clearBusy(j)
		return err
	}
	m.a.mu.Lock()
	m.a.outgoing[m.gpid] = m.id
	m.a.mu.Unlock()
	m.rev = rev
	return failpoint.Hit("migrate/source/after-claim")
}

func (m *migration) Prepare(ctx context.Context) error {
	if err := m.setPhase(ctx, migrate.Prepare); err != nil {
		return err
	}
	var spec shim.Spec
	if err := shim.ReadJSON(m.j.dir, shim.SpecFile, &spec); err != nil {
		return err
	}
	p, _, err := m.a.store.Get(ctx, m.gpid)
	if err != nil {
		return err
	}
	files, err := jobFiles(m.j, true)
	if err != nil {
		return err
	}
	m.prepared = true // from here on the target may hold state: roll it back
	flags, err := m.a.cpu.flags()
	if err != nil {
		return err
	}
	if err := m.call(ctx, "prepare", api.PrepareRequest{ID: m.id, Proc: p, Spec: spec, Files: files, CPUFlags: flags}, nil); err != nil {
		return err
	}
	if err := failpoint.Hit("migrate/source/after-prepare"); err != nil {
		return err
	}
	// The record says "dump" before the job freezes: from the freeze to the
	// commit the migration writes nothing to etcd, since every write there
	// would be frozen time. So the record's phase stays "dump" through the
	// transfer and the restore; the progress stream names each step.
	return m.setPhase(ctx, migrate.Dump)
}

func (m *migration) Dump(ctx context.Context) (int64, error) {
	init := m.j.state.Init.PID
	var err error
	for i, fd := range []int{1, 2} {
		if m.keys[i], err = checkpoint.FileKey(init, fd); err != nil {
			return 0, err
		}
	}
	m.images = m.a.imagesDir("out", m.gpid)
	if err := os.MkdirAll(m.images, 0o700); err != nil {
		return 0, fmt.Errorf("images dir: %w", err)
	}
	if m.postcopy {
		// A job holding file locks hands them over only once all its memory
		// is on the target (handover.go): it moves by a full copy.
		if locks, err := jobLocks(m.j); err != nil {
			return 0, err
		} else if len(locks) > 0 {
			m.fallBackToFullCopy(locks)
		}
	}
	err = m.dumpOnce(ctx, init)
	if errors.Is(err, errLockedDuringLazyDump) {
		// It took a lock after the check above: undo the lazy dump (as a
		// rollback does) and dump again, by a full copy.
		m.lazy.Kill()
		killOrphanLazyDump(m.j.dir)
		m.a.releaseStdin(m.j)
		resume(m.j)
		if err := emptyDir(m.images); err != nil {
			return 0, err
		}
		m.lazy, m.lazyBytes = nil, 0
		m.fallBackToFullCopy(m.locks)
		err = m.dumpOnce(ctx, init)
	}
	if err != nil {
		return 0, err
	}
	return m.imageBytes, failpoint.Hit("migrate/source/after-dump")
}

// dumpOnce dumps the job (lazily for post-copy), leaving it stopped, and
// notes what the target must check: its files and its locks.
func (m *migration) dumpOnce(ctx context.Context, init int) error {
	var err error
	t := time.Now()
	if m.postcopy {
		if err := m.lazyDump(ctx); err != nil {
			return err
		}
		t = m.tl.since("criu lazy dump", t)
	} else {
		if err := m.a.dump(ctx, checkpoint.DumpOpts{
			PID: init, ImagesDir: m.images, LeaveStopped: true,
			Flags: jobCRIUFlags(),
		}, m.j); err != nil {
			return err
		}
		t = m.tl.since("criu dump", t)
	}
	// The tree is stopped; let the shim drain what it had written to its pipes,
	// so the shipped log is complete (CRIU does not carry pipe contents over).
	waitDrained(init, filepath.Join(m.j.dir, shim.LogFile))
	t = m.tl.since("drain output", t)
	if err := m.a.holdStdin(ctx, m.j); err != nil {
		return err
	}
	t = m.tl.since("hold stdin", t)
	m.imageBytes = dirSize(m.images)
	// The files and their sizes as the dump saw them (the tree is stopped):
	// the target checks them before it restores.
	if m.files, err = jobFiles(m.j, false); err != nil {
		return err
	}
	if m.locks, err = jobLocks(m.j); err != nil {
		return err
	}
	m.tl.since("list files and locks", t)
	if m.postcopy && len(m.locks) > 0 {
		return errLockedDuringLazyDump
	}
	return nil
}

func (m *migration) Transfer(ctx context.Context) error {
	defer m.tl.since("transfer", time.Now())
	pr, pw := io.Pipe()
	// Progress: bytes shipped, every 200 ms, for the client's display.
	var sent atomic.Int64
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				m.send(api.MigrateEvent{Phase: string(migrate.Transfer), Bytes: sent.Load(), Total: m.imageBytes})
			}
		}
	}()
	go func() {
		_, err := migrate.WriteStream(countingWriter{pw, &sent},
			migrate.Source{Prefix: "images", Dir: m.images},
			migrate.Source{Prefix: "job", Dir: m.j.dir, Files: migratedJobFiles()})
		pw.CloseWithError(err)
	}()
	ctx, cancel := context.WithTimeout(ctx, transferTimeout(m.imageBytes))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, m.url("images"), pr)
	if err != nil {
		return err
	}
	req.Header.Set("X-Ssi-Migration", m.id)
	if err := m.do(req, nil); err != nil {
		return err
	}
	return failpoint.Hit("migrate/source/after-transfer")
}

func (m *migration) Restore(ctx context.Context) error {
	t := time.Now()
	if len(m.locks) > 0 {
		// The target's restore takes the job's locks: the frozen source copy
		// must give them up first (handover.go), once the target has said it
		// has every file the job uses.
		if err := m.call(ctx, "check", api.RestoreRequest{ID: m.id, Files: m.files}, nil); err != nil {
			return err
		}
		if err := m.handOver(ctx); err != nil {
			return err
		}
		t = m.tl.since("check files, hand locks over", t)
	}
	var resp api.RestoreResponse
	req := api.RestoreRequest{ID: m.id, StdoutKey: m.keys[0], StderrKey: m.keys[1], StdinKey: m.j.state.StdinKey, Files: m.files,
		BoundMS: m.stepTimeout("restore").Milliseconds()}
	if m.lazy != nil {
		req.LazyPages = m.lazy.Addr
		req.LazyPagesCA, req.LazyPagesCert, req.LazyPagesKey = string(m.lazyTLS.CACert), string(m.lazyTLS.ClientCert), string(m.lazyTLS.ClientKey)
	}
	if err := m.call(ctx, "restore", req, &resp); err != nil {
		return err
	}
	m.tl.since("restore call", t)
	m.tl.add(resp.Steps)
	m.restored = resp.State
	return failpoint.Hit("migrate/source/after-restore")
}

func (m *migration) Resume(ctx context.Context) error {
	defer m.tl.since("resume call", time.Now())
	if err := m.call(ctx, "resume", api.RestoreRequest{ID: m.id}, nil); err != nil {
		// Committed: the target resumes its copy by itself once it reads the
		// record (watchIncoming), so the migration stands.
		m.a.log.Warn("target unreachable for resume; it resumes on its own once it sees the commit", "gpid", m.gpid, "target", m.target.Name, "err", err)
		return nil
	}
	return failpoint.Hit("migrate/source/after-resume")
}

func (m *migration) Cleanup(ctx context.Context) error {
	var err error
	if m.lazy != nil {
		// The job runs on the target; its memory is still here, being pulled.
		m.send(api.MigrateEvent{Phase: "pages", Total: m.lazyBytes})
		t := time.Now()
		wctx, cancel := context.WithTimeout(ctx, migrationTimeout)
		err = m.lazy.Wait(wctx)
		cancel()
		m.pagesWait = time.Since(t)
		if err != nil {
			m.lazy.Kill()
			err = fmt.Errorf("post-copy: the page server stopped before the target had all the job's memory; the job on %s may fail: %w", m.target.Name, err)
		}
	}
	m.a.forgetMigrated(m.j)
	return errors.Join(err, os.RemoveAll(m.images))
}

func (m *migration) Rollback(ctx context.Context, cause error, dumped, restored bool) error {
	var errs []error
	if m.prepared {
		if err := m.call(ctx, "abort", api.RestoreRequest{ID: m.id}, nil); err != nil {
			errs = append(errs, &migrate.TargetNotTold{Target: m.target.Name, Err: err})
		}
	}
	if m.lazy != nil {
		m.lazy.Kill() // before the resume: CRIU still holds the tree
	}
	if m.j != nil {
		killOrphanLazyDump(m.j.dir)
	}
	if m.handedOver {
		// The source copy was killed to hand its locks over: bring the job
		// back from its images. Without them there is no job left to resume.
		if err := m.restoreHere(ctx); err != nil {
			m.lose(ctx, fmt.Sprintf("its source copy was handed over for a move (it held file locks), and after the move failed (%v) it could not be restored on %s from its images: %v", cause, m.a.cfg.Name, err))
			return errors.Join(append(errs, m.ended(ctx))...)
		}
	}
	if dumped {
		m.a.releaseStdin(m.j)
		resume(m.j)
	}
	if m.images != "" {
		_ = os.RemoveAll(m.images)
	}
	why := cause.Error() // now: cause may be annotated with this rollback's outcome later
	var err error
	if !m.released { // settleCommit may have released it already
		err = m.release(ctx, why)
	}
	switch {
	case err == nil:
		return errors.Join(append(errs, m.checkResumed(ctx))...)
	case errors.Is(err, errMigrationGone):
		// The record moved on without this migration: the job ended meanwhile
		// (finish recorded it) and is not resumed, or someone else holds it.
		if end := m.ended(ctx); end != nil {
			return errors.Join(append(errs, end)...)
		}
		errs = append(errs, err)
	default:
		// etcd unreachable: the job runs again here, but its record still says
		// migrating. Keep trying until etcd answers (the record then also lets
		// the target discard its part).
		errs = append(errs, fmt.Errorf("the job runs on %s again, but its record could not be updated yet (%w); retrying in the background", m.a.cfg.Name, err))
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			for ctx.Err() == nil {
				time.Sleep(time.Second)
				if err := m.release(ctx, why); err == nil || errors.Is(err, errMigrationGone) {
					m.a.log.Info("released the record of a rolled-back migration", "gpid", m.gpid, "err", err)
					return
				}
			}
			m.a.log.Error("could not release the record of a rolled-back migration within an hour", "gpid", m.gpid)
		}()
	}
	return errors.Join(errs...)
}

// checkResumed makes sure the job a rollback released runs again on this node
// before anyone is told so: a job that ended while it was being moved (its
// main process gone) is waited for until its end is recorded, and reported
// as ended.
func (m *migration) checkResumed(ctx context.Context) error {
	if m.j == nil || (m.j.state.Init.Alive() && !gone(m.j.state.MainPID)) {
		return nil
	}
	select {
	case <-m.j.done: // finish recorded the end
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	if end := m.ended(ctx); end != nil {
		return end
	}
	return fmt.Errorf("the job's processes on %s are gone, and its end is not recorded yet", m.a.cfg.Name)
}

// ended reads the job's record and returns a *migrate.JobEnded if it has ended.
func (m *migration) ended(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	p, _, err := m.a.store.Get(ctx, m.gpid)
	if err != nil || !p.State.Ended() {
		return nil
	}
	return &migrate.JobEnded{GPID: m.gpid, How: describeEnd(p)}
}

// gone reports whether process pid has exited (absent or a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state letter follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// errMigrationGone: the record no longer names this migration.
var errMigrationGone = errors.New("record no longer names the migration")

// release returns the record of a rolled-back migration to running, saying
// why in the same write: a client that lost the progress stream reads it
// there. (A refused second migrate never writes the record: that would break
// the CAS of the one in flight.)
func (m *migration) release(ctx context.Context, why string) error {
	ctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	_, _, err := m.a.store.Transition(ctx, m.gpid, pidtable.MigrationRelease, m.a.cfg.Name, func(p *pidtable.Proc) error {
		if p.Node != m.a.cfg.Name || p.Migration == nil || p.Migration.ID != m.id {
			return fmt.Errorf("%w: gpid %d is %s on %s", errMigrationGone, p.GPID, p.State, p.Node)
		}
		p.State, p.Migration = pidtable.Running, nil
		p.MigrationError, p.MigrationFailed = why, time.Now().UTC()
		if m.handedOver { // restored from its images: new host PIDs
			p.PID, p.InitPID = m.j.state.MainPID, m.j.state.Init.PID
		}
		return nil
	})
	return err
}

func (m *migration) url(step string) string {
	return fmt.Sprintf("%s://%s/v1/migrations/%d/%s", m.a.scheme(), m.target.Addr, m.gpid, step)
}

// stepTimeout bounds each call to the target, so that a target cut off
// mid-call fails the step (and the migration rolls back) in seconds rather
// than at the migration's overall bound. A restore may take as long as the
// target shim allows CRIU; the image transfer's bound grows with its size.
func (m *migration) stepTimeout(step string) time.Duration {
	switch step {
	case "restore":
		// 20 s plus 20 MB/s of images; the target shim gives CRIU 2 minutes.
		return min(20*time.Second+time.Duration(m.imageBytes/(20<<20))*time.Second, 2*time.Minute+10*time.Second)
	case "prepare":
		return 30 * time.Second
	case "resume":
		// After the commit the target resumes its copy by itself within
		// ~50 ms of reading the record (watchIncoming): the call only
		// saves that, so a cut network must not hold the migration long.
		return 3 * time.Second
	default: // abort
		return 10 * time.Second
	}
}

// transferTimeout bounds shipping n bytes of images: 15 s plus 20 MB/s, far
// below what any link that carries migrations does.
func transferTimeout(n int64) time.Duration {
	return 15*time.Second + time.Duration(n/(20<<20))*time.Second
}

// call POSTs a JSON request to a target migration step.
func (m *migration) call(ctx context.Context, step string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, m.stepTimeout(step))
	defer cancel()
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.url(step), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	err = m.do(req, out)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		// Say which step did not answer and what bound it had, not a bare
		// "context deadline exceeded".
		why := "the node may be overloaded, or cut off"
		if step == "restore" {
			why = "CRIU's restore there may be blocked (on a file lock another process holds, say, or memory)"
		}
		return fmt.Errorf("node %s did not finish the %s step within %s: %s: %w", m.target.Name, step, m.stepTimeout(step), why, err)
	}
	return err
}

func (m *migration) do(req *http.Request, out any) error {
	req.Header.Set(api.HeaderForwarded, m.a.cfg.Name)
	resp, err := (&http.Client{Transport: m.a.peer}).Do(req)
	if err != nil {
		return fmt.Errorf("target %s: %w", m.target.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e api.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			return fmt.Errorf("target %s: HTTP %d: %s", m.target.Name, resp.StatusCode, bytes.TrimSpace(b))
		}
		return &e
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// resume continues a job left stopped by a dump or a restore.
func resume(j *job) { j.cgroup.Signal(unix.SIGCONT) }

// killJob kills a job's init, and with it its PID namespace (unless it is
// gone already: its PID may have been reused).
func killJob(j *job) {
	if j.state.Init.Alive() {
		_ = unix.Kill(j.state.Init.PID, unix.SIGKILL)
	}
}

// forgetMigrated ends this node's part in a job that now runs elsewhere: mark
// its directory moved (so the shim reports no exit and followers reconnect to
// the new owner), kill the stopped copy, remove its cgroup, and drop the
// directory once followers had time to notice.
func (a *Agent) forgetMigrated(j *job) {
	_ = shim.WriteJSON(j.dir, shim.MovedFile, movedMark{Time: time.Now().UTC()})
	killJob(j)
	select {
	case <-j.done:
	case <-time.After(10 * time.Second):
		a.log.Warn("source shim of a migrated job did not exit", "gpid", j.gpid)
	}
	if j.cgroup != nil {
		if err := j.cgroup.Destroy(); err != nil {
			a.log.Warn("remove cgroup of migrated job", "gpid", j.gpid, "err", err)
		}
	}
	time.AfterFunc(30*time.Second, func() { a.removeMovedDir(j.gpid) })
}

// removeMovedDir removes the directory a migrated job left here, unless the
// job has come back meanwhile (the balancer may move it back within the 30 s
// forgetMigrated waits): its directory then has the same path and belongs to
// the job running here, and removing it would lose the job's exit status and
// output (found by the balancer benchmark: a job moved back and forth was
// recorded lost). prepare makes the new directory under dirMu, and a new
// directory has no moved file.
func (a *Agent) removeMovedDir(gpid uint64) {
	a.dirMu.Lock()
	defer a.dirMu.Unlock()
	a.mu.Lock()
	back := a.jobs[gpid] != nil || a.incoming[gpid] != nil
	a.mu.Unlock()
	dir := a.jobDir(gpid)
	if _, err := os.Stat(filepath.Join(dir, shim.MovedFile)); back || err != nil {
		return
	}
	_ = os.RemoveAll(dir)
}

// criuState is set at agent start from checkpoint.Probe.
func (a *Agent) probeCRIU(ctx context.Context) {
	a.criuPath = checkpoint.DefaultCRIUPath
	info, err := checkpoint.Probe(ctx, a.criuPath)
	a.criuErr = err
	if err != nil {
		a.log.Warn("CRIU unusable: this node can run jobs but not migrate them", "err", err)
		return
	}
	a.log.Info("CRIU ready", "version", strconv.Itoa(info.Version))
}

// rollbackOrphanMigration resolves a migration this node was the source of when
// its agent died: the record still names this node (no commit), so the target's
// copy, if any, is discarded and the stopped source copy resumed.
//
// handedOver is the mark of a source copy killed to hand its locks over:
// the job is then restored from its images (handover.go).
func (a *Agent) rollbackOrphanMigration(ctx context.Context, p pidtable.Proc, j *job, handedOver *movedMark) {
	m := &migration{a: a, gpid: p.GPID, j: j, prepared: p.Migration != nil, send: func(api.MigrateEvent) {}}
	if handedOver != nil {
		m.handedOver, m.keys, m.images = true, handedOver.Keys, a.imagesDir("out", p.GPID)
	}
	if p.Migration != nil {
		m.id = p.Migration.ID
		snap, err := a.store.NodesSnapshot(ctx)
		if err == nil {
			m.target, _ = snap.Node(p.Migration.Target)
		}
	}
	if m.target.Addr == "" {
		m.prepared = false
	}
	err := m.Rollback(ctx, errors.New("the source agent restarted during the migration; rolled back"), true, false)
	a.log.Warn("rolled back a migration interrupted by an agent restart", "gpid", p.GPID, "err", err)
}

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
	"net"
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
	"github.com/ssi-cluster/ssi/checkpoint/criutls"
	"github.com/ssi-cluster/ssi/failpoint"
	"github.com/ssi-cluster/ssi/isolate"
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
	if who := callerOf(r); who.user == "" && who.node != "" {
		var err error
		if r, err = a.balancerMover(r, who); err != nil {
			a.writeError(w, r, err)
			return
		}
	}
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
	m := &migration{a: a, gpid: p.GPID, target: target, send: send, id: newID(), postcopy: req.PostCopy}
	st, err := migrate.Run(ctx, m)
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
		PostCopy: m.postcopy, PagesMS: ms(m.pagesWait), LazyBytes: m.lazyBytes,
	}
	a.log.Info("migrated", "gpid", p.GPID, "target", target.Name, "frozen_ms", stats.FrozenMS, "image_bytes", st.ImageBytes, "total_ms", stats.TotalMS)
	send(api.MigrateEvent{Done: true, Stats: stats})
}

// balancerMover admits a migrate request from a node certificate: only the
// balancer's elected leader may move jobs as itself, and only jobs that are not
// pinned. It returns r with the caller marked as such.
func (a *Agent) balancerMover(r *http.Request, who caller) (*http.Request, error) {
	gpid, err := pathGPID(r)
	if err != nil {
		return r, err
	}
	_, _, _, leader, err := a.store.BalancerState(r.Context())
	if err != nil {
		return r, err
	}
	if leader != who.node {
		return r, api.Errorf(api.CodeForbidden, "node %s may not move jobs: only the balancer's leader (%q) moves jobs as itself", who.node, leader)
	}
	p, _, err := a.store.Get(r.Context(), gpid)
	if err != nil {
		return r, err
	}
	if p.Pinned {
		return r, api.Errorf(api.CodeForbidden, "gpid %d is pinned (ssi run --pin): the balancer does not move it", gpid)
	}
	who.mover = true
	return r.WithContext(context.WithValue(r.Context(), callerKey{}, who)), nil
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
	// imageBytes is the size of the dumped images.
	imageBytes int64
	// postcopy: the memory follows after the restore, served by lazy (the
	// dump's page server) for pagesWait; lazyBytes is the job's RSS at dump.
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
	p, _, err := m.a.store.Get(ctx, m.gpid)
	if err != nil {
		return err
	}
	if p.Migration == nil || p.Migration.ID != m.id {
		return fmt.Errorf("the job's record no longer names this migration")
	}
	p.Migration.Phase = string(phase)
	rev, err := m.a.store.Swap(ctx, p, m.rev)
	if err != nil {
		return err
	}
	m.rev = rev
	return nil
}

func (m *migration) Claim(ctx context.Context) error {
	m.j = m.a.localJob(m.gpid)
	if m.j == nil || !m.j.state.Init.Alive() {
		return api.Errorf(api.CodeConflict, "gpid %d is not running on %s", m.gpid, m.a.cfg.Name)
	}
	cctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	_, rev, err := m.a.store.UpdateRev(cctx, m.gpid, func(p *pidtable.Proc) error {
		if p.Node != m.a.cfg.Name || p.State != pidtable.Running {
			return api.Errorf(api.CodeConflict, "gpid %d is %s on %s, not running here", p.GPID, p.State, p.Node)
		}
		p.State = pidtable.Migrating
		p.Migration = &pidtable.Migration{ID: m.id, Target: m.target.Name, Phase: string(migrate.Claim), Started: time.Now().UTC()}
		return nil
	})
	if err != nil {
		return err
	}
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
	files, err := jobFiles(m.j)
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
	return failpoint.Hit("migrate/source/after-prepare")
}

func (m *migration) Dump(ctx context.Context) (int64, error) {
	if err := m.setPhase(ctx, migrate.Dump); err != nil {
		return 0, err
	}
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
		if err := m.lazyDump(ctx); err != nil {
			return 0, err
		}
	} else if err := m.a.dump(ctx, checkpoint.DumpOpts{
		PID: init, ImagesDir: m.images, LeaveStopped: true,
		Flags: checkpoint.Flags{FileLocks: true},
	}, m.j); err != nil {
		return 0, err
	}
	// The tree is stopped; let the shim drain what it had written to its pipes,
	// so the shipped log is complete (CRIU does not carry pipe contents over).
	waitDrained(init, filepath.Join(m.j.dir, shim.LogFile))
	if err := m.a.holdStdin(ctx, m.j); err != nil {
		return 0, err
	}
	m.imageBytes = dirSize(m.images)
	return m.imageBytes, failpoint.Hit("migrate/source/after-dump")
}

func (m *migration) Transfer(ctx context.Context) error {
	if err := m.setPhase(ctx, migrate.Transfer); err != nil {
		return err
	}
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
	if err := m.setPhase(ctx, migrate.Restore); err != nil {
		return err
	}
	var resp api.RestoreResponse
	req := api.RestoreRequest{ID: m.id, StdoutKey: m.keys[0], StderrKey: m.keys[1], StdinKey: m.j.state.StdinKey}
	if m.lazy != nil {
		req.LazyPages = m.lazy.Addr
		req.LazyPagesCA, req.LazyPagesCert, req.LazyPagesKey = string(m.lazyTLS.CACert), string(m.lazyTLS.ClientCert), string(m.lazyTLS.ClientKey)
	}
	if err := m.call(ctx, "restore", req, &resp); err != nil {
		return err
	}
	m.restored = resp.State
	return failpoint.Hit("migrate/source/after-restore")
}

func (m *migration) Commit(ctx context.Context) error {
	p, _, err := m.a.store.Get(ctx, m.gpid)
	if err != nil {
		return err
	}
	if p.Migration == nil || p.Migration.ID != m.id {
		return fmt.Errorf("the job's record no longer names this migration")
	}
	p.Node, p.Epoch, p.State = m.target.Name, p.Epoch+1, pidtable.Running
	p.PID, p.InitPID, p.Migration = m.restored.MainPID, m.restored.Init.PID, nil
	p.MigrationError, p.MigrationFailed = "", time.Time{}
	p.Arrived = time.Now().UTC()
	_, err = m.a.store.Swap(ctx, p, m.rev)
	if err == nil {
		return failpoint.Hit("migrate/source/after-commit")
	}
	if errors.Is(err, pidtable.ErrChanged) {
		return err
	}
	// The outcome is unknown (etcd timed out, say): read the record until etcd
	// answers; it says whether the commit happened.
	for ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
		got, _, gerr := m.a.store.Get(ctx, m.gpid)
		if gerr != nil {
			continue
		}
		if got.Node == m.target.Name && got.Epoch == p.Epoch {
			return nil
		}
		return fmt.Errorf("commit did not happen: %w", err)
	}
	return fmt.Errorf("%w: %w", migrate.ErrCommitUncertain, err)
}

func (m *migration) Resume(ctx context.Context) error {
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

// lazyDump starts a post-copy dump: images without the memory, and a page
// server on this node's address serving it.
func (m *migration) lazyDump(ctx context.Context) error {
	if was, err := checkpoint.EnsurePipeMaxSize(); err != nil {
		return api.Errorf(api.CodeConflict, "node %s cannot migrate post-copy: %v", m.a.cfg.Name, err)
	} else if was < checkpoint.LazyPipeMaxSize {
		m.a.log.Info("raised fs.pipe-max-size for post-copy migration", "was", was, "now", checkpoint.LazyPipeMaxSize)
	}
	host, _, err := net.SplitHostPort(m.a.cfg.Advertise)
	if err != nil {
		return err
	}
	if pids, err := m.j.cgroup.Pids(); err == nil {
		for _, pid := range pids {
			m.lazyBytes += rss(pid)
		}
	}
	// The page server admits only the target (pki.PageServerCreds).
	if m.lazyTLS, err = pki.NewPageServerCreds(host, migrationTimeout+time.Hour); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		var tlsFiles criutls.Files
		if tlsFiles, err = writeTLS(m.images, "page-server", m.lazyTLS.CACert, m.lazyTLS.ServerCert, m.lazyTLS.ServerKey); err != nil {
			return err
		}
		m.lazy, err = checkpoint.StartLazyDump(ctx, checkpoint.LazyDumpOpts{
			CRIUPath: m.a.criuPath, PID: m.j.state.Init.PID, ImagesDir: m.images, Address: host,
			TLS: &tlsFiles, Flags: checkpoint.Flags{FileLocks: true},
		})
		if !checkpoint.IsProcDirCollision(err) || attempt == dumpAttempts {
			break
		}
		m.a.log.Info("dump collided with another dump in the same working directory; retrying", "gpid", m.gpid, "attempt", attempt)
		if err := emptyDir(m.images); err != nil {
			return err
		}
		m.a.dumpBackoff()
	}
	if err != nil {
		return explainDumpError(err, m.j)
	}
	// Noted in the job dir: should this agent die before the commit, its
	// successor kills this CRIU (which holds the tree) before resuming the job.
	if id, err := shim.Identify(m.lazy.PID()); err == nil {
		_ = shim.WriteJSON(m.j.dir, lazyDumpFile, id)
	}
	return nil
}

// lazyPagesTLS checks the page-server credentials of a post-copy restore
// request and writes them into a subdirectory of the images (removed with
// them) for the shim's lazy-pages daemon.
func lazyPagesTLS(req api.RestoreRequest, images string) (criutls.Files, error) {
	if err := pki.CheckPageServerClient([]byte(req.LazyPagesCA), []byte(req.LazyPagesCert), []byte(req.LazyPagesKey)); err != nil {
		return criutls.Files{}, api.Errorf(api.CodeBadRequest, "post-copy restore: the source's page server speaks TLS and the request must carry its credentials: %v", err)
	}
	return writeTLS(images, "lazy-pages", []byte(req.LazyPagesCA), []byte(req.LazyPagesCert), []byte(req.LazyPagesKey))
}

// writeTLS writes one end's page-server credentials into images/tls: a
// subdirectory, which the image stream skips and which goes with the images.
func writeTLS(images, prefix string, caCert, cert, key []byte) (criutls.Files, error) {
	dir := filepath.Join(images, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return criutls.Files{}, fmt.Errorf("page server credentials: %w", err)
	}
	return criutls.Write(dir, prefix, caCert, cert, key)
}

// lazyDumpFile, in a job dir, identifies the CRIU process of a post-copy dump.
const lazyDumpFile = "lazy-dump.json"

// killOrphanLazyDump kills the CRIU of a post-copy dump started by an earlier
// run of this agent, if it is still there.
func killOrphanLazyDump(dir string) {
	var id shim.ProcID
	if shim.ReadJSON(dir, lazyDumpFile, &id) == nil && id.Alive() {
		_ = unix.Kill(id.PID, unix.SIGKILL)
		for i := 0; i < 100 && id.Alive(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	_ = os.Remove(filepath.Join(dir, lazyDumpFile))
}

func (m *migration) Rollback(ctx context.Context, cause error, dumped, restored bool) error {
	var errs []error
	if m.prepared {
		if err := m.call(ctx, "abort", api.RestoreRequest{ID: m.id}, nil); err != nil {
			errs = append(errs, fmt.Errorf("target %s unreachable (%w): it discards what it prepared (and its stopped copy, if it made one) once it sees the migration rolled back, or when its agent restarts", m.target.Name, err))
		}
	}
	if m.lazy != nil {
		m.lazy.Kill() // before the resume: CRIU still holds the tree
	}
	if m.j != nil {
		killOrphanLazyDump(m.j.dir)
	}
	if dumped {
		m.a.releaseStdin(m.j)
		resume(m.j)
	}
	if m.images != "" {
		_ = os.RemoveAll(m.images)
	}
	why := cause.Error() // now: cause may be annotated with this rollback's outcome later
	if err := m.release(ctx, why); err != nil {
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

// errMigrationGone: the record no longer names this migration.
var errMigrationGone = errors.New("record no longer names the migration")

// release returns the record of a rolled-back migration to running, saying
// why in the same write: a client that lost the progress stream reads it
// there. (A refused second migrate never writes the record: that would break
// the CAS of the one in flight.)
func (m *migration) release(ctx context.Context, why string) error {
	ctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	_, err := m.a.store.Update(ctx, m.gpid, func(p *pidtable.Proc) error {
		if p.Node != m.a.cfg.Name || p.Migration == nil || p.Migration.ID != m.id {
			return fmt.Errorf("%w: gpid %d: %+v", errMigrationGone, p.GPID, p)
		}
		p.State, p.Migration = pidtable.Running, nil
		p.MigrationError, p.MigrationFailed = why, time.Now().UTC()
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
	default: // resume, abort
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
	return m.do(req, out)
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

// jobFiles lists the files the job's processes map or hold open (and their
// sizes): the target must have each of them, with the same size.
func jobFiles(j *job) ([]api.FileCheck, error) {
	pids, err := j.cgroup.Pids()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []api.FileCheck
	add := func(path string) {
		if !strings.HasPrefix(path, "/") || seen[path] || strings.HasSuffix(path, " (deleted)") {
			return
		}
		seen[path] = true
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			out = append(out, api.FileCheck{Path: path, Size: fi.Size()})
		}
	}
	for _, pid := range pids {
		maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			continue // exited meanwhile
		}
		for _, line := range strings.Split(string(maps), "\n") {
			if f := strings.Fields(line); len(f) >= 6 {
				add(strings.Join(f[5:], " "))
			}
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if t, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil {
				add(t)
			}
		}
	}
	return out, nil
}

// waitDrained waits (up to 5 s) until the pipes of a stopped job hold no unread
// output and the job's log stopped growing.
func waitDrained(init int, logPath string) {
	deadline := time.Now().Add(5 * time.Second)
	pending := func() int {
		n := 0
		for _, fd := range []int{1, 2} {
			// Opening a pipe through /proc gives a new read end of the same pipe.
			f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/%d", init, fd), os.O_RDONLY|unix.O_NONBLOCK, 0)
			if err != nil {
				continue
			}
			if v, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ); err == nil { // FIONREAD
				n += v
			}
			f.Close()
		}
		return n
	}
	size := func() int64 {
		fi, err := os.Stat(logPath)
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	// Short polls: every millisecond here is frozen time.
	last := size()
	for time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
		s := size()
		if pending() == 0 && s == last {
			return
		}
		last = s
	}
}

// dirSize returns the bytes of the regular files in dir (not below it).
func dirSize(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// resume continues a job left stopped by a dump or a restore.
func resume(j *job) { j.cgroup.Signal(unix.SIGCONT) }

// killJob kills a job's init, and with it its PID namespace.
func killJob(j *job) { _ = unix.Kill(j.state.Init.PID, unix.SIGKILL) }

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

func (a *Agent) handlePrepare(w http.ResponseWriter, r *http.Request) {
	from, ok := a.requireNode(w, r)
	if !ok {
		return
	}
	gpid, err := pathGPID(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var req api.PrepareRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := a.checkPrepare(r.Context(), from, gpid, &req); err != nil {
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
	if err := checkFiles(a.cfg.Name, req.Files, req.Spec.Workdir); err != nil {
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
	from, ok := a.requireNode(w, r)
	if !ok {
		return
	}
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
	cmd, st, err := shim.Launch(r.Context(), a.cfg.ShimExe, in.dir, shim.ModeRestore)
	if err != nil {
		if cmd != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		a.writeError(w, r, api.Errorf(api.CodeConflict, "node %s could not restore gpid %d: %v", a.cfg.Name, gpid, err))
		return
	}
	j := &job{gpid: gpid, dir: in.dir, state: st, cgroup: in.cgroup, cpus: in.proc.CPUs, memory: in.proc.Memory, done: make(chan struct{})}
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
	writeJSON(w, http.StatusOK, api.RestoreResponse{State: st})
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
func (a *Agent) rollbackOrphanMigration(ctx context.Context, p pidtable.Proc, j *job) {
	m := &migration{a: a, gpid: p.GPID, j: j, prepared: p.Migration != nil, send: func(api.MigrateEvent) {}}
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
	if from, ok = a.requireNode(w, r); !ok {
		return 0, req, "", false
	}
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

// dumpAttempts bounds the dumps tried when they collide (see dump).
const dumpAttempts = 6

// dump is checkpoint.Dump, retried when it collides with another dump of a job
// with the same working directory (checkpoint.IsProcDirCollision): on one
// machine (or a shared file system) two jobs started in the same directory
// cannot be dumped at the very same moment. A failed dump leaves the tree
// running, so a retry starts afresh.
func (a *Agent) dump(ctx context.Context, o checkpoint.DumpOpts, j *job) error {
	for attempt := 1; ; attempt++ {
		err := checkpoint.Dump(ctx, o)
		if !checkpoint.IsProcDirCollision(err) || attempt == dumpAttempts || ctx.Err() != nil {
			return explainDumpError(err, j)
		}
		a.log.Info("dump collided with another dump in the same working directory; retrying", "pid", o.PID, "attempt", attempt)
		if err := emptyDir(o.ImagesDir); err != nil {
			return err
		}
		a.dumpBackoff()
	}
}

// explainDumpError says plainly why CRIU could not dump a job of a user other
// than root: an unpatched CRIU on a node whose root lacks CAP_SYS_RESOURCE
// (checkpoint.IsForeignRlimit), or a job whose init runs as the job's user,
// started by an ssi before init stayed root (checkpoint.IsUnprivilegedProc,
// shim.startInit).
func explainDumpError(err error, j *job) error {
	rlimit := checkpoint.IsForeignRlimit(err)
	if !rlimit && !checkpoint.IsUnprivilegedProc(err) {
		return err
	}
	var spec shim.Spec
	_ = shim.ReadJSON(j.dir, shim.SpecFile, &spec)
	if rlimit {
		return api.Errorf(api.CodeConflict, "gpid %d (uid %d): this node's CRIU may not read the resource limits of another user's task: root here lacks CAP_SYS_RESOURCE, and this CRIU is not the patched build of hack/install-criu.sh, which reads them from /proc/PID/limits. The job keeps running here; install CRIU with hack/install-criu.sh on every node (%v)", j.gpid, spec.UID, err)
	}
	return api.Errorf(api.CodeConflict, "gpid %d (uid %d) was started by an older ssi whose job init runs as the job's user, and CRIU cannot dump such a job: its parasite must mount a /proc for the job's PID namespace, which a non-root task may not do. The job keeps running here; jobs started by this version can be checkpointed and migrated, so restart it to make it movable (%v)", j.gpid, spec.UID, err)
}

// emptyDir removes what a failed dump wrote into dir.
func emptyDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o700)
}

// dumpBackoff waits a random 20-200 ms, so that colliding dumps drift apart.
func (a *Agent) dumpBackoff() {
	a.rndMu.Lock()
	d := 20*time.Millisecond + time.Duration(a.rnd.IntN(180))*time.Millisecond
	a.rndMu.Unlock()
	time.Sleep(d)
}

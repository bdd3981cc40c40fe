package migrate

// The source's side of a migration: Migrate runs Run over a migration, the
// Steps of one job's move from this node to a target.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/failpoint"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/shim"
)

// Migrate moves job p of this node to target (CheckTarget's answer),
// reporting progress through send, and returns the migration's figures.
// ctx bounds it (the agent gives it Timeout, and does not cancel it when the
// client goes away: a migration must not stop half-way).
func (mg *Migrator) Migrate(ctx context.Context, p pidtable.Proc, target pidtable.Node, postcopy bool, send func(api.MigrateEvent)) (*api.MigrateStats, error) {
	m := &migration{mg: mg, gpid: p.GPID, target: target, send: send, id: newID(), postcopy: postcopy, tl: &timeline{node: mg.cfg.Name}, flags: JobFlags(p)}
	st, err := Run(ctx, m)
	if !errors.Is(err, ErrCommitUncertain) { // settleLater clears it then
		mg.jobs.ClearBusy(m.j)
	}
	if err != nil {
		return nil, err
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return &api.MigrateStats{
		GPID: p.GPID, From: mg.cfg.Name, To: target.Name, FrozenMS: ms(st.Frozen), ImageBytes: st.ImageBytes,
		DumpMS: ms(st.Dump), TransferMS: ms(st.Transfer), RestoreMS: ms(st.Restore), TotalMS: ms(st.Total),
		PostCopy: m.postcopy, PagesMS: ms(m.pagesWait), LazyBytes: m.lazyBytes, Note: m.note,
		LogAheadBytes: m.logPre,
		Steps:         m.tl.list(),
	}, nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CheckTarget validates a migration request before anything is touched.
func (mg *Migrator) CheckTarget(ctx context.Context, p pidtable.Proc, node string) (pidtable.Node, error) {
	if node == "" {
		return pidtable.Node{}, errdefs.Invalidf("no target node given")
	}
	if node == p.Node {
		return pidtable.Node{}, errdefs.Invalidf("gpid %d already runs on %s", p.GPID, node)
	}
	switch {
	case p.State == pidtable.Migrating && p.Migration != nil:
		return pidtable.Node{}, errdefs.Conflictf("gpid %d is already being migrated to %s (since %s); wait for it to finish", p.GPID, p.Migration.Target, p.Migration.Started.Format(time.TimeOnly))
	case p.State.Ended():
		return pidtable.Node{}, errdefs.Conflictf("gpid %d has already %s", p.GPID, p.DescribeEnd())
	case p.State != pidtable.Running:
		return pidtable.Node{}, errdefs.Conflictf("gpid %d is %s, not running", p.GPID, p.State)
	case p.TTY:
		return pidtable.Node{}, RefuseTTY(p.GPID, "moved")
	}
	if mg.cfg.CRIUErr != nil {
		return pidtable.Node{}, errdefs.Conflictf("node %s cannot checkpoint jobs: %v", mg.cfg.Name, mg.cfg.CRIUErr)
	}
	return mg.CheckDestination(ctx, p, node)
}

// CheckDestination is CheckTarget without this node's CRIU: whether node may
// take p, restored from a checkpoint (a handover, checkpoint/store).
func (mg *Migrator) CheckDestination(ctx context.Context, p pidtable.Proc, node string) (pidtable.Node, error) {
	switch {
	case node == "":
		return pidtable.Node{}, errdefs.Invalidf("no target node given")
	case node == p.Node:
		return pidtable.Node{}, errdefs.Invalidf("gpid %d already runs on %s", p.GPID, node)
	}
	snap, err := mg.store.NodesSnapshot(ctx)
	if err != nil {
		return pidtable.Node{}, err
	}
	n, ok := snap.Node(node)
	if !ok {
		names := make([]string, 0, len(snap.Nodes))
		for _, n := range snap.Nodes {
			names = append(names, n.Name)
		}
		return pidtable.Node{}, errdefs.NotFoundf("unknown node %q (known nodes: %s)", node, strings.Join(names, ", "))
	}
	if !snap.Ready(node) {
		return pidtable.Node{}, errdefs.Unavailablef("node %s is NotReady (its agent is not running)", node)
	}
	if n.Cordoned {
		return pidtable.Node{}, api.Errorf(api.CodeConflict, "node %s is cordoned: it takes no new job (ssi node uncordon %s to allow it again)", node, node)
	}
	if err := CheckProtocol(mg.cfg.Name, mg.cfg.Version, n); err != nil {
		return pidtable.Node{}, err
	}
	return n, nil
}

// migration is the source side of one migration: Steps over this agent.
type migration struct {
	mg     *Migrator
	gpid   uint64
	id     string
	target pidtable.Node
	send   func(api.MigrateEvent)

	j   Job
	rev int64 // the record's revision after our last write
	// logPre is how much of the job's log went to the target before the
	// freeze (shipLogPrefix); only the rest travels with the images.
	logPre   int64
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
	// flags are the job's dump flags (JobFlags).
	flags checkpoint.Flags
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

func (m *migration) Progress(p Phase) {
	m.send(api.MigrateEvent{Phase: string(p)})
}

// setPhase records the phase in the job's record, guarded by our revision.
func (m *migration) setPhase(ctx context.Context, phase Phase) error {
	// etcd unreachable fails the step in seconds, not at the migration's bound.
	ctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	_, rev, err := m.mg.store.TransitionAt(ctx, m.gpid, m.rev, pidtable.Edit, m.mg.cfg.Name, func(p *pidtable.Proc) error {
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
	j, err := m.mg.jobs.MarkBusy(m.gpid, "being migrated to "+m.target.Name)
	if err != nil {
		if lj := m.mg.jobs.Job(m.gpid); lj == nil || !lj.State().Init.Alive() {
			// Its process is gone: it has just ended; its end is being recorded.
			for range 20 {
				var end *JobEnded
				if errors.As(m.ended(ctx), &end) {
					return errdefs.Conflictf("gpid %d ended before it could be moved: it %s", m.gpid, end.How)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		return err
	}
	m.j = j
	cctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	_, rev, err := m.mg.store.Transition(cctx, m.gpid, pidtable.MigrationClaim, m.mg.cfg.Name, func(p *pidtable.Proc) error {
		if p.Node != m.mg.cfg.Name || p.State != pidtable.Running {
			return errdefs.Conflictf("gpid %d is %s on %s, not running here", p.GPID, p.State, p.Node)
		}
		p.State = pidtable.Migrating
		p.Migration = &pidtable.Migration{ID: m.id, Target: m.target.Name, Phase: string(Claim), Started: time.Now().UTC()}
		return nil
	})
	if err != nil {
		m.mg.jobs.ClearBusy(j)
		return err
	}
	m.mg.jobs.MarkOutgoing(m.gpid, m.id)
	m.rev = rev
	return failpoint.Hit("migrate/source/after-claim")
}

func (m *migration) Prepare(ctx context.Context) error {
	if err := m.setPhase(ctx, Prepare); err != nil {
		return err
	}
	var spec shim.Spec
	if err := shim.ReadJSON(m.j.Dir(), shim.SpecFile, &spec); err != nil {
		return err
	}
	p, _, err := m.mg.store.Get(ctx, m.gpid)
	if err != nil {
		return err
	}
	files, err := JobFiles(m.j, true)
	if err != nil {
		return err
	}
	m.prepared = true // from here on the target may hold state: roll it back
	flags, err := m.mg.cpu.Flags()
	if err != nil {
		return err
	}
	if err := m.call(ctx, "prepare", api.PrepareRequest{ID: m.id, Proc: p, Spec: spec, Files: files, CPUFlags: flags, Protocol: Protocol, Version: m.mg.cfg.Version}, nil); err != nil {
		return err
	}
	if err := failpoint.Hit("migrate/source/after-prepare"); err != nil {
		return err
	}
	m.shipLogPrefix(ctx)
	// The record says "dump" before the job freezes: from the freeze to the
	// commit the migration writes nothing to etcd, since every write there
	// would be frozen time. So the record's phase stays "dump" through the
	// transfer and the restore; the progress stream names each step.
	return m.setPhase(ctx, Dump)
}

func (m *migration) Dump(ctx context.Context) (int64, error) {
	init := m.j.State().Init.PID
	var err error
	for i, fd := range []int{1, 2} {
		if m.keys[i], err = checkpoint.FileKey(init, fd); err != nil {
			return 0, err
		}
	}
	m.images = m.mg.ImagesDir("out", m.gpid)
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
		killOrphanLazyDump(m.j.Dir())
		m.mg.jobs.ReleaseStdin(m.j)
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
		if err := m.mg.Dump(ctx, checkpoint.DumpOpts{
			PID: init, ImagesDir: m.images, LeaveStopped: true,
			Flags: m.flags,
		}, m.j); err != nil {
			return err
		}
		t = m.tl.since("criu dump", t)
	}
	// The tree is stopped; let the shim drain what it had written to its pipes,
	// so the shipped log is complete (CRIU does not carry pipe contents over).
	WaitDrained(init, filepath.Join(m.j.Dir(), shim.LogFile))
	t = m.tl.since("drain output", t)
	if err := m.mg.jobs.HoldStdin(ctx, m.j); err != nil {
		return err
	}
	t = m.tl.since("hold stdin", t)
	m.imageBytes = DirSize(m.images)
	// The files and their sizes as the dump saw them (the tree is stopped):
	// the target checks them before it restores.
	if m.files, err = JobFiles(m.j, false); err != nil {
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
				m.send(api.MigrateEvent{Phase: string(Transfer), Bytes: sent.Load(), Total: m.imageBytes})
			}
		}
	}()
	srcs := []Source{{Prefix: "images", Dir: m.images}, {Prefix: "job", Dir: m.j.Dir(), Files: migratedJobFiles()}}
	if m.logPre > 0 {
		// The log up to logPre is on the target: only what the job wrote since.
		srcs = []Source{srcs[0],
			{Prefix: "job", Dir: m.j.Dir(), Files: []string{shim.LogFile}, Part: &Part{From: m.logPre, Suffix: logTailSuffix(m.logPre)}},
			{Prefix: "job", Dir: m.j.Dir(), Files: []string{shim.StdinFile}}}
	}
	if err := m.putStream(ctx, transferTimeout(m.imageBytes), &sent, srcs...); err != nil {
		return err
	}
	return failpoint.Hit("migrate/source/after-transfer")
}

// putStream sends srcs to the target as one image stream (PUT images),
// counting the bytes sent in sent, within bound.
func (m *migration) putStream(ctx context.Context, bound time.Duration, sent *atomic.Int64, srcs ...Source) error {
	pr, pw := io.Pipe()
	go func() {
		_, err := WriteStream(countingWriter{pw, sent}, srcs...)
		pw.CloseWithError(err)
	}()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, m.url("images"), pr)
	if err != nil {
		pr.CloseWithError(err)
		return err
	}
	req.Header.Set("X-Ssi-Migration", m.id)
	return m.do(req, nil)
}

// logPrefixMin is the size from which a job's log is shipped ahead of the
// freeze: a smaller one costs less frozen time than one more request.
const logPrefixMin = 1 << 20

// shipLogPrefix sends the job's log as it is now to the target while the job
// still runs, so that the freeze carries only what it writes from here on (a
// log is append-only). A failure is no failure of the migration: the log then
// travels whole, frozen.
func (m *migration) shipLogPrefix(ctx context.Context) {
	fi, err := os.Stat(filepath.Join(m.j.Dir(), shim.LogFile))
	if err != nil || fi.Size() < logPrefixMin {
		return
	}
	n := fi.Size()
	var sent atomic.Int64
	src := Source{Prefix: "job", Dir: m.j.Dir(), Files: []string{shim.LogFile}, Part: &Part{To: n, Suffix: logPrefixSuffix}}
	if err := m.putStream(ctx, transferTimeout(n), &sent, src); err != nil {
		m.mg.log.Warn("the job's log goes whole with its images: sending it ahead failed", "gpid", m.gpid, "bytes", n, "err", err)
		return
	}
	m.logPre = n
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
	req := api.RestoreRequest{ID: m.id, StdoutKey: m.keys[0], StderrKey: m.keys[1], StdinKey: m.j.State().StdinKey, Files: m.files,
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
		m.mg.log.Warn("target unreachable for resume; it resumes on its own once it sees the commit", "gpid", m.gpid, "target", m.target.Name, "err", err)
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
		wctx, cancel := context.WithTimeout(ctx, Timeout)
		err = m.lazy.Wait(wctx)
		cancel()
		m.pagesWait = time.Since(t)
		if err != nil {
			m.lazy.Kill()
			err = fmt.Errorf("post-copy: the page server stopped before the target had all the job's memory; the job on %s may fail: %w", m.target.Name, err)
		}
	}
	m.mg.jobs.Forget(m.j)
	return errors.Join(err, os.RemoveAll(m.images))
}

// RefuseTTY refuses to move or checkpoint (what) a job with a terminal.
func RefuseTTY(gpid uint64, what string) error {
	return errdefs.Conflictf("gpid %d has a terminal (ssi run -t), and a job with a terminal cannot be %s yet: its terminal's master is held by its shim on this node, which CRIU cannot re-plumb; start jobs without -t to move or checkpoint them", gpid, what)
}

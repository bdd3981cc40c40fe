package drain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/pidtable"
)

// cluster is a real etcd with three Ready nodes, n1..n3.
type cluster struct {
	t     *testing.T
	store *pidtable.Store
	sess  *concurrency.Session
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := etcdtest.Client(t)
	st := pidtable.New(c)
	sess, err := concurrency.NewSession(c, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	ctx := context.Background()
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := st.RegisterNode(ctx, pidtable.Node{Name: n, Addr: n + ":7070", CPUs: 4, Memory: 8 << 30}); err != nil {
			t.Fatal(err)
		}
		if err := st.PublishStatus(ctx, n, pidtable.NodeStatus{Instance: n}, sess.Lease()); err != nil {
			t.Fatal(err)
		}
	}
	return &cluster{t: t, store: st, sess: sess}
}

// job creates a running job on node.
func (c *cluster) job(node string, tty bool) uint64 {
	c.t.Helper()
	p, err := c.store.Create(context.Background(), pidtable.Proc{Node: node, State: pidtable.Running, User: "alice", Argv: []string{"sleep", "1000"}, Started: time.Now(), TTY: tty})
	if err != nil {
		c.t.Fatal(err)
	}
	return p.GPID
}

// drain starts a drain of node as the HTTP edge does.
func (c *cluster) drain(node string, parallel int, deadline time.Duration, force bool) {
	c.t.Helper()
	d := pidtable.Drain{Node: node, By: "root", Started: time.Now().UTC(), Deadline: time.Now().Add(deadline).UTC(), Parallel: parallel, Force: force, State: pidtable.DrainActive}
	if err := c.store.StartDrain(context.Background(), d, 0, pidtable.NodeConfig{Cordoned: true, Reason: "drain"}, 0); err != nil {
		c.t.Fatal(err)
	}
}

// mover moves jobs in the table as a source agent would (claim, commit),
// failing the gpids in fail; it counts the moves in flight at once.
type mover struct {
	st   *pidtable.Store
	fail map[uint64]bool
	// failHandover fails the live moves and the handovers of these gpids.
	failHandover map[uint64]bool
	// hold, if set, keeps every move until it is closed or ctx ends.
	hold chan struct{}

	mu       sync.Mutex
	now, max int
	calls    []api.MigrateRequest
	gpids    []uint64 // of the calls
}

func (m *mover) Move(ctx context.Context, addr string, gpid uint64, req api.MigrateRequest) (api.MigrateStats, error) {
	m.mu.Lock()
	m.now++
	m.max = max(m.max, m.now)
	m.calls = append(m.calls, req)
	m.gpids = append(m.gpids, gpid)
	m.mu.Unlock()
	defer func() { m.mu.Lock(); m.now--; m.mu.Unlock() }()
	if m.hold != nil {
		select {
		case <-m.hold:
		case <-ctx.Done():
			return api.MigrateStats{}, ctx.Err()
		}
	}
	p, _, err := m.st.Get(ctx, gpid)
	if err != nil {
		return api.MigrateStats{}, err
	}
	if addr != p.Node+":7070" {
		return api.MigrateStats{}, fmt.Errorf("move of gpid %d asked of %s, but it runs on %s", gpid, addr, p.Node)
	}
	if req.FromCheckpoint && !m.failHandover[gpid] {
		// As store.Handover: the source kills its copy, the target claims
		// the record and restores the checkpoint.
		if _, _, err := m.st.HandoverClaim(ctx, gpid, p.Node, p.Epoch, req.Node, "auto-1"); err != nil {
			return api.MigrateStats{}, err
		}
		if _, _, err := m.st.Transition(ctx, gpid, pidtable.Start, req.Node, func(p *pidtable.Proc) error { p.State = pidtable.Running; return nil }); err != nil {
			return api.MigrateStats{}, err
		}
		return api.MigrateStats{GPID: gpid, From: p.Node, To: req.Node, Checkpoint: "auto-1", Note: "restored from checkpoint auto-1"}, nil
	}
	if m.fail[gpid] || m.failHandover[gpid] {
		_, _ = m.st.Update(ctx, gpid, func(p *pidtable.Proc) error {
			p.MigrationError, p.MigrationFailed = "dump: connected TCP socket", time.Now()
			return nil
		})
		return api.MigrateStats{}, errors.New("dump: connected TCP socket")
	}
	return commit(ctx, m.st, gpid, req.Node)
}

// commit moves gpid to node in the table, as a migration's source does.
func commit(ctx context.Context, st *pidtable.Store, gpid uint64, to string) (api.MigrateStats, error) {
	p, _, err := st.Get(ctx, gpid)
	if err != nil {
		return api.MigrateStats{}, err
	}
	from := p.Node
	if _, _, err := st.Transition(ctx, gpid, pidtable.MigrationClaim, from, func(p *pidtable.Proc) error {
		p.State, p.Migration = pidtable.Migrating, &pidtable.Migration{ID: "m", Target: to}
		return nil
	}); err != nil {
		return api.MigrateStats{}, err
	}
	if _, _, err := st.Transition(ctx, gpid, pidtable.MigrationCommit, from, func(p *pidtable.Proc) error {
		p.State, p.Node, p.Epoch = pidtable.Running, to, p.Epoch+1
		return nil
	}); err != nil {
		return api.MigrateStats{}, err
	}
	return api.MigrateStats{GPID: gpid, From: from, To: to, FrozenMS: 120, ImageBytes: 1 << 20, TotalMS: 300}, nil
}

type recorder struct {
	mu  sync.Mutex
	evs []pidtable.Event
}

func (r *recorder) add(_ context.Context, ev pidtable.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

func (r *recorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.evs {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func newController(c *cluster, m Mover, kill func(context.Context, string, uint64) error, rec *recorder) *Controller {
	if kill == nil {
		kill = func(context.Context, string, uint64) error { return errors.New("no kill in this test") }
	}
	return New(Config{
		Name: "n1", Table: c.store, Mover: m, Kill: kill, Session: func() *concurrency.Session { return c.sess },
		Record: rec.add, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Interval: 10 * time.Millisecond, RetryAfter: 5 * time.Millisecond, MoveTimeout: 10 * time.Second,
	})
}

// stepUntilDone steps ctl until the drain of node is no longer active.
func stepUntilDone(t *testing.T, c *cluster, ctl *Controller, node string) pidtable.Drain {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if err := ctl.Step(ctx, ctx, nil); err != nil {
			t.Fatal(err)
		}
		d, _, err := c.store.GetDrain(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		if d.State != pidtable.DrainActive {
			ctl.Wait()
			return d
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the drain did not end in 10 s")
	return pidtable.Drain{}
}

// TestDrainMovesEveryJob: every movable job of n2 ends on n1 or n3, at most
// Parallel moves at a time, never onto the cordoned node; a job whose moves
// fail is failed after MaxAttempts with the reason; a job with a terminal is
// unmovable; jobs on other nodes are not touched; events say each move.
func TestDrainMovesEveryJob(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	var movable []uint64
	for range 6 {
		movable = append(movable, c.job("n2", false))
	}
	bad := c.job("n2", false)
	tty := c.job("n2", true)
	other := c.job("n3", false)
	if _, _, err := c.store.UpdateNodeConfig(ctx, "n3", func(nc *pidtable.NodeConfig) (bool, error) { nc.Cordoned = true; return true, nil }); err != nil {
		t.Fatal(err)
	}
	c.drain("n2", 2, time.Hour, false)
	m := &mover{st: c.store, fail: map[uint64]bool{bad: true}}
	rec := &recorder{}
	d := stepUntilDone(t, c, newController(c, m, nil, rec), "n2")

	if d.State != pidtable.DrainDone {
		t.Fatalf("drain %+v", d)
	}
	for _, g := range movable {
		p, _, _ := c.store.Get(ctx, g)
		j, _ := d.Job(g)
		if p.Node != "n1" || j.State != pidtable.JobMoved || j.To != "n1" || j.Frozen != 120*time.Millisecond {
			t.Errorf("gpid %d: on %s, entry %+v; want moved to n1 (n3 is cordoned)", g, p.Node, j)
		}
	}
	if j, _ := d.Job(bad); j.State != pidtable.JobFailed || j.Attempts != DefaultMaxAttempts || !strings.Contains(j.Reason, "TCP socket") {
		t.Errorf("failing job: %+v", j)
	}
	if j, _ := d.Job(tty); j.State != pidtable.JobUnmovable || !strings.Contains(j.Reason, "terminal") {
		t.Errorf("tty job: %+v", j)
	}
	if _, ok := d.Job(other); ok {
		t.Error("a job of n3 is in n2's drain")
	}
	if m.max > 2 {
		t.Errorf("%d moves in flight at once, want at most 2", m.max)
	}
	if !strings.Contains(d.Message, "6 moved") || !strings.Contains(d.Message, "1 failed") || !strings.Contains(d.Message, "1 unmovable") {
		t.Errorf("message %q", d.Message)
	}
	if n := rec.count(pidtable.EventMoved); n != 6 {
		t.Errorf("%d moved events, want 6", n)
	}
	if n := rec.count(pidtable.EventFailed); n != DefaultMaxAttempts {
		t.Errorf("%d failed events, want %d", n, DefaultMaxAttempts)
	}
}

// TestDrainResumes: the first leader decides two moves and dies (its moves
// never reach the source); meanwhile the source commits one of them by
// itself. A second controller, from the record and the table alone, counts
// that one moved, moves the other, and finishes.
func TestDrainResumes(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	a, b := c.job("n2", false), c.job("n2", false)
	c.drain("n2", 2, time.Hour, false)

	life, die := context.WithCancel(ctx)
	held := &mover{st: c.store, hold: make(chan struct{})}
	first := newController(c, held, nil, &recorder{})
	if err := first.Step(ctx, life, nil); err != nil {
		t.Fatal(err)
	}
	d, _, _ := c.store.GetDrain(ctx, "n2")
	if n := d.Count()[pidtable.JobMoving]; n != 2 {
		t.Fatalf("after the first step: %+v, want 2 moving", d.Jobs)
	}
	die()
	first.Wait()
	ja, _ := d.Job(a)
	if _, err := commit(ctx, c.store, a, ja.To); err != nil {
		t.Fatal(err)
	}

	m := &mover{st: c.store}
	d = stepUntilDone(t, c, newController(c, m, nil, &recorder{}), "n2")
	for _, g := range []uint64{a, b} {
		p, _, _ := c.store.Get(ctx, g)
		if j, _ := d.Job(g); j.State != pidtable.JobMoved || p.Node == "n2" {
			t.Errorf("gpid %d on %s: %+v", g, p.Node, j)
		}
	}
	if len(m.calls) != 1 {
		t.Errorf("the second controller made %d moves, want 1 (the other was committed)", len(m.calls))
	}
}

// TestDrainForceKillsAtDeadline: past the deadline, with --force, a job that
// cannot move is killed through Kill; the drain ends once it is gone.
// Without --force it stays, listed.
func TestDrainForceKillsAtDeadline(t *testing.T) {
	c := newCluster(t)
	tty := c.job("n2", true)
	stay := c.job("n1", true)
	var killed []uint64
	kill := func(ctx context.Context, node string, gpid uint64) error {
		killed = append(killed, gpid)
		_, _, err := c.store.Transition(ctx, gpid, pidtable.End, node, func(p *pidtable.Proc) error {
			code := 137
			p.State, p.ExitCode = pidtable.Exited, &code
			return nil
		})
		return err
	}
	c.drain("n2", 1, time.Millisecond, true)
	c.drain("n1", 1, time.Millisecond, false)
	time.Sleep(5 * time.Millisecond)
	ctl := newController(c, &mover{st: c.store}, kill, &recorder{})
	d := stepUntilDone(t, c, ctl, "n2")
	if j, _ := d.Job(tty); j.State != pidtable.JobKilled || !strings.Contains(j.Reason, "--force") || len(killed) != 1 {
		t.Fatalf("forced: %+v, killed %v", j, killed)
	}
	d = stepUntilDone(t, c, ctl, "n1")
	if j, _ := d.Job(stay); j.State != pidtable.JobUnmovable || !strings.Contains(d.Message, "still run on n1") {
		t.Fatalf("not forced: %+v, %q", j, d.Message)
	}
}

// TestDrainNoTarget: the other nodes are cordoned: nothing moves, every job
// says why, and at the deadline they are left on the node.
func TestDrainNoTarget(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	g := c.job("n2", false)
	for _, n := range []string{"n1", "n3"} {
		if _, _, err := c.store.UpdateNodeConfig(ctx, n, func(nc *pidtable.NodeConfig) (bool, error) { nc.Cordoned = true; return true, nil }); err != nil {
			t.Fatal(err)
		}
	}
	c.drain("n2", 1, 200*time.Millisecond, false)
	m := &mover{st: c.store}
	d := stepUntilDone(t, c, newController(c, m, nil, &recorder{}), "n2")
	j, _ := d.Job(g)
	if j.State != pidtable.JobLeft || !strings.Contains(j.Reason, "2 cordoned") || len(m.calls) != 0 {
		t.Fatalf("entry %+v, %d moves", j, len(m.calls))
	}
}

// TestRunElected: Run leads through the election and drains.
func TestRunElected(t *testing.T) {
	c := newCluster(t)
	g := c.job("n2", false)
	c.drain("n2", 1, time.Hour, false)
	ctx, cancel := context.WithCancel(context.Background())
	ctl := newController(c, &mover{st: c.store}, nil, &recorder{})
	done := make(chan struct{})
	go func() { ctl.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		d, _, err := c.store.GetDrain(ctx, "n2")
		if err == nil && d.State == pidtable.DrainDone {
			if j, _ := d.Job(g); j.State != pidtable.JobMoved || d.Leader != "n1" {
				t.Fatalf("%+v", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not done: %+v %v", d, err)
		}
	}
	if leader, err := c.store.DrainLeader(ctx); err != nil || leader != "n1" {
		t.Fatalf("leader %q, %v", leader, err)
	}
}

// TestDrainReplacesReplicas: a service replica with Migratable=no is not
// moved but left to its controller to replace, and one whose moves all fail
// is too; the drain stays open until both are gone from the node, then says
// they were replaced.
func TestDrainReplacesReplicas(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	replica := func(pinned bool) uint64 {
		p, err := c.store.Create(ctx, pidtable.Proc{Node: "n2", State: pidtable.Running, User: "alice", Argv: []string{"sleep", "1000"}, Started: time.Now(), Service: "web", Pinned: pinned})
		if err != nil {
			t.Fatal(err)
		}
		return p.GPID
	}
	pinned, failing := replica(true), replica(false)
	c.drain("n2", 2, time.Hour, false)
	m := &mover{st: c.store, fail: map[uint64]bool{failing: true}}
	ctl := newController(c, m, nil, &recorder{})
	var d pidtable.Drain
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := ctl.Step(ctx, ctx, nil); err != nil {
			t.Fatal(err)
		}
		var err error
		if d, _, err = c.store.GetDrain(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		if len(d.Replacing()) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctl.Wait()
	for _, g := range m.gpids {
		if g == pinned {
			t.Fatal("a move of the Migratable=no replica was asked for")
		}
	}
	if j, _ := d.Job(failing); j.State != pidtable.JobReplacing || !strings.Contains(j.Reason, "could not be moved") {
		t.Fatalf("replica whose moves failed: %+v", j)
	}
	if d.State != pidtable.DrainActive {
		t.Fatalf("drain ended with replicas still to replace: %+v", d)
	}
	// The service controller stops both once their replacements run.
	for _, g := range []uint64{pinned, failing} {
		if _, _, err := c.store.Transition(ctx, g, pidtable.End, "n2", func(p *pidtable.Proc) error {
			code := 143
			p.State, p.ExitCode, p.Ended = pidtable.Exited, &code, time.Now()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	d = stepUntilDone(t, c, ctl, "n2")
	if d.State != pidtable.DrainDone || d.Count()[pidtable.JobReplaced] != 2 || !strings.Contains(d.Message, "2 replaced") {
		t.Fatalf("drain: %+v", d)
	}
}

// TestDrainFallsBackToCheckpoint: a job with automatic checkpoints whose
// live moves all fail is moved by restoring its newest checkpoint elsewhere
// (one more attempt, FromCheckpoint); a plain job whose moves fail stays; a
// checkpointed one whose restore fails too is failed, with both reasons.
func TestDrainFallsBackToCheckpoint(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	checkpointed := func() uint64 {
		p, err := c.store.Create(ctx, pidtable.Proc{Node: "n2", State: pidtable.Running, User: "alice", Argv: []string{"sim"}, Started: time.Now(), CheckpointEvery: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return p.GPID
	}
	ck, ckBad, plain := checkpointed(), checkpointed(), c.job("n2", false)
	c.drain("n2", 2, time.Hour, false)
	m := &mover{st: c.store, fail: map[uint64]bool{ck: true, plain: true}, failHandover: map[uint64]bool{ckBad: true}}
	d := stepUntilDone(t, c, newController(c, m, nil, &recorder{}), "n2")

	p, _, _ := c.store.Get(ctx, ck)
	j, _ := d.Job(ck)
	if p.Node == "n2" || p.State != pidtable.Running || p.RestoredFrom != "auto-1" || j.State != pidtable.JobMoved || !j.FromCheckpoint || !strings.Contains(j.Reason, "restored from checkpoint") {
		t.Errorf("checkpointed job: %+v, entry %+v; want restored from its checkpoint off n2", p, j)
	}
	if j, _ := d.Job(ckBad); j.State != pidtable.JobFailed || !strings.Contains(j.Reason, "restore of its newest checkpoint") {
		t.Errorf("checkpointed job whose restore failed: %+v", j)
	}
	if j, _ := d.Job(plain); j.State != pidtable.JobFailed || j.FromCheckpoint {
		t.Errorf("plain job: %+v; want failed, no fallback", j)
	}
	var handovers int
	for i, req := range m.calls {
		if req.FromCheckpoint {
			handovers++
			if m.gpids[i] == plain || req.PostCopy {
				t.Errorf("handover asked for gpid %d: %+v", m.gpids[i], req)
			}
		}
	}
	if handovers != 2 {
		t.Errorf("%d handovers asked, want 2 (one per checkpointed job)", handovers)
	}
}

package balancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// goroutine of a Balancer belongs to the context its agent cancels.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeTable is a Table over a fixed config and snapshot.
type fakeTable struct {
	mu        sync.Mutex
	cfg       pidtable.BalancerConfig
	snap      *pidtable.Snapshot
	snapshots int
	published []pidtable.BalancerStatus
	// records answer Get (a move's outcome after a lost stream).
	records map[uint64]pidtable.Proc
}

func (f *fakeTable) BalancerConfig(context.Context) (pidtable.BalancerConfig, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg, 1, nil
}

func (f *fakeTable) Snapshot(context.Context) (*pidtable.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snapshots++
	return f.snap, nil
}

func (f *fakeTable) PublishBalancerStatus(_ context.Context, st pidtable.BalancerStatus, _ clientv3.LeaseID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = append(f.published, st)
	return nil
}

func (f *fakeTable) Get(_ context.Context, gpid uint64) (pidtable.Proc, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.records[gpid]
	if !ok {
		return pidtable.Proc{}, 0, fmt.Errorf("gpid %d: %w", gpid, pidtable.ErrNotFound)
	}
	return p, 1, nil
}

func (f *fakeTable) last() pidtable.BalancerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.published[len(f.published)-1]
}

// moveCall is one call of a fakeMover.
type moveCall struct {
	addr string
	gpid uint64
	req  api.MigrateRequest
}

// fakeMover answers every move with stats and err, after release is closed
// (if set) or its context ends.
type fakeMover struct {
	stats   api.MigrateStats
	err     error
	release chan struct{}

	mu    sync.Mutex
	calls []moveCall
}

func (m *fakeMover) Move(ctx context.Context, addr string, gpid uint64, req api.MigrateRequest) (api.MigrateStats, error) {
	m.mu.Lock()
	m.calls = append(m.calls, moveCall{addr, gpid, req})
	m.mu.Unlock()
	if m.release != nil {
		select {
		case <-m.release:
		case <-ctx.Done():
			return api.MigrateStats{}, fmt.Errorf("%w: %w", api.ErrStreamLost, ctx.Err())
		}
	}
	return m.stats, m.err
}

func (m *fakeMover) moved() []moveCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

// recorder keeps the events a Balancer records.
type recorder struct {
	mu  sync.Mutex
	evs []pidtable.Event
}

func (r *recorder) add(_ context.Context, ev pidtable.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.evs {
		out = append(out, ev.Kind)
	}
	return out
}

func (r *recorder) of(kind string) []pidtable.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []pidtable.Event
	for _, ev := range r.evs {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func newTest(t *testing.T, table Table, mover Mover) (*Balancer, *recorder) {
	t.Helper()
	rec := &recorder{}
	b := New(Config{
		Name: "node3", Table: table, Mover: mover, Record: rec.add,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), MoveTimeout: time.Minute,
	})
	t.Cleanup(b.moving.Wait)
	return b, rec
}

// busySnapshot: three CPU-bound jobs of alice, ten minutes old, on node1 (one
// CPU); node2 (one CPU) idle.
func busySnapshot(now time.Time) *pidtable.Snapshot {
	started := now.Add(-10 * time.Minute)
	snap := &pidtable.Snapshot{
		Nodes: []pidtable.Node{{Name: "node1", Addr: "10.0.0.1:7070", CPUs: 1}, {Name: "node2", Addr: "10.0.0.2:7070", CPUs: 1}},
		Status: map[string]pidtable.NodeStatus{
			"node1": {Jobs: 3, Demand: 3, Procs: map[uint64]pidtable.ProcStats{}},
			"node2": {Procs: map[uint64]pidtable.ProcStats{}},
		},
	}
	for g := uint64(1); g <= 3; g++ {
		snap.Procs = append(snap.Procs, pidtable.Proc{GPID: g, Node: "node1", User: "alice", State: pidtable.Running, Started: started, Epoch: 1})
		snap.Status["node1"].Procs[g] = pidtable.ProcStats{Demand: 1, RSS: 1 << 20}
	}
	return snap
}

// waitFor polls cond for a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRoundMoves: a round on a busy node and an idle one starts one move (one
// in flight per node), through the source's address, records it, and once it
// ends records its figures, counts it and measures it; the next round, with
// the move still in flight, starts none.
func TestRoundMoves(t *testing.T) {
	ctx := context.Background()
	table := &fakeTable{cfg: pidtable.BalancerConfig{Enabled: true}, snap: busySnapshot(time.Now())}
	mover := &fakeMover{stats: api.MigrateStats{ImageBytes: 1 << 20, FrozenMS: 250}, release: make(chan struct{})}
	b, rec := newTest(t, table, mover)

	if err := b.round(ctx, ctx, 7); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the move", func() bool { return len(mover.moved()) == 1 })
	call := mover.moved()[0]
	if call.addr != "10.0.0.1:7070" || call.req.Node != "node2" || call.req.PostCopy || call.gpid < 1 || call.gpid > 3 {
		t.Fatalf("move %+v; want one of gpids 1-3 from node1 (10.0.0.1:7070) to node2, stop-and-copy", call)
	}
	st := table.last()
	if !st.Enabled || st.Leader != "node3" || st.Moves != 1 || len(st.Inflight) != 1 || st.Inflight[0].User != "alice" || st.Inflight[0].To != "node2" {
		t.Fatalf("status after the round: %+v", st)
	}
	if mv := rec.of(pidtable.EventMove); len(mv) != 1 || mv[0].GPID != call.gpid || mv[0].Gain <= mv[0].Cost {
		t.Fatalf("move events %+v", mv)
	}
	// In flight: the next round moves nothing more from node1.
	if err := b.round(ctx, ctx, 7); err != nil {
		t.Fatal(err)
	}
	if n := len(mover.moved()); n != 1 {
		t.Fatalf("%d moves with one in flight from node1, want 1", n)
	}
	close(mover.release)
	waitFor(t, "the move's outcome", func() bool { return len(rec.of(pidtable.EventMoved)) == 1 })
	ev := rec.of(pidtable.EventMoved)[0]
	if ev.GPID != call.gpid || ev.Frozen != 250*time.Millisecond || ev.Bytes != 1<<20 || ev.Took <= 0 {
		t.Errorf("moved event %+v", ev)
	}
	st = b.status(time.Now()) // what the next round publishes
	if st.MovesDone != 1 || st.MovesFail != 0 || st.Measured != 1 || st.Freeze <= 0 {
		t.Errorf("status after the move: %+v; want 1 done and its freeze measured", st)
	}
}

// TestRoundFailedMove: a failed move is recorded with its backoff, and the job
// is held back by the next rounds (the policy says why, once).
func TestRoundFailedMove(t *testing.T) {
	ctx := context.Background()
	snap := busySnapshot(time.Now())
	snap.Procs, snap.Status["node1"].Procs[2] = snap.Procs[:2], pidtable.ProcStats{Demand: 1.5}
	delete(snap.Status["node1"].Procs, 3)
	table := &fakeTable{cfg: pidtable.BalancerConfig{Enabled: true, MaxMovesPerRound: 1}, snap: snap}
	mover := &fakeMover{err: errors.New("dump: connected TCP socket")}
	b, rec := newTest(t, table, mover)

	if err := b.round(ctx, ctx, 7); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failure", func() bool { return len(rec.of(pidtable.EventFailed)) == 1 })
	failed := rec.of(pidtable.EventFailed)[0]
	if want := "dump: connected TCP socket (not moved again for 10s)"; failed.Reason != want {
		t.Fatalf("failed event reason %q, want %q", failed.Reason, want)
	}
	first := mover.moved()[0].gpid
	for range 3 {
		if err := b.round(ctx, ctx, 7); err != nil {
			t.Fatal(err)
		}
	}
	b.moving.Wait()
	for _, c := range mover.moved()[1:] {
		if c.gpid == first {
			t.Fatalf("gpid %d moved again while backed off (moves %+v)", first, mover.moved())
		}
	}
	var heldBack int
	for _, r := range rec.of(pidtable.EventRejected) {
		if r.GPID == first && strings.Contains(r.Reason, "backed off") {
			heldBack++
		}
	}
	if heldBack != 1 {
		t.Errorf("%d rejections of gpid %d saying it is backed off, want 1 (deduplicated): %+v", heldBack, first, rec.of(pidtable.EventRejected))
	}
	if st := table.last(); st.MovesFail < 1 || st.Measured != 0 {
		t.Errorf("status %+v; want the failure counted, nothing measured", st)
	}
}

// TestRoundStreamLost: when the progress stream breaks, the outcome is the
// record's.
func TestRoundStreamLost(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		record pidtable.Proc
		kind   string
		reason string
	}{
		{"moved", pidtable.Proc{Node: "node2", State: pidtable.Running}, pidtable.EventMoved, ""},
		{"rolled back", pidtable.Proc{Node: "node1", State: pidtable.Running, MigrationError: "restore: no space"}, pidtable.EventFailed, "restore: no space (progress stream lost; reason from the record) (not moved again for 10s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := busySnapshot(time.Now())
			table := &fakeTable{cfg: pidtable.BalancerConfig{Enabled: true}, snap: snap, records: map[uint64]pidtable.Proc{}}
			for g := uint64(1); g <= 3; g++ {
				p := tc.record
				p.GPID = g
				table.records[g] = p
			}
			mover := &fakeMover{err: fmt.Errorf("%w: connection reset", api.ErrStreamLost)}
			b, rec := newTest(t, table, mover)
			if err := b.round(ctx, ctx, 7); err != nil {
				t.Fatal(err)
			}
			b.moving.Wait()
			evs := rec.of(tc.kind)
			if len(evs) != 1 || evs[0].Reason != tc.reason || evs[0].Frozen != 0 {
				t.Fatalf("%s events %+v (all: %v); want one with reason %q", tc.kind, evs, rec.kinds(), tc.reason)
			}
		})
	}
}

// TestRoundDisabled: switched off, a round reads no snapshot, moves nothing,
// and publishes that it is off.
func TestRoundDisabled(t *testing.T) {
	ctx := context.Background()
	table := &fakeTable{cfg: pidtable.BalancerConfig{Enabled: false}, snap: busySnapshot(time.Now())}
	mover := &fakeMover{}
	b, rec := newTest(t, table, mover)
	if err := b.round(ctx, ctx, 7); err != nil {
		t.Fatal(err)
	}
	if table.snapshots != 0 || len(mover.moved()) != 0 || len(rec.kinds()) != 0 {
		t.Fatalf("disabled round: %d snapshots, moves %v, events %v", table.snapshots, mover.moved(), rec.kinds())
	}
	if st := table.last(); st.Enabled || st.Leader != "node3" {
		t.Fatalf("status %+v", st)
	}
}

// TestMoveEndsWithItsAgent: a move in flight when the agent stops is
// cancelled, its goroutine ends, and nothing is recorded of it.
func TestMoveEndsWithItsAgent(t *testing.T) {
	table := &fakeTable{cfg: pidtable.BalancerConfig{Enabled: true}, snap: busySnapshot(time.Now())}
	mover := &fakeMover{release: make(chan struct{})}
	b, rec := newTest(t, table, mover)
	life, stop := context.WithCancel(context.Background())
	t.Cleanup(stop) // before b.moving.Wait, registered by newTest
	// The term ends at once: the move belongs to the agent's life, not to
	// the leadership.
	term, endTerm := context.WithCancel(life)
	if err := b.round(term, life, 7); err != nil {
		t.Fatal(err)
	}
	endTerm()
	waitFor(t, "the move", func() bool { return len(mover.moved()) == 1 })
	time.Sleep(20 * time.Millisecond)
	moves := func() int {
		return len(rec.of(pidtable.EventMove)) + len(rec.of(pidtable.EventMoved)) + len(rec.of(pidtable.EventFailed))
	}
	if n := moves(); n != 1 {
		t.Fatalf("events %v after the term ended; want the move only, still in flight", rec.kinds())
	}
	stop()
	b.moving.Wait()
	if n := moves(); n != 1 {
		t.Fatalf("events %v after the agent stopped; want nothing more of the move", rec.kinds())
	}
	if st := b.status(time.Now()); len(st.Inflight) != 0 {
		t.Errorf("in flight after stop: %+v", st.Inflight)
	}
}

// TestViewAfterMove: right after a move the target's last status lacks the
// job and the source's still has it; the view counts the job where the
// process table puts it, with the demand last seen.
func TestViewAfterMove(t *testing.T) {
	now := time.Now()
	started := now.Add(-time.Minute)
	snap := &pidtable.Snapshot{
		Nodes: []pidtable.Node{{Name: "node1", CPUs: 1}, {Name: "node2", CPUs: 1}, {Name: "node3", CPUs: 1}},
		Procs: []pidtable.Proc{
			{GPID: 1, Node: "node1", State: pidtable.Running, Started: started},
			{GPID: 2, Node: "node2", State: pidtable.Running, Started: started, Arrived: now.Add(-300 * time.Millisecond)}, // just moved from node1
			{GPID: 3, Node: "node1", State: pidtable.Migrating, Started: started, Migration: &pidtable.Migration{Target: "node3"}},
			{GPID: 4, Node: "node1", State: pidtable.Exited, Started: started},
			{GPID: 5, Node: "node3", State: pidtable.Running, Started: started, Pinned: true},
		},
		Status: map[string]pidtable.NodeStatus{
			"node1": {Demand: 3, Procs: map[uint64]pidtable.ProcStats{1: {Demand: 1}, 2: {Demand: 0.9}, 3: {Demand: 1, RSS: 42}}},
			"node2": {Demand: 0, Procs: map[uint64]pidtable.ProcStats{}},
			"node3": {Demand: 0.5, Procs: map[uint64]pidtable.ProcStats{5: {Demand: 0.5}}},
		},
	}
	b := New(Config{})
	nodes, jobs := b.view(snap, now)
	load := map[string]float64{}
	inflight := map[string]int{}
	for _, n := range nodes {
		if !n.Ready {
			t.Errorf("node %s not Ready", n.Name)
		}
		load[n.Name], inflight[n.Name] = n.Load, n.Inflight
	}
	if load["node1"] != 2 || load["node2"] != 0.9 || load["node3"] != 0.5 {
		t.Errorf("loads %v; want node1 2 (gpids 1, 3), node2 0.9 (gpid 2, as node1 last saw it), node3 0.5", load)
	}
	if inflight["node1"] != 1 || inflight["node3"] != 1 || inflight["node2"] != 0 {
		t.Errorf("in flight %v; want node1 and node3 1 (gpid 3)", inflight)
	}
	byGPID := map[uint64]int{}
	for i, j := range jobs {
		byGPID[j.GPID] = i
	}
	if _, ok := byGPID[4]; ok || len(jobs) != 4 {
		t.Fatalf("jobs %+v; want the 4 live ones", jobs)
	}
	if j := jobs[byGPID[2]]; j.Resident > time.Second || j.Age < 59*time.Second || j.Node != "node2" {
		t.Errorf("moved job: %+v; want resident since its arrival, age since its start", j)
	}
	if j := jobs[byGPID[3]]; !j.Migrating || j.Memory != 42 {
		t.Errorf("migrating job: %+v", j)
	}
	if !jobs[byGPID[5]].Pinned {
		t.Errorf("pinned job not pinned: %+v", jobs[byGPID[5]])
	}
	// Next round, node2 still has not published gpid 2 and node1 forgot it:
	// the demand the last round saw stands.
	delete(snap.Status["node1"].Procs, 2)
	nodes, _ = b.view(snap, now)
	for _, n := range nodes {
		if n.Name == "node2" && n.Load != 0.9 {
			t.Errorf("node2 load %g on the second round; want 0.9 remembered", n.Load)
		}
	}
}

// TestViewCountsMovesStarted: a move started but not yet claimed by the source
// (its record still Running) counts in flight on both nodes, and its job as
// migrating.
func TestViewCountsMovesStarted(t *testing.T) {
	now := time.Now()
	b := New(Config{})
	b.inflight[2] = pidtable.InflightMove{GPID: 2, From: "node1", To: "node2"}
	nodes, jobs := b.view(busySnapshot(now), now)
	for _, n := range nodes {
		if n.Inflight != 1 {
			t.Errorf("node %s: %d in flight, want 1", n.Name, n.Inflight)
		}
	}
	for _, j := range jobs {
		if j.Migrating != (j.GPID == 2) {
			t.Errorf("job %d migrating %v", j.GPID, j.Migrating)
		}
	}
}

// TestRoundSkipsCordonedTarget: the only idle node is cordoned (ssi node
// cordon): the round moves nothing onto it, and the rejection says why.
func TestRoundSkipsCordonedTarget(t *testing.T) {
	ctx := context.Background()
	snap := busySnapshot(time.Now())
	snap.Nodes[1].Cordoned = true
	table := &fakeTable{cfg: pidtable.BalancerConfig{Enabled: true}, snap: snap}
	mover := &fakeMover{}
	b, rec := newTest(t, table, mover)
	if err := b.round(ctx, ctx, 7); err != nil {
		t.Fatal(err)
	}
	b.moving.Wait()
	if calls := mover.moved(); len(calls) != 0 {
		t.Fatalf("moved onto a cordoned node: %+v", calls)
	}
	rej := rec.of(pidtable.EventRejected)
	if len(rej) == 0 || !strings.Contains(rej[0].Reason, "cordoned") {
		t.Fatalf("rejections %+v, want one naming the cordon", rej)
	}
}

// TestRoundLeavesDrainedNodeToDrain: the busy node is being drained (ssi node
// drain): its jobs are the drain's, so the round moves none of them, though
// an idle node is there to take them.
func TestRoundLeavesDrainedNodeToDrain(t *testing.T) {
	ctx := context.Background()
	snap := busySnapshot(time.Now())
	for i, n := range snap.Nodes {
		snap.Nodes[i].Draining = n.Name == snap.Procs[0].Node
	}
	table := &fakeTable{cfg: pidtable.BalancerConfig{Enabled: true}, snap: snap}
	mover := &fakeMover{}
	b, _ := newTest(t, table, mover)
	if err := b.round(ctx, ctx, 7); err != nil {
		t.Fatal(err)
	}
	b.moving.Wait()
	if calls := mover.moved(); len(calls) != 0 {
		t.Fatalf("moved jobs off a node being drained: %+v", calls)
	}
	// The same snapshot without the drain: the round moves one.
	for i := range snap.Nodes {
		snap.Nodes[i].Draining = false
	}
	if err := b.round(ctx, ctx, 7); err != nil {
		t.Fatal(err)
	}
	b.moving.Wait()
	if calls := mover.moved(); len(calls) == 0 {
		t.Fatal("the busy node's jobs stayed without a drain too; the test shows nothing")
	}
}

// TestRoundBoundsRejectionEvents: 500 jobs on a busy node, none of which may
// move (all pinned): a round records maxRejectEvents rejections, not 500
// (each is an etcd write: 100,000 of them made a round take 196 s), and the
// next rounds record the others, each job once.
func TestRoundBoundsRejectionEvents(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	snap := busySnapshot(now)
	snap.Procs = nil
	st := snap.Status["node1"]
	st.Demand = 500
	snap.Status["node1"] = st
	for g := uint64(1); g <= 500; g++ {
		snap.Procs = append(snap.Procs, pidtable.Proc{GPID: g, Node: "node1", User: "alice", State: pidtable.Running, Started: now.Add(-time.Hour), Epoch: 1, Pinned: true})
		st.Procs[g] = pidtable.ProcStats{Demand: 1, RSS: 1 << 20}
	}
	table := &fakeTable{cfg: pidtable.BalancerConfig{Enabled: true}, snap: snap}
	b, rec := newTest(t, table, &fakeMover{})
	if err := b.round(ctx, ctx, 7); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.of(pidtable.EventRejected)); n != maxRejectEvents {
		t.Fatalf("one round recorded %d rejections, want %d", n, maxRejectEvents)
	}
	for range 500/maxRejectEvents + 2 {
		if err := b.round(ctx, ctx, 7); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]int{}
	for _, ev := range rec.of(pidtable.EventRejected) {
		seen[ev.GPID]++
	}
	for g := uint64(1); g <= 500; g++ {
		if seen[g] != 1 {
			t.Fatalf("gpid %d's rejection recorded %d times, want once", g, seen[g])
		}
	}
}

// TestRoundQuietSkipsJobs: no node publishes a demand above a job per
// core and no move is in flight: the round plans nothing and does not walk
// the jobs (its view is empty); the same cluster with one busy node is
// planned.
func TestRoundQuietSkipsJobs(t *testing.T) {
	now := time.Now()
	snap := busySnapshot(now)
	b, _ := newTest(t, &fakeTable{cfg: pidtable.BalancerConfig{Enabled: true}, snap: snap}, &fakeMover{})
	cfg := b.config(pidtable.BalancerConfig{})
	if nodes, jobs := b.viewIfOverloaded(snap, now, cfg); len(nodes) == 0 || len(jobs) != 3 {
		t.Fatalf("busy node1: view of %d nodes and %d jobs, want 2 and 3", len(nodes), len(jobs))
	}
	st := snap.Status["node1"]
	st.Demand = 1 // node1's own figures: one job per core
	snap.Status["node1"] = st
	if nodes, jobs := b.viewIfOverloaded(snap, now, cfg); nodes != nil || jobs != nil {
		t.Fatalf("quiet cluster: view of %d nodes and %d jobs, want none", len(nodes), len(jobs))
	}
	if _, jobs := b.view(snap, now); len(jobs) != 3 {
		t.Fatalf("view (not the round's) lists %d jobs, want 3", len(jobs))
	}
}

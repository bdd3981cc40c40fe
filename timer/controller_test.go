package timer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/service"
)

// fakeRunner starts a run as a node's agent does (Store.StartClaim, then
// pidtable.Store.CreateClaimed, the record's creation and the tick's start
// in one transaction) and ends it at once. It counts the runs that
// "launched" per tick: a launch follows only a successful creation.
type fakeRunner struct {
	ts *Store
	st *pidtable.Store
	mu sync.Mutex
	// launched counts launches per tick.
	launched map[time.Time]int
	// lost counts starts whose transaction failed because another start
	// won the tick meanwhile; refused those that found it started already.
	lost, refused int
	// hold keeps runs running until Stop (or the test) ends them.
	hold  bool
	stops int
	// delay holds a start between its read of the tick and its transaction,
	// widening the window two controllers race in.
	delay time.Duration
}

func (f *fakeRunner) Start(ctx context.Context, t Timer, tick Tick, node string) error {
	_, conds, ops, err := f.ts.StartClaim(ctx, t.Name, tick.Scheduled, tick.GPID, node)
	if err != nil {
		if errors.Is(err, ErrNotClaimed) {
			f.mu.Lock()
			f.refused++
			f.mu.Unlock()
		}
		return err
	}
	time.Sleep(f.delay)
	p, err := f.st.CreateClaimed(ctx, pidtable.Proc{GPID: tick.GPID, Node: node, User: t.Owner, Argv: t.Service.Argv}, conds, ops)
	if err != nil {
		if errors.Is(err, pidtable.ErrClaimLost) {
			f.mu.Lock()
			f.lost++
			f.mu.Unlock()
		}
		return err
	}
	f.mu.Lock()
	f.launched[tick.Scheduled]++
	f.mu.Unlock()
	code := 0
	_, _, err = f.st.Transition(ctx, p.GPID, pidtable.Start, node, func(q *pidtable.Proc) error {
		q.State, q.Started = pidtable.Running, time.Now()
		return nil
	})
	if err != nil || f.hold {
		return err
	}
	return f.end(ctx, p.GPID, node, code)
}

func (f *fakeRunner) end(ctx context.Context, gpid uint64, node string, code int) error {
	_, _, err := f.st.Transition(ctx, gpid, pidtable.End, node, func(q *pidtable.Proc) error {
		q.State, q.ExitCode, q.Ended = pidtable.Exited, &code, time.Now()
		return nil
	})
	return err
}

func (f *fakeRunner) Stop(ctx context.Context, _ Timer, p pidtable.Proc) error {
	f.mu.Lock()
	f.stops++
	f.mu.Unlock()
	return f.end(ctx, p.GPID, p.Node, 143)
}

// cluster is a real etcd with three Ready nodes and a timer t on it.
func cluster(t *testing.T, spec Spec) (context.Context, *Store, *pidtable.Store, []service.Node) {
	t.Helper()
	c := etcdtest.Client(t)
	st := pidtable.New(c)
	ts := NewStore(c)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	l, err := c.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []service.Node
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := st.RegisterNode(ctx, pidtable.Node{Name: n, Addr: "x", CPUs: 1}); err != nil {
			t.Fatal(err)
		}
		if err := st.PublishStatus(ctx, n, pidtable.NodeStatus{}, l.ID); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, service.Node{Name: n, Ready: true})
	}
	spec.MissAfter, spec.Unit = time.Minute, "t.service"
	tm := Timer{Name: "t", Owner: "alice", Spec: spec, Service: pidtable.ServiceSpec{Argv: []string{"true"}}, Updated: time.Now()}
	if err := ts.Put(ctx, tm, 0); err != nil {
		t.Fatal(err)
	}
	return ctx, ts, st, nodes
}

// lead runs one controller for d.
func lead(ctx context.Context, ts *Store, st *pidtable.Store, nodes []service.Node, r Runner, name string, d time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	ctrl := NewController(Config{Timers: ts, Procs: st, Runner: r, Node: name, Interval: 20 * time.Millisecond, Location: time.UTC,
		Nodes: func(context.Context) ([]service.Node, error) { return nodes, nil }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	_ = ctrl.Lead(ctx, clientv3.Compare(clientv3.CreateRevision("/nonexistent"), "=", 0))
}

// TestExactlyOnceTwoControllers: two controllers lead at once (the worst a
// failover can do: a deposed leader that has not noticed yet) over a real
// etcd, each tick's start delayed so that they race for it: every tick
// runs exactly once, and a tick claimed but not started (its controller
// died between the claim and the start) is started by the next.
func TestExactlyOnceTwoControllers(t *testing.T) {
	ctx, ts, st, nodes := cluster(t, Spec{OnCalendar: []string{"*:*:*"}, Overlap: OverlapQueue})
	// A tick claimed by a controller that died before starting it.
	orphan := time.Now().Truncate(time.Second).Add(-500 * time.Millisecond).UTC()
	claimed, err := ts.Claim(ctx, st, Tick{Timer: "t", Scheduled: orphan, Due: orphan, Manual: true}, nil)
	if err != nil {
		t.Fatal(err)
	}

	fr := &fakeRunner{ts: ts, st: st, launched: map[time.Time]int{}, delay: 100 * time.Millisecond}
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lead(ctx, ts, st, nodes, fr, name, 5*time.Second)
		}()
	}
	wg.Wait()

	ticks, err := ts.Ticks(ctx, "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	started := 0
	for _, tk := range ticks {
		if tk.State != Started {
			t.Errorf("tick %s is %s (%s)", tk.Scheduled.Format(time.TimeOnly), tk.State, tk.Reason)
			continue
		}
		started++
		if n := fr.launched[tk.Scheduled]; n != 1 {
			t.Errorf("tick %s launched %d times", tk.Scheduled.Format(time.TimeOnly), n)
		}
		p, _, err := st.Find(ctx, tk.GPID)
		if err != nil || p.Node != tk.Node {
			t.Errorf("tick %s: gpid %d: %+v, %v", tk.Scheduled.Format(time.TimeOnly), tk.GPID, p, err)
		}
	}
	for s, n := range fr.launched {
		if n != 1 {
			t.Errorf("tick %s launched %d times", s.Format(time.TimeOnly), n)
		}
	}
	if fr.launched[claimed.Scheduled] != 1 {
		t.Errorf("the orphaned claimed tick was not started once: %d", fr.launched[claimed.Scheduled])
	}
	if started < 5 {
		t.Fatalf("%d ticks started in 5 s of a timer every second", started)
	}
	if fr.lost == 0 {
		t.Errorf("the two controllers never raced for a tick's start: the test proves nothing")
	}
	t.Logf("%d ticks, each launched once; %d starts lost the race in their transaction, %d found the tick started", started, fr.lost, fr.refused)
}

// TestOverlap: runs that outlast the period: replace stops the last run
// before each tick's; queue starts a tick's run only once the last ended.
func TestOverlap(t *testing.T) {
	t.Run("replace", func(t *testing.T) {
		ctx, ts, st, nodes := cluster(t, Spec{OnCalendar: []string{"*:*:*"}, Overlap: OverlapReplace})
		fr := &fakeRunner{ts: ts, st: st, launched: map[time.Time]int{}, hold: true}
		lead(ctx, ts, st, nodes, fr, "a", 3500*time.Millisecond)
		ticks, _ := ts.Ticks(ctx, "t", 0)
		running := 0
		for _, tk := range ticks {
			if tk.State != Started {
				t.Errorf("tick %s %s", tk.Scheduled.Format(time.TimeOnly), tk.State)
			}
			if p, _, err := st.Find(ctx, tk.GPID); err == nil && !p.State.Ended() {
				running++
			}
		}
		if len(ticks) < 3 || running != 1 || fr.stops != len(ticks)-1 {
			t.Fatalf("%d ticks, %d runs running, %d stopped; want one running and the others stopped", len(ticks), running, fr.stops)
		}
	})
	t.Run("queue", func(t *testing.T) {
		ctx, ts, st, nodes := cluster(t, Spec{OnCalendar: []string{"*:*:*"}, Overlap: OverlapQueue})
		fr := &fakeRunner{ts: ts, st: st, launched: map[time.Time]int{}, hold: true}
		lead(ctx, ts, st, nodes, fr, "a", 2500*time.Millisecond)
		ticks, _ := ts.Ticks(ctx, "t", 0)
		var started []TickRec
		claimed := 0
		for _, tk := range ticks {
			switch tk.State {
			case Started:
				started = append(started, tk)
			case Claimed:
				claimed++
			}
		}
		if len(started) != 1 || claimed < 1 {
			t.Fatalf("%d started, %d claimed: want one run and the others queued", len(started), claimed)
		}
		// The run ends: the oldest queued tick starts.
		if err := fr.end(ctx, started[0].GPID, started[0].Node, 0); err != nil {
			t.Fatal(err)
		}
		lead(ctx, ts, st, nodes, fr, "a", 300*time.Millisecond)
		ticks, _ = ts.Ticks(ctx, "t", 0)
		n := 0
		for _, tk := range ticks {
			if tk.State == Started {
				n++
			}
		}
		if n != 2 {
			t.Fatalf("%d started after the first run ended, want 2", n)
		}
	})
}

// TestPlaceSpreadsOnePass: 9 timers due at one instant, each with no
// recent run, on 3 idle nodes: Place with Placed after each spreads them
// 3/3/3 (without Placed they all went to node1, the first by name), and a
// constraint still holds.
func TestPlaceSpreadsOnePass(t *testing.T) {
	nodes := []service.Node{{Name: "node1", Ready: true}, {Name: "node2", Ready: true}, {Name: "node3", Ready: true, Labels: map[string]string{"gpu": "1"}}}
	got := map[string]int{}
	for range 9 {
		n, why := Place(Timer{}, nil, nodes)
		if n == "" {
			t.Fatal(why)
		}
		Placed(nodes, n)
		got[n]++
	}
	if got["node1"] != 3 || got["node2"] != 3 || got["node3"] != 3 {
		t.Fatalf("9 runs placed %v, want 3 on each node", got)
	}
	var gpu Timer
	gpu.Service.Constraints = map[string]string{"gpu": "1"}
	if n, _ := Place(gpu, nil, nodes); n != "node3" {
		t.Fatalf("a run wanting gpu=1 placed on %q", n)
	}
}

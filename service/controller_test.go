package service

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/pidtable"
)

// fakeRunner starts replicas as records in etcd (as a node's agent would)
// and stops them by recording their end.
type fakeRunner struct {
	st *pidtable.Store
	mu sync.Mutex
	n  int
}

func (f *fakeRunner) Start(ctx context.Context, svc pidtable.Service, node string) (uint64, error) {
	p, err := f.st.Create(ctx, pidtable.Proc{Node: node, User: svc.Owner, Argv: svc.Spec.Argv, Service: svc.Name, ServiceHash: svc.RunHash})
	if err != nil {
		return 0, err
	}
	_, _, err = f.st.Transition(ctx, p.GPID, pidtable.Start, node, func(q *pidtable.Proc) error {
		q.State, q.Started = pidtable.Running, time.Now()
		return nil
	})
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
	return p.GPID, err
}

func (f *fakeRunner) Stop(ctx context.Context, _ pidtable.Service, p pidtable.Proc) error {
	return f.end(ctx, p, 143)
}

func (f *fakeRunner) end(ctx context.Context, p pidtable.Proc, code int) error {
	_, _, err := f.st.Transition(ctx, p.GPID, pidtable.End, p.Node, func(q *pidtable.Proc) error {
		q.State, q.ExitCode = pidtable.Exited, &code
		return nil
	})
	return err
}

func newStore(t *testing.T) *pidtable.Store {
	t.Helper()
	return pidtable.New(etcdtest.Client(t))
}

// TestControllerEtcd: a controller on a real etcd keeps 3 replicas across a
// crash, scales, and a second controller (a new leader) carries on from the
// status the first wrote.
func TestControllerEtcd(t *testing.T) {
	st := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var up sync.Map
	for _, n := range []string{"n1", "n2", "n3"} {
		l, err := st.Client().Grant(ctx, 30)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PublishStatus(ctx, n, pidtable.NodeStatus{}, l.ID); err != nil {
			t.Fatal(err)
		}
		up.Store(n, true)
	}
	nodesFn := func(context.Context) ([]Node, error) {
		var out []Node
		for _, n := range []string{"n1", "n2", "n3"} {
			_, ok := up.Load(n)
			out = append(out, Node{Name: n, Ready: ok})
		}
		return out, nil
	}
	spec := pidtable.ServiceSpec{Argv: []string{"/bin/sleep", "1"}, Replicas: 3, Spread: pidtable.SpreadNode, Restart: pidtable.RestartAlways}
	Defaults(&spec)
	svc := pidtable.Service{Name: "web", Owner: "alice", Spec: spec, Hash: Hash(spec), RunHash: RunHash(spec), Generation: 1}
	if err := st.PutService(ctx, svc, 0); err != nil {
		t.Fatal(err)
	}
	run := &fakeRunner{st: st}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lead := func(ctx context.Context) {
		procs := st.NewProcCache(func(p pidtable.Proc) bool { return p.Service != "" }, log)
		svcs := st.NewServiceCache(log)
		go procs.Run(ctx)
		go svcs.Run(ctx)
		c := New(Config{Store: st, Procs: procs, Services: svcs, Nodes: nodesFn, Runner: run, Log: log, Interval: 20 * time.Millisecond})
		_ = c.Lead(ctx, clientv3.Compare(clientv3.CreateRevision("/nonexistent"), "=", 0))
	}
	live := func() []pidtable.Proc {
		ps, _ := st.Procs(ctx, "")
		var out []pidtable.Proc
		for _, p := range ps {
			if !p.State.Ended() {
				out = append(out, p)
			}
		}
		return out
	}
	waitFor := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !f(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 10s (live %v)", what, live())
			}
		}
	}
	term1, stop1 := context.WithCancel(ctx)
	go lead(term1)
	waitFor("3 replicas", func() bool { return len(live()) == 3 })
	// A crash: restarted, counted.
	_ = run.end(ctx, live()[0], 1)
	waitFor("restart", func() bool {
		sts, _ := st.ServiceStatuses(ctx)
		return len(live()) == 3 && sts["web"].Restarts == 1
	})
	// The leader goes; a new one carries on without double-counting.
	stop1()
	time.Sleep(100 * time.Millisecond)
	term2, stop2 := context.WithCancel(ctx)
	defer stop2()
	go lead(term2)
	// Node death: n3 goes down; Spread=node on 2 nodes: a shortfall.
	up.Delete("n3")
	waitFor("degraded", func() bool {
		sts, _ := st.ServiceStatuses(ctx)
		return sts["web"].State == StateDegraded && sts["web"].Restarts == 1
	})
	// Scale down to 1: exact.
	svc, rev, _ := st.GetService(ctx, "web")
	svc.Spec.Replicas, svc.Generation = 1, svc.Generation+1
	if err := st.PutService(ctx, svc, rev); err != nil {
		t.Fatal(err)
	}
	waitFor("1 replica on a live node", func() bool {
		n := 0
		for _, p := range live() {
			if p.Node != "n3" {
				n++
			}
		}
		return n == 1
	})
}

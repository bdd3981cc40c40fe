package balancer

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/pidtable"
)

// TestElection runs two candidates on a real (embedded) etcd: one leads and
// publishes its status; when its lease is lost the other leads, and the first
// campaigns again on its agent's new session. Both return once their context
// ends, leaving no goroutine behind (TestMain).
func TestElection(t *testing.T) {
	ctx := context.Background()
	ec := etcdtest.Client(t)
	store := pidtable.New(ec)
	newSession := func() *concurrency.Session {
		s, err := concurrency.NewSession(ec, concurrency.WithTTL(5))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	run, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() }) // before etcd closes
	rec := &recorder{}
	sessions := map[string]*atomic.Pointer[concurrency.Session]{}
	for _, name := range []string{"node2", "node3"} {
		p := &atomic.Pointer[concurrency.Session]{}
		p.Store(newSession())
		sessions[name] = p
		b := New(Config{
			Name: name, Table: store, Mover: &fakeMover{}, Session: p.Load, Record: rec.add,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)), MoveTimeout: time.Minute,
		})
		wg.Add(1)
		go func() { defer wg.Done(); b.Run(run) }()
		if name == "node2" { // node2 campaigns first: it leads
			waitFor(t, "node2's leadership", func() bool { return len(rec.of(pidtable.EventLeader)) == 1 })
		}
	}
	leaderIs := func(want string) func() bool {
		return func() bool {
			_, st, ok, leader, err := store.BalancerState(ctx)
			// RoundTook: the round's own duration, published with it.
			return err == nil && ok && leader == want && st.Leader == want && st.Enabled && st.RoundTook > 0
		}
	}
	waitFor(t, "node2's status", leaderIs("node2"))

	// node2's lease lost: node3 leads; node2's agent makes a new session.
	old := sessions["node2"].Load()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node3's leadership", leaderIs("node3"))
	sessions["node2"].Store(newSession())
	if n := len(rec.of(pidtable.EventLeader)); n != 2 {
		t.Errorf("%d leader events, want 2", n)
	}
	stop()
	wg.Wait()
	for _, p := range sessions {
		p.Load().Close()
	}
}

package pidtable

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// TestClusterCache: the view follows nodes, statuses and the records of
// jobs that are not ended, by watch: a node that joins, its status, a job
// that starts and one that ends, a node whose lease is revoked (NotReady);
// its informers stop once unused and start again at the next use.
func TestClusterCache(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	lease := makeReady(t, s, "n1")
	c := s.NewClusterCache(ctx, true, slog.Default())
	c.idleStop = 300 * time.Millisecond
	defer c.Wait()
	eventually := func(what string, ok func(*Snapshot) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			snap, err := c.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ok(snap) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the view never showed it: %+v", what, snap)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	eventually("n1 ready", func(s *Snapshot) bool { return s.Ready("n1") && len(s.Nodes) == 1 })
	p, err := s.Create(ctx, Proc{Node: "n1", State: Running})
	if err != nil {
		t.Fatal(err)
	}
	q, err := s.Create(ctx, Proc{Node: "n1", State: Running})
	if err != nil {
		t.Fatal(err)
	}
	eventually("two jobs", func(s *Snapshot) bool { return len(s.Procs) == 2 })
	// The admin's settings are merged in, as Store.NodesSnapshot does.
	if _, _, err := s.UpdateNodeConfig(ctx, "n1", func(nc *NodeConfig) (bool, error) {
		nc.Cordoned = true
		nc.SetLabel("zone", "a", false)
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually("n1 cordoned and labelled", func(s *Snapshot) bool {
		n, ok := s.Node("n1")
		return ok && n.Cordoned && n.Labels["zone"] == "a"
	})
	if _, _, err := s.Transition(ctx, q.GPID, End, "n1", func(r *Proc) error {
		code := 0
		r.State, r.ExitCode = Exited, &code
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually("the ended job left", func(s *Snapshot) bool { return len(s.Procs) == 1 && s.Procs[0].GPID == p.GPID })
	makeReady(t, s, "n2")
	eventually("n2 joined", func(s *Snapshot) bool { return s.Ready("n2") && len(s.Nodes) == 2 })
	if _, err := s.c.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	eventually("n1 NotReady", func(s *Snapshot) bool { return !s.Ready("n1") && s.Ready("n2") })
	// Unused, it stops; used again, it lists afresh.
	deadline := time.Now().Add(5 * time.Second)
	for c.Running() {
		if time.Now().After(deadline) {
			t.Fatal("the informers still run after the idle time")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Delete(ctx, p.GPID, "n1"); err != nil {
		t.Fatal(err)
	}
	snap, err := c.Snapshot(ctx)
	if err != nil || len(snap.Procs) != 0 || !c.Running() {
		t.Fatalf("after a restart: %d procs (%v), running %v", len(snap.Procs), err, c.Running())
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if c2 := s.NewClusterCache(cctx, false, slog.Default()); c2 != nil {
		if _, err := c2.Snapshot(cctx); err == nil {
			t.Error("a snapshot of a view whose life ended did not fail")
		}
		c2.Wait()
	}
}

// TestInformerChanged: a waiter on Changed is woken by the next change.
func TestInformerChanged(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	s := newStore(t)
	makeReady(t, s, "n1")
	c := s.NewProcCache(nil, slog.Default())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	<-c.Synced()
	ch := c.Changed()
	if _, err := s.Create(ctx, Proc{Node: "n1", State: Running}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed not closed by a new record")
	}
	if c.Len() != 1 {
		t.Fatalf("%d records cached, want 1", c.Len())
	}
}

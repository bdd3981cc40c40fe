package pidtable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// freeURL returns an http URL on a free loopback port.
func freeURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// newStore starts a real etcd in-process and returns a Store on it.
func newStore(t testing.TB) *Store {
	t.Helper()
	ctx := context.Background()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Name: "test", Dir: t.TempDir(), ClientURL: freeURL(t), PeerURL: freeURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.e.Clients[0].Addr().String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return New(c)
}

func makeReady(t testing.TB, s *Store, node string) clientv3.LeaseID {
	t.Helper()
	ctx := context.Background()
	l, err := s.c.Grant(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterNode(ctx, Node{Name: node, Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PublishStatus(ctx, node, NodeStatus{Instance: "i"}, l.ID); err != nil {
		t.Fatal(err)
	}
	return l.ID
}

func TestCreateAllocatesUniqueGPIDsConcurrently(t *testing.T) {
	s := newStore(t)
	makeReady(t, s, "n1")
	makeReady(t, s, "n2")
	const workers, each = 8, 25
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				p, err := s.Create(context.Background(), Proc{Node: fmt.Sprintf("n%d", w%2+1), Argv: []string{"true"}})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if seen[p.GPID] {
					errs <- fmt.Errorf("gpid %d handed out twice", p.GPID)
				}
				seen[p.GPID] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != workers*each {
		t.Fatalf("allocated %d gpids, want %d", len(seen), workers*each)
	}
	procs, err := s.Procs(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != workers*each {
		t.Fatalf("%d records, want %d", len(procs), workers*each)
	}
	for i := 1; i < len(procs); i++ {
		if procs[i-1].GPID >= procs[i].GPID {
			t.Fatalf("procs not sorted by gpid at %d: %d >= %d", i, procs[i-1].GPID, procs[i].GPID)
		}
	}
	// Each node reserved blocks of gpidBlockSize: one compare-and-swap on the
	// counter per block, not per spawn.
	perNode := workers * each / 2
	blocks := 2 * ((perNode + gpidBlockSize - 1) / gpidBlockSize)
	if s.gpids.reservations != blocks {
		t.Errorf("%d blocks reserved for %d spawns on 2 nodes, want %d", s.gpids.reservations, workers*each, blocks)
	}
	if procs[0].GPID < 1 || procs[len(procs)-1].GPID >= uint64(1+blocks*gpidBlockSize) {
		t.Fatalf("gpids span %d..%d, want within the %d blocks reserved (1..%d)", procs[0].GPID, procs[len(procs)-1].GPID, blocks, blocks*gpidBlockSize)
	}
}

// TestGPIDBlocksUniqueAcrossStores: agents (a Store each) spawning at once
// on different nodes never hand out the same gpid.
func TestGPIDBlocksUniqueAcrossStores(t *testing.T) {
	s := newStore(t)
	const nodes, each = 4, 40
	var mu sync.Mutex
	seen := map[uint64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, nodes)
	for n := range nodes {
		node := fmt.Sprintf("n%d", n)
		makeReady(t, s, node)
		agent := New(s.c) // another agent's Store on the same etcd
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				p, err := agent.Create(context.Background(), Proc{Node: node, Argv: []string{"true"}})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if other, dup := seen[p.GPID]; dup {
					errs <- fmt.Errorf("gpid %d handed out to %s and %s", p.GPID, other, node)
				}
				seen[p.GPID] = node
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != nodes*each {
		t.Fatalf("%d gpids, want %d", len(seen), nodes*each)
	}
}

func TestCreateOnNotReadyNodeLeavesNothing(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	_, err := s.Create(ctx, Proc{Node: "ghost", Argv: []string{"true"}})
	if !errors.Is(err, ErrNodeNotReady) {
		t.Fatalf("err=%v, want ErrNodeNotReady", err)
	}
	procs, _ := s.Procs(ctx, "")
	resp, _ := s.c.Get(ctx, nextGPIDKey)
	if len(procs) != 0 || len(resp.Kvs) != 0 {
		t.Fatalf("failed create left state: %d procs, %d counter keys", len(procs), len(resp.Kvs))
	}
}

func TestGPIDsNeverReusedAfterDelete(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	a, _ := s.Create(ctx, Proc{Node: "n1"})
	if err := s.Delete(ctx, a.GPID, "n1"); err != nil {
		t.Fatal(err)
	}
	b, err := s.Create(ctx, Proc{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if b.GPID <= a.GPID {
		t.Fatalf("gpid %d reused or went back (first was %d)", b.GPID, a.GPID)
	}
	if _, _, err := s.Get(ctx, a.GPID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted record: err=%v, want ErrNotFound", err)
	}
}

func TestDeleteRefusesOtherOwner(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	p, _ := s.Create(ctx, Proc{Node: "n1"})
	if err := s.Delete(ctx, p.GPID, "n2"); err == nil {
		t.Fatal("n2 deleted a record owned by n1")
	}
}

func TestUpdateIsCompareAndSwap(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	p, _ := s.Create(ctx, Proc{Node: "n1"})
	// Many concurrent increments of Epoch must all land: no lost update.
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Update(ctx, p.GPID, func(p *Proc) error { p.Argv = append(p.Argv, "x"); return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, _, _ := s.Get(ctx, p.GPID)
	if len(got.Argv) != 20 {
		t.Fatalf("%d arguments after 20 concurrent appends, want 20", len(got.Argv))
	}
	abort := errors.New("abort")
	if _, err := s.Update(ctx, p.GPID, func(*Proc) error { return abort }); !errors.Is(err, abort) {
		t.Fatalf("err=%v, want the callback's error", err)
	}
}

func TestWaitEndedAndSnapshot(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	makeReady(t, s, "n1")
	p, _ := s.Create(ctx, Proc{Node: "n1", State: Running})
	done := make(chan Proc, 1)
	go func() {
		got, err := s.WaitEnded(ctx, p.GPID)
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	time.Sleep(100 * time.Millisecond)
	code := 3
	if _, _, err := s.Transition(ctx, p.GPID, End, "n1", func(p *Proc) error { p.State, p.ExitCode = Exited, &code; return nil }); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.State != Exited || got.ExitCode == nil || *got.ExitCode != 3 {
		t.Fatalf("WaitEnded returned %+v", got)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Procs) != 1 || len(snap.Nodes) != 1 || !snap.Ready("n1") || snap.Ready("n2") {
		t.Fatalf("snapshot: %+v", snap)
	}
	ns, err := s.NodesSnapshot(ctx)
	if err != nil || ns.Procs != nil || len(ns.Nodes) != 1 || !ns.Ready("n1") {
		t.Fatalf("nodes snapshot: %+v, %v", ns, err)
	}
}

func TestStatusDisappearsWithLease(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	lease := makeReady(t, s, "n1")
	if _, err := s.c.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, err := s.Status(ctx, "n1"); err != nil || ok {
		t.Fatalf("status after revoke: ok=%v err=%v", ok, err)
	}
	if _, err := s.Create(ctx, Proc{Node: "n1"}); !errors.Is(err, ErrNodeNotReady) {
		t.Fatalf("create on node with revoked lease: %v", err)
	}
}

func TestTransitionAtIsGuardedByRevision(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	p, _ := s.Create(ctx, Proc{Node: "n1", State: Running})
	rev := claimMigration(t, s, p.GPID)
	commit := func(p *Proc) error { p.State, p.Node, p.Epoch = Running, "n2", p.Epoch+1; return nil }
	_, newRev, err := s.TransitionAt(ctx, p.GPID, rev, MigrationCommit, "n1", commit)
	if err != nil || newRev <= rev {
		t.Fatalf("commit at the right revision: rev %d -> %d, %v", rev, newRev, err)
	}
	// A stale writer (the old revision) must fail and change nothing.
	if _, _, err := s.TransitionAt(ctx, p.GPID, rev, MigrationRelease, "n1", func(p *Proc) error { p.State = Running; return nil }); !errors.Is(err, ErrChanged) {
		t.Fatalf("stale release: %v, want ErrChanged", err)
	}
	got, gotRev, _ := s.Get(ctx, p.GPID)
	if got.Node != "n2" || got.Epoch != 2 || got.Migration != nil || gotRev != newRev {
		t.Fatalf("record after stale write: %+v at %d", got, gotRev)
	}
}

// TestProcCacheFollowsTheTable: the cache lists, then follows creates,
// transitions (a record that leaves the filter goes), deletes, and lists
// again after its watch is compacted away.
func TestProcCacheFollowsTheTable(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	makeReady(t, s, "n1")
	makeReady(t, s, "n2")
	before, _ := s.Create(ctx, Proc{Node: "n1", State: Running})
	c := s.NewProcCache(func(p Proc) bool { return p.Node == "n1" }, slog.Default())
	go c.Run(ctx)
	<-c.Synced()
	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				procs, rev := c.Procs()
				t.Fatalf("%s: cache at %d holds %+v", what, rev, procs)
			}
		}
	}
	has := func(gpid uint64, st State) func() bool {
		return func() bool { p, _, ok := c.Get(gpid); return ok && p.State == st }
	}
	wait("listed", has(before.GPID, Running))
	p, _ := s.Create(ctx, Proc{Node: "n1", State: Running})
	other, _ := s.Create(ctx, Proc{Node: "n2", State: Running})
	wait("created", has(p.GPID, Running))
	code := 0
	if _, _, err := s.Transition(ctx, p.GPID, End, "n1", func(p *Proc) error { p.State, p.ExitCode = Exited, &code; return nil }); err != nil {
		t.Fatal(err)
	}
	wait("ended", has(p.GPID, Exited))
	if _, _, ok := c.Get(other.GPID); ok {
		t.Fatal("the cache holds another node's record")
	}
	// Moved away: leaves the filter.
	claimMigration(t, s, before.GPID)
	if _, _, err := s.Transition(ctx, before.GPID, MigrationCommit, "n1", func(p *Proc) error {
		p.State, p.Node, p.Epoch = Running, "n2", p.Epoch+1
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wait("moved away", func() bool { _, _, ok := c.Get(before.GPID); return !ok })
	if err := s.Delete(ctx, p.GPID, "n1"); err != nil {
		t.Fatal(err)
	}
	wait("deleted", func() bool { _, _, ok := c.Get(p.GPID); return !ok })
	// A watch from a revision compacted away fails (Run then lists again);
	// the running cache, whose watch is past it, goes on.
	resp, err := s.c.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	q, _ := s.Create(ctx, Proc{Node: "n1", State: Running})
	if _, err := s.c.Compact(ctx, resp.Header.Revision+1); err != nil {
		t.Fatal(err)
	}
	wait("created after a compaction", has(q.GPID, Running))
	stale := s.NewProcCache(nil, slog.Default())
	stale.inf.rev = resp.Header.Revision - 1
	if err := stale.inf.watch(ctx); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("watch from a compacted revision: %v", err)
	}
}

// claimMigration claims gpid, running on n1, for a migration "m" to n2, as a
// source agent would, and returns the record's new revision.
func claimMigration(t *testing.T, s *Store, gpid uint64) int64 {
	t.Helper()
	_, rev, err := s.Transition(context.Background(), gpid, MigrationClaim, "n1", func(p *Proc) error {
		p.State, p.Migration = Migrating, &Migration{ID: "m", Target: "n2"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

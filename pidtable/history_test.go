package pidtable

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// endedJob creates a job on node and ends it with code; it returns the record.
func endedJob(t *testing.T, s *Store, node string, code int) Proc {
	t.Helper()
	ctx := context.Background()
	p, err := s.Create(ctx, Proc{Node: node, User: "alice", Argv: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Transition(ctx, p.GPID, Start, node, func(p *Proc) error { p.State = Running; return nil }); err != nil {
		t.Fatal(err)
	}
	p, _, err = s.Transition(ctx, p.GPID, End, node, func(p *Proc) error { p.State, p.ExitCode = Exited, &code; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestArchive: the gc's Delete of an ended record moves it to the history
// in one transaction: gone from the live table, found by Find, WaitEnded
// (at once) and a listing with History, with its exit status.
func TestArchive(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	p := endedJob(t, s, "n1", 3)
	if err := s.Delete(ctx, p.GPID, "n1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, p.GPID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("live record after archive: %v", err)
	}
	got, _, err := s.Find(ctx, p.GPID)
	if err != nil || got.Archived.IsZero() || got.ExitCode == nil || *got.ExitCode != 3 || got.State != Exited {
		t.Fatalf("Find: %+v, %v; want the archived record, exit 3", got, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	w, err := s.WaitEnded(wctx, p.GPID)
	if err != nil || *w.ExitCode != 3 {
		t.Fatalf("WaitEnded on an archived gpid: %+v, %v", w, err)
	}
	var live, all []uint64
	if _, err := s.ListProcs(ctx, ListOptions{}, func(p Proc, _ int64) error { live = append(live, p.GPID); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListProcs(ctx, ListOptions{History: true}, func(p Proc, _ int64) error { all = append(all, p.GPID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(live) != 0 || len(all) != 1 || all[0] != p.GPID {
		t.Fatalf("listed live %v, with history %v; want none and [%d]", live, all, p.GPID)
	}
	resp, err := s.c.Get(ctx, HistoryKey(p.GPID))
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("history key: %v, %v; want one key on a lease", resp, err)
	}
}

// TestArchiveWaitWakes: a waiter on a running job is answered when the job
// ends, and one that starts after the archive is answered at once.
func TestArchiveWaitWakes(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	p, err := s.Create(ctx, Proc{Node: "n1", User: "alice", Argv: []string{"sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Proc, 1)
	go func() {
		w, _ := s.WaitEnded(ctx, p.GPID)
		done <- w
	}()
	code := 0
	if _, _, err := s.Transition(ctx, p.GPID, End, "n1", func(p *Proc) error { p.State, p.ExitCode = Exited, &code; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, p.GPID, "n1"); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-done:
		if w.State != Exited {
			t.Fatalf("waiter got %+v", w)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken")
	}
}

// TestHistoryLeaseExpires: an archived record goes when its lease expires.
func TestHistoryLeaseExpires(t *testing.T) {
	s := newStore(t)
	s.history.keep = time.Second
	ctx := context.Background()
	makeReady(t, s, "n1")
	p := endedJob(t, s, "n1", 0)
	if err := s.Delete(ctx, p.GPID, "n1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, _, err := s.Find(ctx, p.GPID)
		if errors.Is(err, ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("archived record still there after its lease: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestArchiveNeverRunning: a record of a job that has not ended is never
// archived, by ArchiveAt or by the orphan sweep.
func TestArchiveNeverRunning(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	l := makeReady(t, s, "n1")
	p, err := s.Create(ctx, Proc{Node: "n1", User: "alice", Argv: []string{"sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	_, rev, err := s.Transition(ctx, p.GPID, Start, "n1", func(p *Proc) error { p.State = Running; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ArchiveAt(ctx, p.GPID, rev); !errors.Is(err, ErrNotEnded) {
		t.Fatalf("ArchiveAt of a running record: %v, want ErrNotEnded", err)
	}
	if _, err := s.c.Revoke(ctx, l); err != nil { // n1 is gone
		t.Fatal(err)
	}
	if n, err := s.ArchiveOrphans(ctx, time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("ArchiveOrphans: %d, %v; want none archived", n, err)
	}
	if got, _, err := s.Get(ctx, p.GPID); err != nil || got.State != Running {
		t.Fatalf("running record: %+v, %v", got, err)
	}
}

// TestArchiveGuardedByRevision: a record that changed after it was read is
// not archived.
func TestArchiveGuardedByRevision(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	p := endedJob(t, s, "n1", 1)
	_, rev, err := s.Get(ctx, p.GPID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, p.GPID, func(p *Proc) error { p.Error = "edited"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ArchiveAt(ctx, p.GPID, rev); !errors.Is(err, ErrChanged) {
		t.Fatalf("ArchiveAt at an old revision: %v, want ErrChanged", err)
	}
	if _, _, err := s.Get(ctx, p.GPID); err != nil {
		t.Fatalf("the record left the live table: %v", err)
	}
	// The archive's own transaction is guarded too: a write between its
	// read and its commit fails it.
	got, rev, _ := s.Get(ctx, p.GPID)
	raw, _ := json.Marshal(got)
	if _, err := s.Update(ctx, p.GPID, func(p *Proc) error { p.Error = "again"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.archive(ctx, got, raw, rev); !errors.Is(err, ErrChanged) {
		t.Fatalf("archive racing a write: %v, want ErrChanged", err)
	}
}

// TestArchiveOrphans: ended records of nodes that are gone are archived once
// they ended before the cutoff; those of live nodes are their agents' to
// archive.
func TestArchiveOrphans(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "live")
	dead := makeReady(t, s, "dead")
	old := endedJob(t, s, "dead", 0)
	oldLive := endedJob(t, s, "live", 0)
	if _, err := s.c.Revoke(ctx, dead); err != nil {
		t.Fatal(err)
	}
	// A record on a node name that never registered (as the benchmark writes).
	code := 0
	ghost := Proc{GPID: 900, Node: "ghost", State: Exited, ExitCode: &code, Ended: time.Now().Add(-time.Hour)}
	val, _ := json.Marshal(ghost)
	if _, err := s.c.Put(ctx, ProcKey(900), string(val)); err != nil {
		t.Fatal(err)
	}
	n, err := s.ArchiveOrphans(ctx, time.Now().Add(-time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("ArchiveOrphans with a cutoff before the dead node's job ended: %d, %v; want the ghost only", n, err)
	}
	n, err = s.ArchiveOrphans(ctx, time.Now())
	if err != nil || n != 1 {
		t.Fatalf("ArchiveOrphans: %d, %v; want the dead node's job", n, err)
	}
	for _, g := range []uint64{old.GPID, 900} {
		if p, _, err := s.Find(ctx, g); err != nil || p.Archived.IsZero() {
			t.Fatalf("gpid %d: %+v, %v; want archived", g, p, err)
		}
	}
	if p, _, err := s.Get(ctx, oldLive.GPID); err != nil || !p.Archived.IsZero() {
		t.Fatalf("a live node's ended job: %+v, %v; want it in the live table", p, err)
	}
}

// TestRecreateDropsHistory: a checkpoint restored under an archived gpid
// brings the gpid back to the live table and removes the archived copy.
func TestRecreateDropsHistory(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	p := endedJob(t, s, "n1", 0)
	if err := s.Delete(ctx, p.GPID, "n1"); err != nil {
		t.Fatal(err)
	}
	q := p
	q.State, q.Epoch, q.ExitCode, q.RestoredFrom = Starting, p.Epoch+1, nil, "ck"
	if _, err := s.Recreate(ctx, q); err != nil {
		t.Fatal(err)
	}
	resp, err := s.c.Get(ctx, HistoryKey(p.GPID), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("history copy after Recreate: %v, %v", resp, err)
	}
	if got, _, err := s.Find(ctx, p.GPID); err != nil || got.State != Starting {
		t.Fatalf("Find: %+v, %v", got, err)
	}
}

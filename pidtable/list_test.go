package pidtable

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// putRecords writes records for gpids 1..n straight into etcd (as the scale
// benchmark does), every seventh into the history; it returns their keys'
// gpids in order.
func putRecords(t *testing.T, s *Store, n int) {
	t.Helper()
	ctx := context.Background()
	var ops []clientv3.Op
	flush := func() {
		if _, err := s.c.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
		ops = ops[:0]
	}
	for g := 1; g <= n; g++ {
		p := Proc{GPID: uint64(g), Node: fmt.Sprintf("n%d", g%10), User: fmt.Sprintf("u%d", g%3), State: Running, Argv: []string{"sleep"}}
		key := ProcKey(p.GPID)
		if g%7 == 0 {
			code := 0
			p.State, p.ExitCode, p.Archived, key = Exited, &code, time.Now(), HistoryKey(p.GPID)
		}
		val, _ := json.Marshal(p)
		ops = append(ops, clientv3.OpPut(key, string(val)))
		if len(ops) == 100 {
			flush()
		}
	}
	if len(ops) > 0 {
		flush()
	}
}

// TestListProcsPaged: a listing reads in pages at one revision: every record
// once, in gpid order, the history merged in; writes during the listing are
// not seen; After resumes; ErrStopList stops.
func TestListProcsPaged(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	const n = 1234
	putRecords(t, s, n)
	var got []uint64
	wrote := false
	rev, err := s.ListProcs(ctx, ListOptions{History: true, PageSize: 100}, func(p Proc, _ int64) error {
		if !wrote {
			// Between pages: a new record, one deleted, one archived.
			wrote = true
			val, _ := json.Marshal(Proc{GPID: 5000, Node: "x", State: Running})
			if _, err := s.c.Put(ctx, ProcKey(5000), string(val)); err != nil {
				return err
			}
			if _, err := s.c.Delete(ctx, ProcKey(600)); err != nil {
				return err
			}
		}
		got = append(got, p.GPID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("listed %d records, want %d (at revision %d)", len(got), n, rev)
	}
	for i, g := range got {
		if g != uint64(i+1) {
			t.Fatalf("record %d is gpid %d, want %d: not in order, or one missed", i, g, i+1)
		}
	}
	live := 0
	if _, err := s.ListProcs(ctx, ListOptions{After: 1000, PageSize: 7}, func(p Proc, _ int64) error {
		if p.GPID <= 1000 || !p.Archived.IsZero() {
			t.Fatalf("After 1000 listed %+v", p)
		}
		live++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// 1001..1234 without the 34 archived (multiples of 7), plus 5000.
	if want := 234 - 34 + 1; live != want {
		t.Fatalf("live records after 1000: %d, want %d", live, want)
	}
	count := 0
	if _, err := s.ListProcs(ctx, ListOptions{PageSize: 10}, func(Proc, int64) error {
		count++
		if count == 25 {
			return ErrStopList
		}
		return nil
	}); err != nil || count != 25 {
		t.Fatalf("stopped listing: %d, %v", count, err)
	}
}

// TestListProcsBadRecord: an undecodable record fails the listing, or is
// reported and skipped with Bad.
func TestListProcsBadRecord(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	putRecords(t, s, 20)
	if _, err := s.c.Put(ctx, ProcKey(10), "{not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListProcs(ctx, ListOptions{}, func(Proc, int64) error { return nil }); err == nil {
		t.Fatal("a bad record listed without error")
	}
	var bad []string
	n := 0
	if _, err := s.ListProcs(ctx, ListOptions{Bad: func(k string, _ error) { bad = append(bad, k) }}, func(Proc, int64) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || bad[0] != ProcKey(10) || n != 20-2-1 {
		t.Fatalf("bad %v, listed %d", bad, n)
	}
}

// TestListProcsCompacted: a listing whose revision was compacted away goes
// on at the newest one, and so does the paged read of a server without
// RangeStream.
func TestListProcsCompacted(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	putRecords(t, s, 50)
	resp, err := s.c.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	old := resp.Header.Revision
	putRecords(t, s, 60)
	resp, _ = s.c.Get(ctx, "x")
	if _, err := s.c.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	n := 0
	rev, err := s.ListProcs(ctx, ListOptions{Rev: old}, func(Proc, int64) error { n++; return nil })
	if err != nil || n != 60-8 || rev <= old {
		t.Fatalf("listing at a compacted revision: %d records at revision %d (asked %d), %v", n, rev, old, err)
	}
	r := resp.Header.Revision
	pg := &pager{c: s.c, pfx: procsPrefix, next: procsPrefix, size: 7, rev: &r, paged: true}
	n = 0
	for {
		kv, err := pg.peek(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if kv == nil {
			break
		}
		pg.pop()
		n++
	}
	if n != 60-8 {
		t.Fatalf("paged read: %d records, want %d", n, 60-8)
	}
}

package pidtable

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// eventsAt returns the events of gpid and the mod revision of each.
func eventsAt(t *testing.T, s *Store, gpid uint64) ([]Event, []int64) {
	t.Helper()
	resp, err := s.c.Get(context.Background(), eventsPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var evs []Event
	var revs []int64
	for _, kv := range resp.Kvs {
		var ev Event
		if err := decode(kv.Value, &ev, false); err != nil {
			t.Fatal(err)
		}
		if ev.GPID == gpid {
			evs = append(evs, ev)
			revs = append(revs, kv.ModRevision)
		}
	}
	return evs, revs
}

// TestLifecycleEventsInTheRecordsTransaction: each change of a job's record
// that is a lifecycle event writes it in the same etcd transaction (the same
// revision as the record), with its fields, on a lease of about EventTTL.
func TestLifecycleEventsInTheRecordsTransaction(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	makeReady(t, s, "n2")
	p, err := s.Create(ctx, Proc{Node: "n1", User: "alice", Argv: []string{"sleep", "60"}})
	if err != nil {
		t.Fatal(err)
	}
	if evs, _ := eventsAt(t, s, p.GPID); len(evs) != 0 {
		t.Fatalf("a created record (not yet running) wrote events: %+v", evs)
	}
	step := func(tr Transition, by string, fn func(*Proc) error) int64 {
		t.Helper()
		_, rev, err := s.Transition(ctx, p.GPID, tr, by, fn)
		if err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
		return rev
	}
	var revs []int64
	revs = append(revs, step(Start, "n1", func(q *Proc) error { q.State, q.PID = Running, 42; return nil }))
	revs = append(revs, step(Edit, "n1", func(q *Proc) error { q.CPUs = 1; return nil })) // no event
	revs = append(revs, step(MigrationClaim, "n1", func(q *Proc) error {
		q.State, q.Migration = Migrating, &Migration{ID: "m1", Target: "n2", Started: time.Now()}
		return nil
	}))
	revs = append(revs, step(MigrationRelease, "n1", func(q *Proc) error {
		q.State, q.Migration, q.MigrationError = Running, nil, "target refused"
		return nil
	}))
	revs = append(revs, step(MigrationClaim, "n1", func(q *Proc) error {
		q.State, q.Migration = Migrating, &Migration{ID: "m2", Target: "n2", Started: time.Now()}
		return nil
	}))
	revs = append(revs, step(MigrationCommit, "n1", func(q *Proc) error {
		q.State, q.Node, q.Epoch, q.Migration = Running, "n2", q.Epoch+1, nil
		return nil
	}))
	code := 3
	revs = append(revs, step(End, "n2", func(q *Proc) error {
		q.State, q.ExitCode, q.Ended = Exited, &code, time.Now()
		return nil
	}))

	evs, evRevs := eventsAt(t, s, p.GPID)
	var got []string
	for _, ev := range evs {
		got = append(got, strings.TrimSuffix(ev.Kind+"/"+ev.Phase, "/"))
	}
	want := "run migrate/started migrate/rolledback migrate/started exit"
	if strings.Join(got, " ") != want {
		t.Fatalf("events: %q, want %q", strings.Join(got, " "), want)
	}
	recRevs := []int64{revs[0], revs[2], revs[3], revs[4], revs[6]}
	for i, ev := range evs {
		if evRevs[i] != recRevs[i] {
			t.Errorf("%s %s at revision %d, its record change at %d: not one transaction", ev.Kind, ev.Phase, evRevs[i], recRevs[i])
		}
		if ev.User != "alice" || ev.ID == "" || ev.Time.IsZero() {
			t.Errorf("%s: user %q id %q time %v; want alice, an id and a time", ev.Kind, ev.User, ev.ID, ev.Time)
		}
	}
	if ev := evs[0]; ev.Command != "sleep 60" || ev.Node != "n1" || ev.To != "n1" {
		t.Errorf("run: %+v", ev)
	}
	if ev := evs[2]; ev.Reason != "target refused" || ev.From != "n1" || ev.To != "n2" {
		t.Errorf("rolledback: %+v", ev)
	}
	if ev := evs[4]; ev.ExitCode == nil || *ev.ExitCode != 3 || ev.Signal != "" || ev.Node != "n2" {
		t.Errorf("exit: %+v", ev)
	}

	// On a lease of about EventTTL.
	resp, err := s.c.Get(ctx, eventKey(evs[0]))
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("event key %s: %+v, %v; want it on a lease", evs[0].ID, resp, err)
	}
	ttl, err := s.c.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || time.Duration(ttl.TTL)*time.Second < EventTTL-time.Minute || time.Duration(ttl.TTL)*time.Second > EventTTL+EventTTL/24+time.Minute {
		t.Fatalf("event lease TTL %d s, %v; want about %s", ttl.TTL, err, EventTTL)
	}

	// A lease revoked under the store (etcd restored, say): the next
	// change takes a new one, and the record is written all the same.
	if _, err := s.c.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	q, err := s.Create(ctx, Proc{Node: "n1", User: "bob", Argv: []string{"false"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Transition(ctx, q.GPID, Start, "n1", func(x *Proc) error { x.State = Running; return nil }); err != nil {
		t.Fatalf("start with the event lease revoked: %v", err)
	}
	if evs, _ := eventsAt(t, s, q.GPID); len(evs) != 1 || evs[0].Kind != EventRun {
		t.Fatalf("events after the lease was revoked: %+v", evs)
	}
}

// TestExitBySignalAndLost: an exit by signal names it; a lost job says why.
func TestExitBySignalAndLost(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	for _, c := range []struct {
		state  State
		code   int
		kind   string
		signal string
	}{{Exited, 137, EventExit, "KILL"}, {Exited, 0, EventExit, ""}, {Lost, 0, EventLost, ""}} {
		p, err := s.Create(ctx, Proc{Node: "n1", User: "u", Argv: []string{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Transition(ctx, p.GPID, Start, "n1", func(q *Proc) error { q.State = Running; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Transition(ctx, p.GPID, End, "n1", func(q *Proc) error {
			q.State, q.Ended = c.state, time.Now()
			if c.state == Exited {
				q.ExitCode = &c.code
			} else {
				q.Error = "no process"
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		evs, _ := eventsAt(t, s, p.GPID)
		if len(evs) != 2 || evs[1].Kind != c.kind || evs[1].Signal != c.signal {
			t.Fatalf("%s %d: %+v; want %s signal %q", c.state, c.code, evs, c.kind, c.signal)
		}
		if c.state == Exited && (evs[1].ExitCode == nil || *evs[1].ExitCode != c.code) {
			t.Fatalf("exit code %v, want %d", evs[1].ExitCode, c.code)
		}
		if c.state == Lost && evs[1].Reason != "no process" {
			t.Fatalf("lost: reason %q", evs[1].Reason)
		}
	}
}

// TestCheckpointEvent: a checkpoint saved (Saving to Ready) is an event in
// the transaction that marks it ready.
func TestCheckpointEvent(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c := Checkpoint{Name: "c1", State: Saving, GPID: 7, Node: "n1", Proc: Proc{GPID: 7, User: "carol"}}
	rev, err := s.CreateCheckpoint(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if evs, _ := eventsAt(t, s, 7); len(evs) != 0 {
		t.Fatalf("a checkpoint being saved wrote events: %+v", evs)
	}
	c.State, c.Size = Ready, 4096
	rev, err = s.SwapCheckpoint(ctx, c, rev)
	if err != nil {
		t.Fatal(err)
	}
	evs, revs := eventsAt(t, s, 7)
	if len(evs) != 1 || evs[0].Kind != EventCheckpoint || evs[0].Checkpoint != "c1" || evs[0].Bytes != 4096 || evs[0].User != "carol" || revs[0] != rev {
		t.Fatalf("checkpoint events %+v at %v; want one at revision %d", evs, revs, rev)
	}
}

// TestEventsMatchingPagesAndWatch: filters by node and kind, the newest
// limit across pages, and the watch delivering what is written after a read.
func TestEventsMatchingPagesAndWatch(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	l, err := s.c.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	n := eventsPage*2 + 10
	for i := range n {
		ev := Event{Time: t0.Add(time.Duration(i) * time.Microsecond), Kind: EventRun, Node: fmt.Sprintf("n%d", i%3), GPID: uint64(i + 1)}
		if i%100 == 0 {
			ev.Kind = EventExit
		}
		ev.ID = NewEventID(ev.Time, ev.Node, uint64(i))
		if err := s.AddEvent(ctx, ev, l.ID); err != nil {
			t.Fatal(err)
		}
	}
	all, rev, err := s.EventsMatching(ctx, 0, EventFilter{}, 0)
	if err != nil || len(all) != n || all[0].GPID != 1 || all[n-1].GPID != uint64(n) {
		t.Fatalf("all: %d events, %v", len(all), err)
	}
	exits, _, err := s.EventsMatching(ctx, 0, EventFilter{Kinds: []string{EventExit}}, 5)
	if err != nil || len(exits) != 5 || exits[4].GPID != 2001 || exits[0].GPID != 1601 {
		t.Fatalf("newest 5 exits across pages: %+v, %v", exits, err)
	}
	n1, _, err := s.EventsMatching(ctx, 0, EventFilter{Node: "n1"}, 0)
	if err != nil || len(n1) != n/3 {
		t.Fatalf("events about n1: %d, %v; want %d", len(n1), err, n/3)
	}

	got := make(chan Event, 10)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- s.WatchEvents(wctx, rev, func(ev Event) error { got <- ev; return nil })
	}()
	late := Event{Time: t0.Add(-time.Hour), Kind: EventNode, Phase: PhaseNotReady, Node: "n9", From: "n2"}
	late.ID = NewEventID(late.Time, late.Node, 1)
	if err := s.AddEvent(ctx, late, l.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.TrimEvents(ctx, 10); err != nil { // deletes are not events
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.ID != late.ID || ev.Phase != PhaseNotReady {
			t.Fatalf("watched %+v, want %s", ev, late.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not deliver the event written after the read")
	}
	select {
	case ev := <-got:
		t.Fatalf("watched a second event: %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch ended with %v, want context.Canceled", err)
	}
}

func TestParseEventKinds(t *testing.T) {
	got, err := ParseEventKinds([]string{"run,exit", " exit ", "migrate"})
	if err != nil || strings.Join(got, " ") != "run exit migrate" {
		t.Fatalf("got %v, %v", got, err)
	}
	_, err = ParseEventKinds([]string{"run,bogus"})
	if err == nil || !strings.Contains(err.Error(), `"bogus"`) || !strings.Contains(err.Error(), "checkpoint") {
		t.Fatalf("unknown kind: %v; want an error naming it and the valid kinds", err)
	}
}

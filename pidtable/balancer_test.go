package pidtable

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

func TestBalancerConfigDefaultsAndCAS(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c, rev, err := s.BalancerConfig(ctx)
	if err != nil || !c.Enabled || rev != 0 {
		t.Fatalf("unset config: %+v rev %d err %v; want enabled (on by default), rev 0", c, rev, err)
	}
	c, err = s.UpdateBalancerConfig(ctx, func(c *BalancerConfig) error { c.Enabled, c.Residency = false, 3*time.Second; return nil })
	if err != nil || c.Enabled || c.Residency != 3*time.Second {
		t.Fatalf("update: %+v, %v", c, err)
	}
	got, rev, err := s.BalancerConfig(ctx)
	if err != nil || got.Enabled || got.Residency != 3*time.Second || rev == 0 {
		t.Fatalf("read back: %+v rev %d err %v", got, rev, err)
	}
}

func TestBalancerStateLeader(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, _, ok, leader, err := s.BalancerState(ctx); err != nil || ok || leader != "" {
		t.Fatalf("no leader yet: ok %v leader %q err %v", ok, leader, err)
	}
	sess, err := concurrency.NewSession(s.c, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, BalancerLeaderPrefix)
	if err := el.Campaign(ctx, "node2"); err != nil {
		t.Fatal(err)
	}
	if err := s.PublishBalancerStatus(ctx, BalancerStatus{Leader: "node2", Enabled: true, Moves: 3}, sess.Lease()); err != nil {
		t.Fatal(err)
	}
	cfg, st, ok, leader, err := s.BalancerState(ctx)
	if err != nil || !ok || leader != "node2" || st.Moves != 3 || !cfg.Enabled {
		t.Fatalf("state: cfg %+v st %+v ok %v leader %q err %v", cfg, st, ok, leader, err)
	}
	// The leader's lease gone: no leader, no status.
	if err := sess.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, leader, err := s.BalancerState(ctx); err != nil || ok || leader != "" {
		t.Fatalf("after the leader's lease ended: ok %v leader %q err %v", ok, leader, err)
	}
}

func TestEventsOrderFilterTrim(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	l, err := s.c.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for i := range 10 {
		ev := Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: EventRejected, Node: "node1", GPID: uint64(i%2 + 1)}
		ev.ID = NewEventID(ev.Time, ev.Node, uint64(i))
		if err := s.AddEvent(ctx, ev, l.ID); err != nil {
			t.Fatal(err)
		}
	}
	all, rev, err := s.Events(ctx, 0, 0, 0)
	if err != nil || len(all) != 10 {
		t.Fatalf("events: %d, %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID || all[i].Time.Before(all[i-1].Time) {
			t.Fatalf("events out of order at %d: %s after %s", i, all[i].ID, all[i-1].ID)
		}
	}
	// Following from rev: an event written now with an ID older than every
	// event seen (another writer's clock, a late goroutine) still shows.
	late := Event{Time: t0.Add(-time.Second), Kind: EventMoved, Node: "node2", GPID: 3}
	late.ID = NewEventID(late.Time, late.Node, 0)
	if err := s.AddEvent(ctx, late, l.ID); err != nil {
		t.Fatal(err)
	}
	after, rev2, err := s.Events(ctx, rev, 0, 0)
	if err != nil || len(after) != 1 || after[0].ID != late.ID || rev2 <= rev {
		t.Fatalf("events since revision %d: %+v, revision %d, %v", rev, after, rev2, err)
	}
	if none, _, err := s.Events(ctx, rev2, 0, 0); err != nil || len(none) != 0 {
		t.Fatalf("events since revision %d (nothing new): %+v, %v", rev2, none, err)
	}
	if _, err := s.c.Delete(ctx, eventKey(late)); err != nil {
		t.Fatal(err)
	}
	one, _, err := s.Events(ctx, 0, 2, 0)
	if err != nil || len(one) != 5 {
		t.Fatalf("events of gpid 2: %d, %v", len(one), err)
	}
	last, _, err := s.Events(ctx, 0, 0, 2)
	if err != nil || len(last) != 2 || last[1].ID != all[9].ID {
		t.Fatalf("newest 2: %+v, %v", last, err)
	}
	if err := s.TrimEvents(ctx, 4); err != nil {
		t.Fatal(err)
	}
	kept, _, err := s.Events(ctx, 0, 0, 0)
	if err != nil || len(kept) != 4 || kept[0].ID != all[6].ID {
		t.Fatalf("after trim to 4: %d events, first %v, err %v", len(kept), kept, err)
	}
}

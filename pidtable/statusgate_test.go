package pidtable

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestStatusMoved(t *testing.T) {
	base := func() NodeStatus {
		return NodeStatus{
			Instance: "a", Load: 1.5, Demand: 2, Jobs: 2, ReservedCPUs: 1, ReservedMemory: 1 << 30,
			Placements: []string{"t1"},
			Procs: map[uint64]ProcStats{
				1: {CPU: 100, RSS: 64 << 20, Stat: "R", Procs: 1, Demand: 1},
				2: {CPU: 50, RSS: 2 << 20, Stat: "S", Procs: 3, Demand: 1},
			},
		}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*NodeStatus)
		moved bool
	}{
		{"same", func(*NodeStatus) {}, false},
		{"only the time", func(s *NodeStatus) { s.Updated = time.Now() }, false},
		{"load within band", func(s *NodeStatus) { s.Load += 0.04 }, false},
		{"load past band", func(s *NodeStatus) { s.Load -= 0.05 }, true},
		{"demand past band", func(s *NodeStatus) { s.Demand += 0.2 }, true},
		{"expected appears", func(s *NodeStatus) { s.Expected = 1 }, true},
		{"another instance", func(s *NodeStatus) { s.Instance = "b" }, true},
		{"a job more", func(s *NodeStatus) { s.Jobs = 3; s.Procs[3] = ProcStats{Stat: "S"} }, true},
		{"a job replaced", func(s *NodeStatus) { delete(s.Procs, 2); s.Procs[3] = s.Procs[1] }, true},
		{"reservation", func(s *NodeStatus) { s.ReservedMemory++ }, true},
		{"token served", func(s *NodeStatus) { s.Placements = nil }, true},
		{"job cpu within band", func(s *NodeStatus) { p := s.Procs[1]; p.CPU = 96; s.Procs[1] = p }, false},
		{"job cpu past band", func(s *NodeStatus) { p := s.Procs[1]; p.CPU = 95; s.Procs[1] = p }, true},
		{"job demand past band", func(s *NodeStatus) { p := s.Procs[2]; p.Demand = 1.1; s.Procs[2] = p }, true},
		{"small job's rss by under 1 MiB", func(s *NodeStatus) { p := s.Procs[2]; p.RSS += 1<<20 - 1; s.Procs[2] = p }, false},
		{"small job's rss by 1 MiB", func(s *NodeStatus) { p := s.Procs[2]; p.RSS += 1 << 20; s.Procs[2] = p }, true},
		{"big job's rss by 9%", func(s *NodeStatus) { p := s.Procs[1]; p.RSS += 64 << 20 * 9 / 100; s.Procs[1] = p }, false},
		{"big job's rss by 10%", func(s *NodeStatus) { p := s.Procs[1]; p.RSS -= 64<<20/10 + 1; s.Procs[1] = p }, true},
		{"running to sleeping", func(s *NodeStatus) { p := s.Procs[1]; p.Stat = "S"; s.Procs[1] = p }, false},
		{"in I/O", func(s *NodeStatus) { p := s.Procs[2]; p.Stat = "D"; s.Procs[2] = p }, false},
		{"stopped", func(s *NodeStatus) { p := s.Procs[1]; p.Stat = "T"; s.Procs[1] = p }, true},
		{"zombie", func(s *NodeStatus) { p := s.Procs[2]; p.Stat = "Z"; s.Procs[2] = p }, true},
		{"a process more", func(s *NodeStatus) { p := s.Procs[2]; p.Procs = 4; s.Procs[2] = p }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := base()
			tc.edit(&next)
			if got := StatusMoved(base(), next); got != tc.moved {
				t.Errorf("StatusMoved = %v, want %v", got, tc.moved)
			}
		})
	}
}

// TestStatusGate writes through a real etcd: a status is written once, an
// unchanged or barely changed one is not, a moved one is, a new lease is
// written at once, and the refresh bounds the silence.
func TestStatusGate(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	lease := func() clientv3.LeaseID {
		l, err := s.c.Grant(ctx, 30)
		if err != nil {
			t.Fatal(err)
		}
		return l.ID
	}
	revision := func() int64 {
		r, err := s.c.Get(ctx, StatusKey("n1"))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 0 {
			return 0
		}
		return r.Kvs[0].ModRevision
	}
	g := &StatusGate{Refresh: 300 * time.Millisecond}
	l1 := lease()
	st := NodeStatus{Instance: "i", Jobs: 1, Load: 1, Procs: map[uint64]ProcStats{7: {CPU: 100, RSS: 4 << 20, Stat: "R", Procs: 1}}}
	publish := func(st NodeStatus, l clientv3.LeaseID, want bool) {
		t.Helper()
		before := revision()
		wrote, err := g.Publish(ctx, s, "n1", st, l)
		if err != nil {
			t.Fatal(err)
		}
		if wrote != want || (revision() != before) != want {
			t.Fatalf("wrote = %v (key's revision %d then %d), want %v", wrote, before, revision(), want)
		}
	}
	publish(st, l1, true)
	publish(st, l1, false)
	st.Load = 1.01
	publish(st, l1, false)
	st.Procs[7] = ProcStats{CPU: 50, RSS: 4 << 20, Stat: "S", Procs: 1}
	time.Sleep(StatusGap(len(st.Procs))) // the shortest gap between writes
	publish(st, l1, true)
	l2 := lease()
	publish(st, l2, true)
	if got, l, ok, err := s.Status(ctx, "n1"); err != nil || !ok || l != l2 || got.Procs[7].CPU != 50 {
		t.Fatalf("status after a new lease: %+v on lease %x (want %x), ok %v, err %v", got, l, l2, ok, err)
	}
	time.Sleep(350 * time.Millisecond) // the refresh
	publish(st, l2, true)

	// A node of 40 jobs writes at most every StatusGap(40) = 400 ms,
	// whatever moved; a new lease is written at once.
	g = &StatusGate{Refresh: time.Minute}
	big := NodeStatus{Instance: "i", Procs: map[uint64]ProcStats{}}
	for i := range 40 {
		big.Procs[uint64(100+i)] = ProcStats{Stat: "S"}
	}
	big.Jobs = len(big.Procs)
	publish(big, l2, true)
	big.Jobs, big.Procs[1] = big.Jobs+1, ProcStats{Stat: "S"}
	publish(big, l2, false)
	l3 := lease()
	publish(big, l3, true)
	big.Jobs, big.Procs[2] = big.Jobs+1, ProcStats{Stat: "S"}
	publish(big, l3, false)
	time.Sleep(StatusGap(40) + 50*time.Millisecond)
	publish(big, l3, true)
}

func TestStatusGap(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{0, 0}, {1, 10 * time.Millisecond}, {100, time.Second}, {1000, 10 * time.Second}, {100000, 10 * time.Second}} {
		if got := StatusGap(tc.n); got != tc.want {
			t.Errorf("StatusGap(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
}

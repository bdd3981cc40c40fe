package balancer

import (
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// TestBacksOffFailedMoves: a job whose move failed is held back, for longer
// after each failure (capped), reaches the policy as BackedOff, and is
// forgotten once it is no longer running.
func TestBacksOffFailedMoves(t *testing.T) {
	now := time.Now()
	b := New(Config{})
	var delays []time.Duration
	for range 9 {
		delays = append(delays, b.backoff.fail(7, now))
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 320 * time.Second, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	for i := range want {
		if delays[i] != want[i] {
			t.Fatalf("backoff after failure %d: %s, want %s (all: %v)", i+1, delays[i], want[i], delays)
		}
	}
	snap := &pidtable.Snapshot{
		Nodes:  []pidtable.Node{{Name: "node1", CPUs: 1}},
		Procs:  []pidtable.Proc{{GPID: 7, Node: "node1", State: pidtable.Running, Started: now.Add(-time.Minute)}, {GPID: 8, Node: "node1", State: pidtable.Running, Started: now.Add(-time.Minute)}},
		Status: map[string]pidtable.NodeStatus{"node1": {Procs: map[uint64]pidtable.ProcStats{7: {Demand: 1}, 8: {Demand: 1}}}},
	}
	_, jobs := b.view(snap, now.Add(time.Minute))
	for _, j := range jobs {
		if (j.GPID == 7) != (j.BackedOff == 9*time.Minute) {
			t.Errorf("job %d backed off %s", j.GPID, j.BackedOff)
		}
	}
	snap.Procs[0].State = pidtable.Exited
	b.view(snap, now)
	if _, ok := b.backoff[7]; ok {
		t.Fatal("an ended job's backoff was kept")
	}
}

// TestBackoffLeftAndForget: the time left runs down to zero; a job that moved
// starts afresh.
func TestBackoffLeftAndForget(t *testing.T) {
	now := time.Now()
	bs := backoffs{}
	if left := bs.left(1, now); left != 0 {
		t.Fatalf("never failed: %s left", left)
	}
	bs.fail(1, now)
	bs.fail(1, now)
	for _, tc := range []struct {
		at   time.Duration
		want time.Duration
	}{{0, 20 * time.Second}, {15 * time.Second, 5 * time.Second}, {time.Minute, 0}} {
		if got := bs.left(1, now.Add(tc.at)); got != tc.want {
			t.Errorf("left at +%s: %s, want %s", tc.at, got, tc.want)
		}
	}
	bs.forget(1)
	if d := bs.fail(1, now); d != moveBackoff {
		t.Errorf("first failure after a move: %s, want %s", d, moveBackoff)
	}
}

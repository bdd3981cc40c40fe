package agent

import (
	"os"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// TestBalancerViewAfterMove: right after a move the target's last status lacks
// the job and the source's still has it; the view counts the job where the
// process table puts it, with the demand last seen.
func TestBalancerViewAfterMove(t *testing.T) {
	now := time.Now()
	started := now.Add(-time.Minute)
	snap := &pidtable.Snapshot{
		Nodes: []pidtable.Node{{Name: "node1", CPUs: 1}, {Name: "node2", CPUs: 1}, {Name: "node3", CPUs: 1}},
		Procs: []pidtable.Proc{
			{GPID: 1, Node: "node1", State: pidtable.Running, Started: started},
			{GPID: 2, Node: "node2", State: pidtable.Running, Started: started, Arrived: now.Add(-300 * time.Millisecond)}, // just moved from node1
			{GPID: 3, Node: "node1", State: pidtable.Migrating, Started: started, Migration: &pidtable.Migration{Target: "node3"}},
			{GPID: 4, Node: "node1", State: pidtable.Exited, Started: started},
			{GPID: 5, Node: "node3", State: pidtable.Running, Started: started, Pinned: true},
		},
		Status: map[string]pidtable.NodeStatus{
			"node1": {Demand: 3, Procs: map[uint64]pidtable.ProcStats{1: {Demand: 1}, 2: {Demand: 0.9}, 3: {Demand: 1, RSS: 42}}},
			"node2": {Demand: 0, Procs: map[uint64]pidtable.ProcStats{}},
			"node3": {Demand: 0.5, Procs: map[uint64]pidtable.ProcStats{5: {Demand: 0.5}}},
		},
	}
	b := newBalancer(&Agent{}, nil)
	nodes, jobs := b.view(snap, now)
	load := map[string]float64{}
	inflight := map[string]int{}
	for _, n := range nodes {
		if !n.Ready {
			t.Errorf("node %s not Ready", n.Name)
		}
		load[n.Name], inflight[n.Name] = n.Load, n.Inflight
	}
	if load["node1"] != 2 || load["node2"] != 0.9 || load["node3"] != 0.5 {
		t.Errorf("loads %v; want node1 2 (gpids 1, 3), node2 0.9 (gpid 2, as node1 last saw it), node3 0.5", load)
	}
	if inflight["node1"] != 1 || inflight["node3"] != 1 || inflight["node2"] != 0 {
		t.Errorf("in flight %v; want node1 and node3 1 (gpid 3)", inflight)
	}
	byGPID := map[uint64]int{}
	for i, j := range jobs {
		byGPID[j.GPID] = i
	}
	if _, ok := byGPID[4]; ok || len(jobs) != 4 {
		t.Fatalf("jobs %+v; want the 4 live ones", jobs)
	}
	if j := jobs[byGPID[2]]; j.Resident > time.Second || j.Age < 59*time.Second || j.Node != "node2" {
		t.Errorf("moved job: %+v; want resident since its arrival, age since its start", j)
	}
	if j := jobs[byGPID[3]]; !j.Migrating || j.Memory != 42 {
		t.Errorf("migrating job: %+v", j)
	}
	if !jobs[byGPID[5]].Pinned {
		t.Errorf("pinned job not pinned: %+v", jobs[byGPID[5]])
	}
	// Next round, node2 still has not published gpid 2 and node1 forgot it:
	// the demand the last round saw stands.
	delete(snap.Status["node1"].Procs, 2)
	nodes, _ = b.view(snap, now)
	for _, n := range nodes {
		if n.Name == "node2" && n.Load != 0.9 {
			t.Errorf("node2 load %g on the second round; want 0.9 remembered", n.Load)
		}
	}
}

// TestThreadDemand: this test's own threads have run, and one (this one) is
// runnable.
func TestThreadDemand(t *testing.T) {
	out := map[int]time.Duration{}
	runnable := threadDemand(os.Getpid(), out)
	if len(out) == 0 || runnable < 1 {
		t.Fatalf("threads %v, runnable %d", out, runnable)
	}
	var total time.Duration
	for _, d := range out {
		total += d
	}
	if total <= 0 {
		t.Errorf("no run or wait time in %v", out)
	}
}

// TestBalancerMeasure: small moves teach the freeze only; big ones the rate.
func TestBalancerMeasure(t *testing.T) {
	b := newBalancer(&Agent{}, nil)
	// 1 MiB frozen 300 ms: nearly all fixed cost.
	b.measure(api.MigrateStats{ImageBytes: 1 << 20, FrozenMS: 300})
	if b.rate != 0 || b.freeze < 290*time.Millisecond || b.freeze > 300*time.Millisecond {
		t.Fatalf("after a small move: rate %g, freeze %s; want no rate, freeze ~300ms", b.rate, b.freeze)
	}
	// 512 MiB frozen 2.3 s: about 2 s of it is the size.
	b.measure(api.MigrateStats{ImageBytes: 512 << 20, FrozenMS: 2300})
	if b.rate < 200e6 || b.rate > 320e6 {
		t.Errorf("after a 512 MiB move: rate %g B/s, want about 512 MiB / 2 s", b.rate)
	}
	if b.measured != 2 {
		t.Errorf("measured %d moves, want 2", b.measured)
	}
	// A lost stream carries no figures.
	b.measure(api.MigrateStats{StreamLost: true})
	if b.measured != 2 {
		t.Errorf("a move without figures was measured")
	}
}

// TestBalancerBacksOffFailedMoves: a job whose move failed is held back, for
// longer after each failure (capped), reaches the policy as BackedOff, and is
// forgotten once it is no longer running.
func TestBalancerBacksOffFailedMoves(t *testing.T) {
	now := time.Now()
	b := newBalancer(&Agent{}, nil)
	var delays []time.Duration
	for range 9 {
		delays = append(delays, b.failedMove(7, now))
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

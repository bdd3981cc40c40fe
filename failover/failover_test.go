package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// TestPlan: a job with checkpoints on a node that has been down for the
// grace is restored from the newest checkpoint held by a Ready node (not
// the dead one's own, not a newer one on another dead node); a job with
// none on a Ready node is marked for lost; jobs without --checkpoint-every,
// on Ready nodes, or down for less than the grace are left alone; the
// checkpoints are read only when some job is due.
func TestPlan(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	snap := &pidtable.Snapshot{
		Nodes:  []pidtable.Node{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}, {Name: "n4"}},
		Status: map[string]pidtable.NodeStatus{"n2": {}, "n3": {}},
		Procs: []pidtable.Proc{
			{GPID: 1, Node: "n1", State: pidtable.Running, CheckpointEvery: time.Minute},
			{GPID: 2, Node: "n1", State: pidtable.Running},                                     // no checkpoints: not failover's
			{GPID: 3, Node: "n2", State: pidtable.Running, CheckpointEvery: time.Minute},       // node Ready
			{GPID: 4, Node: "n1", State: pidtable.Checkpointing, CheckpointEvery: time.Minute}, // none held by a Ready node
		},
	}
	cs := []pidtable.Checkpoint{
		{Name: "a", GPID: 1, Node: "n1", State: pidtable.Ready, Created: t0.Add(3 * time.Minute)}, // on the dead node
		{Name: "b", GPID: 1, Node: "n4", State: pidtable.Ready, Created: t0.Add(2 * time.Minute)}, // on another dead node
		{Name: "c", GPID: 1, Node: "n2", State: pidtable.Ready, Created: t0.Add(time.Minute)},
		{Name: "d", GPID: 1, Node: "n3", State: pidtable.Ready, Created: t0},
		{Name: "e", GPID: 1, Node: "n3", State: pidtable.Saving, Created: t0.Add(4 * time.Minute)},
		{Name: "f", GPID: 4, Node: "n1", State: pidtable.Ready, Created: t0},
	}
	reads := 0
	list := func() ([]pidtable.Checkpoint, error) { reads++; return cs, nil }
	down := map[string]time.Time{}
	acts, err := Plan(snap, down, t0, Grace, list)
	if err != nil || len(acts) != 0 || reads != 0 {
		t.Fatalf("first sight of n1 down: %v %v (reads %d), want nothing yet", acts, err, reads)
	}
	if acts, _ := Plan(snap, down, t0.Add(Grace-time.Millisecond), Grace, list); len(acts) != 0 || reads != 0 {
		t.Fatalf("within the grace: %v", acts)
	}
	acts, err = Plan(snap, down, t0.Add(Grace), Grace, list)
	if err != nil || len(acts) != 2 || reads != 1 {
		t.Fatalf("after the grace: %+v %v (reads %d)", acts, err, reads)
	}
	byGPID := map[uint64]Action{}
	for _, a := range acts {
		byGPID[a.GPID] = a
	}
	if a := byGPID[1]; a.Dead != "n1" || a.Checkpoint.Name != "c" {
		t.Fatalf("gpid 1: %+v, want restored from c (newest on a Ready node)", a)
	}
	if a := byGPID[4]; a.Checkpoint.Name != "" {
		t.Fatalf("gpid 4: %+v, want no checkpoint (lost)", a)
	}
	// n1 comes back: forgotten, and nothing is planned.
	snap.Status["n1"] = pidtable.NodeStatus{}
	if acts, _ := Plan(snap, down, t0.Add(time.Hour), Grace, list); len(acts) != 0 || len(down) != 0 {
		t.Fatalf("n1 back: %v, down %v", acts, down)
	}
	// A failing list is returned.
	delete(snap.Status, "n1")
	boom := errors.New("boom")
	Plan(snap, down, t0, Grace, list)
	if _, err := Plan(snap, down, t0.Add(Grace), Grace, func() ([]pidtable.Checkpoint, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("list error: %v", err)
	}
}

// TestKeeperDue: a job is due a period after it is first seen and after
// each checkpoint; jobs not running here, or without --checkpoint-every,
// never are; a job gone is forgotten.
func TestKeeperDue(t *testing.T) {
	procs := []pidtable.Proc{
		{GPID: 1, Node: "n1", State: pidtable.Running, CheckpointEvery: 10 * time.Second},
		{GPID: 2, Node: "n1", State: pidtable.Running},
		{GPID: 3, Node: "n2", State: pidtable.Running, CheckpointEvery: 10 * time.Second},
		{GPID: 4, Node: "n1", State: pidtable.Migrating, CheckpointEvery: 10 * time.Second},
	}
	k := NewKeeper(KeeperConfig{Node: "n1", Own: func() []pidtable.Proc { return procs }})
	t0 := time.Now()
	if d := k.Due(t0); len(d) != 0 {
		t.Fatalf("first sight: %v", d)
	}
	if d := k.Due(t0.Add(9 * time.Second)); len(d) != 0 {
		t.Fatalf("before the period: %v", d)
	}
	if d := k.Due(t0.Add(10 * time.Second)); len(d) != 1 || d[0].GPID != 1 {
		t.Fatalf("after the period: %v", d)
	}
	procs = procs[1:]
	k.Due(t0.Add(11 * time.Second))
	if _, ok := k.last[1]; ok {
		t.Fatal("gpid 1 gone but still tracked")
	}
}

// TestControllerStep: the controller restores through Restore on the
// checkpoint's holder, records lost through Abandon, writes an event for
// each, and tries a failed restore again only after retryAfter.
func TestControllerStep(t *testing.T) {
	t0 := time.Now()
	snap := &pidtable.Snapshot{
		Nodes:  []pidtable.Node{{Name: "n1"}, {Name: "n2"}},
		Status: map[string]pidtable.NodeStatus{"n2": {}},
		Procs: []pidtable.Proc{
			{GPID: 1, Node: "n1", State: pidtable.Running, CheckpointEvery: time.Minute, User: "alice"},
			{GPID: 2, Node: "n1", State: pidtable.Running, CheckpointEvery: time.Minute},
		},
	}
	cs := []pidtable.Checkpoint{{Name: "c1", GPID: 1, Node: "n2", State: pidtable.Ready, Created: t0}}
	var mu sync.Mutex
	var restores, abandons []string
	var events []pidtable.Event
	fail := true
	c := NewController(ControllerConfig{
		Name:        "n2",
		View:        func(context.Context) (*pidtable.Snapshot, error) { return snap, nil },
		Checkpoints: func(context.Context) ([]pidtable.Checkpoint, error) { return cs, nil },
		Restore: func(_ context.Context, node string, ck pidtable.Checkpoint, dead string) error {
			mu.Lock()
			defer mu.Unlock()
			restores = append(restores, node+"/"+ck.Name+"/"+dead)
			if fail {
				return errors.New("restore failed")
			}
			return nil
		},
		Abandon: func(_ context.Context, gpid uint64, dead, reason string) error {
			mu.Lock()
			defer mu.Unlock()
			abandons = append(abandons, fmt.Sprintf("%d/%s", gpid, dead))
			return nil
		},
		Record: func(_ context.Context, e pidtable.Event) { mu.Lock(); events = append(events, e); mu.Unlock() },
		Log:    slog.New(slog.DiscardHandler),
	})
	ctx := t.Context()
	step := func(at time.Time) {
		t.Helper()
		if err := c.Step(ctx, at); err != nil {
			t.Fatal(err)
		}
		c.wg.Wait()
	}
	step(t0)                          // n1 first seen down
	step(t0.Add(Grace))               // due: gpid 1 restored (fails), gpid 2 lost
	step(t0.Add(Grace + time.Second)) // gpid 1 waits for retryAfter
	mu.Lock()
	if len(restores) != 1 || restores[0] != "n2/c1/n1" || len(abandons) != 1 || abandons[0] != "2/n1" || len(events) != 2 {
		t.Fatalf("after the first pass: restores %v, abandons %v, events %+v", restores, abandons, events)
	}
	fail = false
	mu.Unlock()
	snap.Procs = snap.Procs[:1] // gpid 2 is lost now: no longer in the view
	step(time.Now().Add(retryAfter + time.Second))
	mu.Lock()
	defer mu.Unlock()
	if len(restores) != 2 || len(events) != 3 || !strings.Contains(events[2].Reason, "restored from checkpoint c1") || events[2].User != "alice" {
		t.Fatalf("after the retry: restores %v, events %+v", restores, events)
	}
}

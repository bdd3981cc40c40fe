package nodes

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/pidtable"
)

// newControl is a Control of node n1 in a cluster of three Ready nodes, and
// the events it records.
func newControl(t *testing.T) (*Control, *[]pidtable.Event) {
	t.Helper()
	c := etcdtest.Client(t)
	st := pidtable.New(c)
	sess, err := concurrency.NewSession(c, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	ctx := context.Background()
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := st.RegisterNode(ctx, pidtable.Node{Name: n, Addr: n + ":7070", CPUs: 4, Memory: 8 << 30}); err != nil {
			t.Fatal(err)
		}
		if err := st.PublishStatus(ctx, n, pidtable.NodeStatus{Instance: n}, sess.Lease()); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var evs []pidtable.Event
	ctl := New(Config{Name: "n1", Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Certificates: true,
		Events: func(_ context.Context, ev pidtable.Event) { mu.Lock(); evs = append(evs, ev); mu.Unlock() }})
	return ctl, &evs
}

// wantErr checks that err is the API's code, with a message that contains
// want.
func wantErr(t *testing.T, what string, err error, code api.Code, want string) {
	t.Helper()
	e := api.FromError(err)
	if e == nil || e.Code != code || !strings.Contains(e.Message, want) {
		t.Fatalf("%s: %v; want %s %q", what, err, code, want)
	}
}

// TestCordonAndLabel: a cordon changes once and says so; twice says who
// cordoned it; an unknown node is a 404 naming the known ones; labels are
// checked before anything is written.
func TestCordonAndLabel(t *testing.T) {
	ctl, evs := newControl(t)
	ctx := context.Background()
	res, err := ctl.Cordon(ctx, "n3", "alice", true, "disk")
	if err != nil || !res.Changed || !res.Config.Cordoned || res.Config.CordonedBy != "alice" || !strings.Contains(res.Message, "cordoned") {
		t.Fatalf("cordon: %+v %v", res, err)
	}
	res, err = ctl.Cordon(ctx, "n3", "", true, "")
	if err != nil || res.Changed || !strings.Contains(res.Message, "already cordoned") || !strings.Contains(res.Message, "by alice") {
		t.Fatalf("second cordon: %+v %v", res, err)
	}
	if len(*evs) != 1 {
		t.Fatalf("events %+v; want the one change", *evs)
	}
	if res, err = ctl.Cordon(ctx, "n3", "alice", false, ""); err != nil || !res.Changed || res.Config.Cordoned {
		t.Fatalf("uncordon: %+v %v", res, err)
	}
	_, err = ctl.Cordon(ctx, "nosuch", "alice", true, "")
	wantErr(t, "unknown node", err, api.CodeNotFound, "known nodes: n1, n2, n3")
	_, err = ctl.Cordon(ctx, "Bad Name", "alice", true, "")
	wantErr(t, "bad name", err, api.CodeBadRequest, "node name")

	_, err = ctl.Label(ctx, "n2", "alice", api.LabelRequest{})
	wantErr(t, "no label", err, api.CodeBadRequest, "no label given")
	_, err = ctl.Label(ctx, "n2", "alice", api.LabelRequest{Set: map[string]string{"gpu": "a100"}, Remove: []string{"gpu"}})
	wantErr(t, "set and removed", err, api.CodeBadRequest, "both set and removed")
	res, err = ctl.Label(ctx, "n2", "alice", api.LabelRequest{Set: map[string]string{"gpu": "a100", "zone": "b"}})
	if err != nil || res.Labels["gpu"] != "a100" || !strings.Contains(res.Message, "gpu=a100,zone=b") {
		t.Fatalf("label: %+v %v", res, err)
	}
}

// TestDrainRequests: a drain is checked, started once (a second request
// gets the one under way), keeps its node cordoned, and is cancelled once;
// a Ready node is not removed; the kill route's request is checked.
func TestDrainRequests(t *testing.T) {
	ctl, _ := newControl(t)
	ctx := context.Background()
	_, _, err := ctl.Drain(ctx, "n3", "alice", api.DrainRequest{Deadline: -time.Second})
	wantErr(t, "negative deadline", err, api.CodeBadRequest, "--deadline")
	_, _, err = ctl.Drain(ctx, "n3", "alice", api.DrainRequest{Parallel: 65})
	wantErr(t, "parallel", err, api.CodeBadRequest, "--parallel 65")
	_, err = ctl.DrainStatus(ctx, "n3")
	wantErr(t, "no drain", err, api.CodeNotFound, "has no drain")

	d, created, err := ctl.Drain(ctx, "n3", "alice", api.DrainRequest{})
	if err != nil || !created || d.Parallel != 2 || d.By != "alice" {
		t.Fatalf("drain: %+v %v %v", d, created, err)
	}
	if d, created, err = ctl.Drain(ctx, "n3", "bob", api.DrainRequest{}); err != nil || created || !d.Already || d.By != "alice" {
		t.Fatalf("second drain: %+v %v %v", d, created, err)
	}
	_, err = ctl.Cordon(ctx, "n3", "alice", false, "")
	wantErr(t, "uncordon while draining", err, api.CodeConflict, "cancel the drain first")

	if d, err = ctl.CancelDrain(ctx, "n3", "bob"); err != nil || d.State != pidtable.DrainCancelled || !strings.Contains(d.Message, "cancelled by bob") {
		t.Fatalf("cancel: %+v %v", d, err)
	}
	_, err = ctl.CancelDrain(ctx, "n3", "bob")
	wantErr(t, "second cancel", err, api.CodeConflict, "not being drained")

	_, err = ctl.Remove(ctx, "n2", "alice", false)
	wantErr(t, "rm of a Ready node", err, api.CodeConflict, "is Ready")
	_, err = ctl.DrainKill(ctx, "n1", "x", "n2")
	wantErr(t, "kill of a bad gpid", err, api.CodeBadRequest, `kill of "x" on "n1"`)
	_, err = ctl.DrainKill(ctx, "n2", "1", "n2")
	wantErr(t, "kill asked of another node", err, api.CodeBadRequest, "asked of node n1")
}

// TestRemoveExpiredLeft: a node that left more than the retention ago, is
// not Ready and runs nothing is removed by itself; one that left recently
// and a Ready one stay; retention 0 removes none. (A live job keeps one:
// TestExpiredLeft.)
func TestRemoveExpiredLeft(t *testing.T) {
	ctl, _ := newControl(t)
	st := ctl.cfg.Store
	ctx := context.Background()
	now := time.Now()
	left := func(name string, ago time.Duration) {
		t.Helper()
		if err := st.RegisterNode(ctx, pidtable.Node{Name: name, Addr: name + ":7070", CPUs: 1, Memory: 1 << 30}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.UpdateNodeConfig(ctx, name, func(nc *pidtable.NodeConfig) (bool, error) {
			nc.Left, nc.Cordoned = now.Add(-ago).UTC(), true
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	left("gone", 2*time.Hour)
	left("recent", time.Minute)
	if _, _, err := st.UpdateNodeConfig(ctx, "n2", func(nc *pidtable.NodeConfig) (bool, error) { nc.Left = now.Add(-2 * time.Hour).UTC(); return true, nil }); err != nil {
		t.Fatal(err)
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := ExpiredLeft(snap, now, 0); len(got) != 0 {
		t.Fatalf("retention 0 expired %v", got)
	}
	res, err := ctl.RemoveExpiredLeft(ctx, snap, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Node != "gone" || !strings.Contains(res[0].Message, "node gone removed") {
		t.Fatalf("removed %+v, want only gone", res)
	}
	snap, err = st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range snap.Nodes {
		names = append(names, n.Name)
	}
	if want := []string{"n1", "n2", "n3", "recent"}; !slices.Equal(names, want) {
		t.Fatalf("nodes after: %v, want %v", names, want)
	}
}

// TestExpiredLeft: only nodes Left for longer than the retention, not
// Ready, with no live job recorded on them.
func TestExpiredLeft(t *testing.T) {
	now := time.Now()
	n := func(name string, ago time.Duration) pidtable.Node {
		return pidtable.Node{Name: name, Left: now.Add(-ago)}
	}
	snap := &pidtable.Snapshot{
		Nodes:  []pidtable.Node{n("gone", 2*time.Hour), n("recent", time.Minute), n("busy", 2*time.Hour), n("back", 2*time.Hour), {Name: "dead"}, n("done", 2*time.Hour)},
		Status: map[string]pidtable.NodeStatus{"back": {}},
		Procs:  []pidtable.Proc{{GPID: 1, Node: "busy", State: pidtable.Running}, {GPID: 2, Node: "done", State: pidtable.Exited}},
	}
	if got := ExpiredLeft(snap, now, time.Hour); !slices.Equal(got, []string{"gone", "done"}) {
		t.Fatalf("expired %v, want [gone done]", got)
	}
}

package pidtable

import (
	"context"
	"errors"
	"testing"
)

// TestNodeConfigMergedIntoSnapshot: a cordon and runtime labels are seen by
// every reader of the nodes, and survive the agent registering again.
func TestNodeConfigMergedIntoSnapshot(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, _, err := s.UpdateNodeConfig(ctx, "ghost", func(*NodeConfig) (bool, error) { return true, nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("settings of an unknown node: %v, want ErrNotFound", err)
	}
	reg := Node{Name: "n1", Addr: "a:1", Labels: map[string]string{"disk": "hdd", "zone": "a"}}
	if err := s.RegisterNode(ctx, reg); err != nil {
		t.Fatal(err)
	}
	_, changed, err := s.UpdateNodeConfig(ctx, "n1", func(c *NodeConfig) (bool, error) {
		c.Cordoned = true
		c.SetLabel("disk", "ssd", false)
		c.SetLabel("zone", "", true)
		c.SetLabel("gpu", "1", false)
		return true, nil
	})
	if err != nil || !changed {
		t.Fatalf("cordon: %v (changed %v)", err, changed)
	}
	// The agent restarts: its registration is written again.
	if err := s.RegisterNode(ctx, reg); err != nil {
		t.Fatal(err)
	}
	snap, err := s.NodesSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := snap.Node("n1")
	if !n.Cordoned || n.Labels["disk"] != "ssd" || n.Labels["gpu"] != "1" || len(n.Labels) != 2 {
		t.Fatalf("merged node = %+v, want cordoned, disk=ssd gpu=1", n)
	}
	_, _, err = s.UpdateNodeConfig(ctx, "n1", func(c *NodeConfig) (bool, error) {
		c.Cordoned = false
		c.SetLabel("zone", "b", false)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	snap, _ = s.NodesSnapshot(ctx)
	if n, _ := snap.Node("n1"); n.Cordoned || n.Labels["zone"] != "b" {
		t.Fatalf("after uncordon = %+v", n)
	}
}

// TestRemoveNodeAndAbandon: a NotReady node is removed with its settings and
// certificates revoked; its jobs are abandoned (lost) only while it stays
// NotReady; a Ready node is not removed without ready=true.
func TestRemoveNodeAndAbandon(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.RegisterNode(ctx, Node{Name: "n1"}); err != nil {
		t.Fatal(err)
	}
	lease := makeReady(t, s, "n1")
	p, err := s.Create(ctx, Proc{Node: "n1", State: Running, Argv: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Abandon(ctx, p.GPID, "n1", "gone"); !errors.Is(err, ErrChanged) {
		t.Fatalf("abandon on a Ready node: %v, want ErrChanged", err)
	}
	if err := s.RemoveNode(ctx, "n1", false, nil); !errors.Is(err, ErrChanged) {
		t.Fatalf("remove a Ready node: %v, want ErrChanged", err)
	}
	if err := s.RecordNodeCert(ctx, "n1", NodeCert{Serial: "abc1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	got, err := s.Abandon(ctx, p.GPID, "n1", "node n1 removed")
	if err != nil || got.State != Lost || got.Error != "node n1 removed" || got.Ended.IsZero() {
		t.Fatalf("abandon = %+v, %v", got, err)
	}
	if _, err := s.Abandon(ctx, p.GPID, "n1", "again"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("abandon of a lost job: %v, want ErrIllegalTransition", err)
	}
	certs, err := s.NodeCerts(ctx, "n1")
	if err != nil || len(certs) != 1 {
		t.Fatalf("certs = %v, %v", certs, err)
	}
	if err := s.RemoveNode(ctx, "n1", false, []Revocation{{Serial: "abc1", User: "node:n1"}}); err != nil {
		t.Fatal(err)
	}
	snap, _ := s.NodesSnapshot(ctx)
	if _, ok := snap.Node("n1"); ok {
		t.Fatal("node still registered")
	}
	rs, _, err := s.Revocations(ctx)
	if err != nil || len(rs) != 1 || rs[0].Serial != "abc1" {
		t.Fatalf("revocations = %v, %v", rs, err)
	}
	if err := s.RemoveNode(ctx, "n1", false, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove twice: %v, want ErrNotFound", err)
	}
}

// TestStartDrainOnce: a second drain of a node is refused while the first's
// record is where the caller read it; the drain cordons the node.
func TestStartDrainOnce(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.RegisterNode(ctx, Node{Name: "n1"}); err != nil {
		t.Fatal(err)
	}
	d := Drain{Node: "n1", State: DrainActive, Parallel: 1}
	if err := s.StartDrain(ctx, d, 0, NodeConfig{Cordoned: true, Reason: "drain"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.StartDrain(ctx, d, 0, NodeConfig{Cordoned: true}, 0); !errors.Is(err, ErrChanged) {
		t.Fatalf("second drain: %v, want ErrChanged", err)
	}
	snap, _ := s.NodesSnapshot(ctx)
	if n, _ := snap.Node("n1"); !n.Cordoned || !n.Draining {
		t.Fatalf("node = %+v, want cordoned and draining", n)
	}
	got, rev, err := s.GetDrain(ctx, "n1")
	if err != nil || got.State != DrainActive {
		t.Fatalf("drain = %+v, %v", got, err)
	}
	got.State = DrainDone
	if _, err := s.PutDrain(ctx, got, rev, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutDrain(ctx, got, rev, nil); !errors.Is(err, ErrChanged) {
		t.Fatalf("stale write: %v, want ErrChanged", err)
	}
	snap, _ = s.NodesSnapshot(ctx)
	if n, _ := snap.Node("n1"); n.Draining {
		t.Fatal("a finished drain still shows")
	}
}

package agent

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/placement"
)

// TestLeastLoadedBurstSpreads: 8 jobs placed in one burst, between two status
// updates, spread over 4 idle nodes instead of all landing on the first.
func TestLeastLoadedBurstSpreads(t *testing.T) {
	var r recentPlacements
	measured := time.Now()
	updated := map[string]time.Time{}
	var base []placement.Node
	for _, name := range []string{"n1", "n2", "n3", "n4"} {
		base = append(base, placement.Node{Name: name, Ready: true, CPUs: 2, Memory: 1 << 30})
		updated[name] = measured
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	count := map[string]int{}
	for i := range 8 {
		nodes := append([]placement.Node(nil), base...)
		r.adjust(nodes, updated)
		name, err := placement.Place(nodes, placement.Request{Policy: placement.LeastLoaded}, rnd)
		if err != nil {
			t.Fatal(err)
		}
		count[name]++
		r.add(placedJob{node: name, at: measured.Add(time.Duration(i+1) * time.Millisecond)})
	}
	for _, n := range base {
		if count[n.Name] != 2 {
			t.Fatalf("burst of 8 on 4 idle nodes: %v, want 2 each", count)
		}
	}
	// Once a node's figures are newer than a placement, it is not counted twice.
	for name := range updated {
		updated[name] = measured.Add(time.Second + recentMargin)
	}
	nodes := append([]placement.Node(nil), base...)
	r.adjust(nodes, updated)
	for _, n := range nodes {
		if n.Jobs != 0 || n.Load != 0 {
			t.Fatalf("placements counted after the figures caught up: %+v", n)
		}
	}
}

func TestRecentPlacementsForget(t *testing.T) {
	var r recentPlacements
	t0 := time.Now()
	r.add(placedJob{node: "a", at: t0})
	r.add(placedJob{node: "a", at: t0.Add(recentWindow + time.Second)})
	if len(r.list) != 1 {
		t.Fatalf("old placement kept: %+v", r.list)
	}
}

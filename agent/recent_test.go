package agent

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/placement"
)

// TestLeastLoadedBurstSpreads: 12 idle jobs placed in one burst spread 3 per
// node over 4 idle nodes, also when the nodes' figures catch up with some of
// them half-way (they then show those jobs, using no CPU).
func TestLeastLoadedBurstSpreads(t *testing.T) {
	var r recentPlacements
	start := time.Now()
	base := map[string]*placement.Node{}
	var names []string
	for _, name := range []string{"n1", "n2", "n3", "n4"} {
		base[name] = &placement.Node{Name: name, Ready: true, CPUs: 2, Memory: 1 << 30}
		names = append(names, name)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	count := map[string]int{}
	for i := range 12 {
		now := start.Add(time.Duration(i) * 100 * time.Millisecond)
		if i == 5 {
			// n1's and n2's figures now show the jobs placed there: idle.
			for _, n := range []string{"n1", "n2"} {
				base[n].Jobs = count[n]
			}
		}
		var nodes []placement.Node
		for _, n := range names {
			nodes = append(nodes, *base[n])
		}
		r.adjust(nodes, now)
		name, err := placement.Place(nodes, placement.Request{Policy: placement.LeastLoaded}, rnd)
		if err != nil {
			t.Fatal(err)
		}
		count[name]++
		r.add(placedJob{node: name, at: now})
	}
	for _, n := range names {
		if count[n] != 3 {
			t.Fatalf("burst of 12 on 4 idle nodes: %v, want 3 each", count)
		}
	}
	// Past the window, placements no longer count.
	var nodes []placement.Node
	for _, n := range names {
		nodes = append(nodes, placement.Node{Name: n})
	}
	r.adjust(nodes, start.Add(2*time.Second+recentWindow))
	for _, n := range nodes {
		if n.Jobs != 0 || n.Load != 0 {
			t.Fatalf("placements counted past the window: %+v", n)
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

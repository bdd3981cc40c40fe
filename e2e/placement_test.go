package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestLeastLoadedBurst: 9 jobs submitted back to back with --placement
// least-loaded, faster than nodes publish their load (once a second), spread
// over the 3 nodes instead of piling on the one that looked idle: the entry
// agent counts its own placements that the nodes' figures do not show yet.
func TestLeastLoadedBurst(t *testing.T) {
	c := need(t)
	// From a level start: no node busy with an earlier test's jobs, and every
	// node's figures measured after those tests placed their last job (until
	// then the entry agent still counts those placements: recent.go).
	start := time.Now()
	eventually(t, 30*time.Second, "idle nodes", func() error {
		for name, n := range c.nodes(t) {
			if !n.Ready || n.Jobs > 0 || n.Load > 0.2 || !n.Updated.After(start) {
				return fmt.Errorf("%s: ready %v, %d jobs, load %.2f, measured %v", name, n.Ready, n.Jobs, n.Load, n.Updated)
			}
		}
		return nil
	})
	var gpids []uint64
	defer func() { c.kill(t, gpids...) }()
	for range 9 {
		gpids = append(gpids, c.detach(t, "--placement", "least-loaded", "--", "sleep", "300"))
	}
	per := map[string]int{}
	for _, g := range gpids {
		per[c.proc(t, g).Node]++
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		if per[n] != 3 {
			t.Fatalf("9 least-loaded jobs in a burst: %v, want 3 per node", per)
		}
	}
}

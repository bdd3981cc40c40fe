package e2e

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLeftNodeRemoved (issue 20, item 4): a node whose agent drained it and
// stopped (Left) is removed by itself once --left-retention has passed,
// with an event saying so; it joins again with a new token as any new
// machine does.
func TestLeftNodeRemoved(t *testing.T) {
	c := need(t)
	restoreNodes(t, c)
	orig := map[string][]string{}
	for _, n := range c.Nodes {
		orig[n.Name] = c.NodeArgs[n.Name]
	}
	restart := func(extra map[string][]string) {
		t.Helper()
		if c.NodeArgs == nil {
			c.NodeArgs = map[string][]string{}
		}
		for _, n := range c.Nodes {
			c.NodeArgs[n.Name] = append(slices.Clone(orig[n.Name]), extra[n.Name]...)
			c.stopAgent(t, n.Name, syscall.SIGUSR2)
			c.startAgent(t, n.Name)
		}
		eventually(t, 30*time.Second, "every node Ready", func() error {
			for name, n := range c.nodes(t) {
				if !n.Ready {
					return fmt.Errorf("%s NotReady", name)
				}
			}
			return nil
		})
	}
	short := []string{"--left-retention", "3s"}
	restart(map[string][]string{"node1": short, "node2": short, "node3": append(slices.Clone(short), "--no-drain=false")})
	removed := false
	defer func() {
		if removed {
			c.rejoin(t, "node3")
		}
		restart(nil)
	}()

	c.stopAgent(t, "node3", syscall.SIGTERM) // drains (nothing to move), Left
	eventually(t, 15*time.Second, "node3 Left", func() error {
		if n, ok := c.nodes(t)["node3"]; !ok || n.Left.IsZero() {
			return fmt.Errorf("%+v", n)
		}
		return nil
	})
	left := time.Now()
	eventually(t, 30*time.Second, "node3 removed", func() error {
		if _, ok := c.nodes(t)["node3"]; ok {
			return fmt.Errorf("still listed")
		}
		return nil
	})
	removed = true
	t.Logf("node3 removed %.1fs after it was Left (--left-retention 3s)", time.Since(left).Seconds())
	if ev := c.ok(t, "events", "-o", "json"); !strings.Contains(ev, "node node3 removed") || !strings.Contains(ev, "left-retention") {
		t.Fatalf("no event of node3's removal:\n%s", ev)
	}
}

package agent

import (
	"sync"
	"time"

	"github.com/ssi-cluster/ssi/placement"
)

// Placement reads node loads that their agents publish once a second. Jobs
// this agent placed since a node's last figures are not in them yet: without
// counting them, a burst of submissions would all go to the node that looked
// least loaded a moment ago (least-loaded herding; the simulator measured a
// mean slowdown of 65 against 1.0 with current figures, docs/SIMULATOR.md).

// recentWindow is how long a placement is remembered: a few status periods.
const recentWindow = 5 * time.Second

// recentMargin is how long before a node's figures a placement still counts:
// the time to start a job (forwarding, gpid, shim) is well below it.
const recentMargin = 500 * time.Millisecond

// placedJob is one placement decision of this agent.
type placedJob struct {
	node   string
	at     time.Time
	cpus   float64
	memory int64
}

// recentPlacements remembers this agent's placements of the last few seconds.
type recentPlacements struct {
	mu   sync.Mutex
	list []placedJob
}

// add records a placement at now.
func (r *recentPlacements) add(p placedJob) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cut := 0
	for cut < len(r.list) && p.at.Sub(r.list[cut].at) > recentWindow {
		cut++
	}
	r.list = append(r.list[cut:], p)
}

// adjust adds to each node the placements made after its figures were
// measured (updated[node]): one job, its reservations, and one core of load
// (or what it asked for), the demand a new batch job most likely brings.
func (r *recentPlacements) adjust(nodes []placement.Node, updated map[string]time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := make(map[string]int, len(nodes))
	for i, n := range nodes {
		idx[n.Name] = i
	}
	for _, p := range r.list {
		i, ok := idx[p.node]
		// A placement shortly before the figures were measured may not be in
		// them yet (the job was still being started): count it too. Counting
		// a job twice for a moment spreads a burst a little more; missing
		// it would send the next jobs to the same node.
		if !ok || !p.at.After(updated[p.node].Add(-recentMargin)) {
			continue
		}
		n := &nodes[i]
		n.Jobs++
		n.ReservedCPUs += p.cpus
		n.ReservedMemory += p.memory
		n.Load += max(p.cpus, 1)
	}
}

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
//
// Each placement of the last recentWindow counts, whatever the node has
// published since. Counting only those newer than the node's figures mixed
// two measures: a placed job counts one core until the figures show it, then
// what it really uses (nothing, for a job that waits), so a node whose
// figures had just caught up looked emptier than one with a job still
// pending, and a burst of idle jobs landed 4/3/2 instead of 3/3/3. Within the
// window every node's recent jobs count the same way; a job counted twice
// for a few seconds only spreads the next jobs a little more.

// recentWindow is how long a placement counts: a few status periods, longer
// than any burst of submissions takes to place.
const recentWindow = 5 * time.Second

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

// adjust adds to each node the placements of the last recentWindow before
// now: one job, its reservations, and one core of load (or what it asked
// for), the demand a new batch job most likely brings.
func (r *recentPlacements) adjust(nodes []placement.Node, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := make(map[string]int, len(nodes))
	for i, n := range nodes {
		idx[n.Name] = i
	}
	for _, p := range r.list {
		i, ok := idx[p.node]
		if !ok || now.Sub(p.at) > recentWindow {
			continue
		}
		n := &nodes[i]
		n.Jobs++
		n.ReservedCPUs += p.cpus
		n.ReservedMemory += p.memory
		n.Load += max(p.cpus, 1)
	}
}

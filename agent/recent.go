package agent

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/placement"
	"github.com/ssi-cluster/ssi/supervisor"
)

// Placement reads node figures that their agents publish once a second. A
// burst of submissions is placed faster than that: without care, every job of
// the burst would go to the node that looked least loaded a moment ago
// (least-loaded herding; the simulator measured a mean slowdown of 65 against
// 1.0 with current figures, docs/SIMULATOR.md).
//
// Two halves make each placed job count exactly once, the same way on every
// node, from the moment it is placed:
//
//   - The node. A job started here less than recentWindow ago counts in the
//     node's published figures at no less than the CPUs it asked for, one core
//     at least (NodeStatus.Expected): what it really uses is not measured yet,
//     and an idle-looking new job is most often a batch job about to work.
//     The node also lists the tokens of the placements it served in that
//     time (NodeStatus.Placements), once their job runs here (listed in the
//     very figures that first count the job: measure), or failed to start,
//     or has already ended.
//   - The placing agent. Each placement gets a token, which travels to the
//     node with the redirect (?placement=); the placing agent counts the job
//     itself, one job and one core, until the node's figures list the token
//     or come from another instance of its agent (restarted: it lists only
//     what it served itself, and measures the rest), for recentWindow at most
//     (a client that never followed the redirect).
//
// Counting by time alone either dropped a job between its placement and the
// node's next figures, or counted it twice once they showed it; and counting
// a placed job at one core but a started one at what it used (nothing, for a
// job that waits) made a node whose figures had just caught up look emptier
// than one with a job still pending: bursts landed 4/3/2, not 3/3/3. And a
// placement made just before a burst counted against its node even after that
// job had ended.

// recentWindow is how long a new job counts at its expected load: a few status
// periods, longer than a burst of submissions takes to place and start.
const recentWindow = 5 * time.Second

// newPlacementToken returns a random token for one placement decision.
func newPlacementToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// validPlacementToken reports whether s could be a token of newPlacementToken:
// what a node publishes comes from its clients' queries.
func validPlacementToken(s string) bool {
	if len(s) != 16 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// placedJob is one placement decision (of this agent, or served here).
type placedJob struct {
	token string
	node  string
	// instance is the node's agent instance whose figures the placement saw.
	instance string
	at       time.Time
	cpus     float64
	memory   int64
}

// recentPlacements remembers placements of the last few seconds: those this
// agent made (Agent.recent) and those it served (Agent.served, token and time
// only).
type recentPlacements struct {
	mu   sync.Mutex
	list []placedJob
}

// add records a placement at p.at; one without a token (a request that was
// not placed by an agent) is not recorded.
func (r *recentPlacements) add(p placedJob) {
	if p.token == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cut := 0
	for cut < len(r.list) && p.at.Sub(r.list[cut].at) > recentWindow {
		cut++
	}
	r.list = append(r.list[cut:], p)
}

// adjust adds to each node this agent's placements of the last recentWindow
// before now that the node's figures (status, by node name) do not list yet:
// one job, its reservations, and its expected load (what it asked for, one
// core at least), as the node will count it once it lists it.
func (r *recentPlacements) adjust(nodes []placement.Node, status map[string]pidtable.NodeStatus, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := make(map[string]int, len(nodes))
	for i, n := range nodes {
		idx[n.Name] = i
	}
	for _, p := range r.list {
		i, ok := idx[p.node]
		st, published := status[p.node]
		switch {
		case !ok, now.Sub(p.at) > recentWindow:
			continue
		case published && (st.Instance != p.instance || slices.Contains(st.Placements, p.token)):
			continue // counted by the node itself, or by a restarted agent's measures
		}
		n := &nodes[i]
		n.Jobs++
		n.ReservedCPUs += p.cpus
		n.ReservedMemory += p.memory
		n.Load += supervisor.ExpectedLoad(p.cpus)
	}
}

// tokens returns the tokens of the placements of the recentWindow before now.
func (r *recentPlacements) tokens(now time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.list {
		if now.Sub(p.at) <= recentWindow {
			out = append(out, p.token)
		}
	}
	return out
}

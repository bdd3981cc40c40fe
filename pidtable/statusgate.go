package pidtable

import (
	"context"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A node's liveness is its lease: its status key exists while the lease is
// kept alive, whatever the key holds. So the status needs writing only when
// what it says has changed enough to matter to a reader (placement, the
// balancer, ps and top), not at every measurement: a node of idle jobs writes
// once and then only when a job starts or ends. Before this gate every node
// rewrote its whole status every second, one entry per running job, and that
// write stream (1,000 nodes: 1,000 puts a second, their watch events to every
// agent, and the history etcd keeps until compaction) filled a 2 GiB etcd on
// the way to 100,000 jobs (docs/BENCHMARKS-scale.md).
const (
	// StatusRefresh is the longest a node leaves its status unwritten.
	StatusRefresh = 30 * time.Second
	// statusCoresBand is the change of a node's Load, Demand or Expected,
	// or of a job's Demand, in cores, that is worth a write.
	statusCoresBand = 0.05
	// statusCPUBand is the change of a job's CPU, in percent of a core.
	statusCPUBand = 5
	// statusRSSBand is the relative change of a job's RSS worth a write, at
	// least statusRSSFloor bytes.
	statusRSSBand  = 0.10
	statusRSSFloor = 1 << 20
	// statusGapPerJob spaces the writes of a node with many jobs: after a
	// write, the next waits len(Procs) × statusGapPerJob (at most
	// statusMaxGap), whatever moved, unless the lease changed. An entry is
	// about 60 bytes, so a node writes at most ~6 KB of status a second
	// whatever its size: a node filling up with 1,000 jobs (each start
	// changes the status) writes every 10 s, not every second.
	statusGapPerJob = 10 * time.Millisecond
	statusMaxGap    = 10 * time.Second
)

// StatusGap is the shortest time between two writes of a status with n
// jobs (StatusGate).
func StatusGap(n int) time.Duration { return min(time.Duration(n)*statusGapPerJob, statusMaxGap) }

// StatusGate publishes a node's status through Store.PublishStatus when it
// says something new: on a new lease (the key went with the old one), when
// the node's jobs, reservations or placement tokens changed, when a figure
// moved past its dead band (StatusMoved), and at least every Refresh; but
// not sooner than StatusGap after the last write, which bounds the bytes a
// node with many jobs writes. The agent and a hollow node each keep one.
// Safe for concurrent use.
type StatusGate struct {
	// Refresh bounds the time between two writes; 0: StatusRefresh.
	Refresh time.Duration

	mu    sync.Mutex
	last  NodeStatus
	lease clientv3.LeaseID
	at    time.Time
}

// Publish writes st on lease unless the last status this gate wrote, on the
// same lease, is younger than Refresh and within the dead bands of st. It
// reports whether it wrote. A failed write is retried at the next call.
func (g *StatusGate) Publish(ctx context.Context, s *Store, node string, st NodeStatus, lease clientv3.LeaseID) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	refresh := g.Refresh
	if refresh == 0 {
		refresh = StatusRefresh
	}
	now := time.Now()
	if lease == g.lease && (now.Sub(g.at) < StatusGap(len(g.last.Procs)) || (now.Sub(g.at) < refresh && !StatusMoved(g.last, st))) {
		return false, nil
	}
	if err := s.PublishStatus(ctx, node, st, lease); err != nil {
		return false, err
	}
	st.Procs = maps.Clone(st.Procs) // the caller's map may change under us
	g.last, g.lease, g.at = st, lease, now
	return true, nil
}

// StatusMoved reports whether next says something a reader of prev would
// want to know: another instance, other jobs, reservations or placement
// tokens, a job stopped or resumed, another count of a job's processes, or a
// figure past its band (a node's or a job's CPU figures by statusCoresBand or
// statusCPUBand, a job's RSS by statusRSSBand). A job flipping between
// running and sleeping (R, S, D) is not news; stopped (T) or zombie (Z) is.
func StatusMoved(prev, next NodeStatus) bool {
	if prev.Instance != next.Instance || prev.Jobs != next.Jobs ||
		prev.ReservedCPUs != next.ReservedCPUs || prev.ReservedMemory != next.ReservedMemory ||
		!slices.Equal(prev.Placements, next.Placements) || len(prev.Procs) != len(next.Procs) {
		return true
	}
	if cores(prev.Load, next.Load) || cores(prev.Demand, next.Demand) || cores(prev.Expected, next.Expected) {
		return true
	}
	for g, n := range next.Procs {
		p, ok := prev.Procs[g]
		if !ok || p.Procs != n.Procs || statClass(p.Stat) != statClass(n.Stat) ||
			math.Abs(p.CPU-n.CPU) >= statusCPUBand || cores(p.Demand, n.Demand) ||
			math.Abs(float64(p.RSS-n.RSS)) >= max(statusRSSFloor, statusRSSBand*float64(p.RSS)) {
			return true
		}
	}
	return false
}

func cores(a, b float64) bool { return math.Abs(a-b) >= statusCoresBand }

// statClass folds the process states a reader tells apart: stopped, zombie,
// unknown, and the rest (running, sleeping, in I/O) as one.
func statClass(s string) string {
	switch s {
	case "T", "t", "Z", "?":
		return s
	}
	return ""
}

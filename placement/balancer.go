package placement

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrBadBalanceConfig is wrapped by BalanceConfig.Validate.
var ErrBadBalanceConfig = errors.New("placement: invalid balancer config")

// DefaultBalanceConfig returns the balancer's defaults:
//
//   - Residency 10s: ten balancing rounds. A moved job must stay long enough for
//     the load table (published every second, smoothed) to show the effect of
//     the move before the job can be picked again, and at least a few times its
//     own freeze so that no job spends a noticeable share of its life frozen.
//   - MaxInflightPerNode 1: a migration saturates the source's disk/network and
//     one CPU (dump, checksum, stream); two at once from one node halve each
//     other's rate and double the freeze of both.
//   - MaxMovesPerRound 128: one round is one leader's decision; the per-node
//     cap is the real throttle, this one bounds the burst of etcd writes and
//     the damage of one round decided on a bad snapshot. It must not bind in
//     normal operation: in the simulator (docs/SIMULATOR.md), 1,000 nodes with
//     submissions concentrated on 200 of them needed up to 115 moves a round;
//     a cap of 16 left the mean slowdown at 20, 64 at 9.1, 128 at 4.0 (the
//     same as no cap).
//   - Hysteresis 0.25 load per core: the load table is a one-second sample; a
//     difference smaller than a quarter core per core is within its noise.
//   - TransferRate 250e6 B/s and Freeze 200ms: a fit of ssi's own stop-and-copy
//     migrations measured on this project's VMs (docs/BENCHMARKS-migration.md:
//     the median frozen time of each of five runs was 0.35–0.57 s at 64 MiB
//     and 1.96–2.58 s at 512 MiB; the model gives 0.47 s and 2.35 s), i.e. the rate of
//     the whole dump+transfer+restore, not of the network alone.
func DefaultBalanceConfig() BalanceConfig {
	return BalanceConfig{
		Residency:          10 * time.Second,
		MaxInflightPerNode: 1,
		MaxMovesPerRound:   128,
		Hysteresis:         0.25,
		TransferRate:       250e6,
		Freeze:             200 * time.Millisecond,
		MaxFreeze:          2 * time.Second,
	}
}

// WithDefaults returns c with every zero field replaced by its default from
// DefaultBalanceConfig. Negative fields are left for Validate to report.
func (c BalanceConfig) WithDefaults() BalanceConfig {
	d := DefaultBalanceConfig()
	if c.Residency == 0 {
		c.Residency = d.Residency
	}
	if c.MaxInflightPerNode == 0 {
		c.MaxInflightPerNode = d.MaxInflightPerNode
	}
	if c.MaxMovesPerRound == 0 {
		c.MaxMovesPerRound = d.MaxMovesPerRound
	}
	if c.Hysteresis == 0 {
		c.Hysteresis = d.Hysteresis
	}
	if c.TransferRate == 0 {
		c.TransferRate = d.TransferRate
	}
	if c.Freeze == 0 {
		c.Freeze = d.Freeze
	}
	if c.MaxFreeze == 0 {
		c.MaxFreeze = d.MaxFreeze
	}
	return c
}

// Validate reports the first negative (or not-a-number) field, naming it and the rule.
func (c BalanceConfig) Validate() error {
	switch {
	case c.Residency < 0:
		return fmt.Errorf("%w: Residency %s: must be ≥ 0 (0 means the default)", ErrBadBalanceConfig, c.Residency)
	case c.MaxInflightPerNode < 0:
		return fmt.Errorf("%w: MaxInflightPerNode %d: must be ≥ 0 (0 means the default)", ErrBadBalanceConfig, c.MaxInflightPerNode)
	case c.MaxMovesPerRound < 0:
		return fmt.Errorf("%w: MaxMovesPerRound %d: must be ≥ 0 (0 means the default)", ErrBadBalanceConfig, c.MaxMovesPerRound)
	case !(c.Hysteresis >= 0):
		return fmt.Errorf("%w: Hysteresis %g: must be ≥ 0 (0 means the default)", ErrBadBalanceConfig, c.Hysteresis)
	case !(c.TransferRate >= 0):
		return fmt.Errorf("%w: TransferRate %g: must be ≥ 0 bytes/s (0 means the default)", ErrBadBalanceConfig, c.TransferRate)
	case c.Freeze < 0:
		return fmt.Errorf("%w: Freeze %s: must be ≥ 0 (0 means the default)", ErrBadBalanceConfig, c.Freeze)
	case c.MaxFreeze < 0:
		return fmt.Errorf("%w: MaxFreeze %s: must be ≥ 0 (0 means the default)", ErrBadBalanceConfig, c.MaxFreeze)
	}
	return nil
}

// LoadPerCore is n's CPU demand per core, the figure placement and the
// balancer compare (nodes reporting fewer than one CPU count as one).
func LoadPerCore(n Node) float64 { return n.Load / max(n.CPUs, 1) }

// Slowdown is how much slower than alone a job runs on a node with this load
// per core, under processor sharing: 1 while there are at least as many cores
// as runnable work, load per core beyond that.
func Slowdown(loadPerCore float64) float64 { return max(1, loadPerCore) }

// MigrationCost is the time a job of this memory size is frozen by a move:
// memory / TransferRate + Freeze (zero fields of cfg take their defaults).
func MigrationCost(memory int64, cfg BalanceConfig) time.Duration {
	cfg = cfg.WithDefaults()
	return time.Duration(float64(memory)/cfg.TransferRate*float64(time.Second)) + cfg.Freeze
}

// Balance decides one round of migrations, MOSIX-style. It is pure and
// deterministic: the same nodes and jobs (in any order) give the same plan.
//
// Sources are the Ready nodes whose load per core exceeds 1 (some job is
// slowed down) and exceeds the least loaded Ready node's by more than
// cfg.Hysteresis; only jobs on sources are considered, so a caller may pass
// just those (the simulator does). Sources are taken most loaded first, their
// jobs oldest first. A job is skipped, with a Rejection saying why, when it is
// pinned, already migrating, was moved to its node less than cfg.Residency ago, has
// no CPU demand, when its source or every possible target has
// cfg.MaxInflightPerNode migrations in flight, or when the round already has
// cfg.MaxMovesPerRound moves.
//
// The target is the Ready node, not cordoned, other than the source, that carries the job's
// constraint labels, fits its request (Matches, Fits), has a free in-flight
// slot, and has the lowest load per core once the job's demand is added. The
// move is made only if
//
//   - the load per core of source minus target exceeds cfg.Hysteresis before
//     the move, and after it the target is not left oversubscribed (load per
//     core above 1) and more loaded than the source by more than
//     cfg.Hysteresis, so the move does not invite its own reverse
//     (no ping-pong, even without the residency rule); and
//   - gain > cost, where cost = Memory/TransferRate + Freeze (MigrationCost)
//     and gain = Age × (1 − Slowdown(target after)/Slowdown(source)): a job's
//     expected remaining time is its age (the heavy-tailed lifetimes MOSIX
//     relies on, Harchol-Balter & Downey 1997), and moving shortens that
//     remaining time by the ratio of the slowdowns. Only the moved job's own
//     gain is counted, not that of the jobs left behind: conservative.
//
// Nodes that are NotReady, or whose load or CPUs are not finite numbers, are
// neither sources nor targets; jobs on nodes not in nodes are ignored.
//
// The working copy of node loads, reservations and in-flight counts is
// updated as moves are chosen, so one round does not pile every job onto the
// same target. The difference from "the load difference after the move must
// exceed the hysteresis": on one-core nodes a job moving from a node running
// two to an idle one leaves a difference of 0, yet halves the slowdown; what
// the hysteresis must prevent is the reverse move, and the rule above does.
func Balance(nodes []BalanceNode, jobs []BalanceJob, cfg BalanceConfig) Plan {
	cfg = cfg.WithDefaults()
	b := newBalancer(nodes, cfg)
	var plan Plan
	sources := b.sources(jobs)
	moved := make(map[uint64]bool)
	for _, s := range sources {
		for _, j := range s.jobs {
			if moved[j.GPID] {
				plan.Rejected = append(plan.Rejected, Rejection{j.GPID, j.Node, "listed twice; moved already"})
				continue
			}
			m, why := b.consider(s.node, j, len(plan.Moves))
			if why != "" {
				plan.Rejected = append(plan.Rejected, Rejection{j.GPID, j.Node, why})
				continue
			}
			moved[j.GPID] = true
			plan.Moves = append(plan.Moves, m)
		}
	}
	return plan
}

// AnyOverloaded reports whether Balance could move anything off some node:
// a Ready node above one job per core and more than the hysteresis above
// the least loaded one. A planner skips building its job list otherwise.
func AnyOverloaded(nodes []BalanceNode, cfg BalanceConfig) bool {
	b := newBalancer(nodes, cfg.WithDefaults())
	for _, n := range b.nodes {
		if b.overloaded(n) {
			return true
		}
	}
	return false
}

type balancer struct {
	cfg   BalanceConfig
	nodes []BalanceNode  // working copy, Ready nodes only
	index map[string]int // name -> index in nodes
	order []int          // indices into nodes, least loaded first (compareLoad)
}

type source struct {
	node int
	jobs []BalanceJob
}

func newBalancer(nodes []BalanceNode, cfg BalanceConfig) *balancer {
	b := &balancer{cfg: cfg, index: make(map[string]int, len(nodes))}
	for _, n := range nodes {
		if !n.Ready || !finite(n.Load) || !finite(n.CPUs) {
			continue
		}
		if _, dup := b.index[n.Name]; dup {
			continue
		}
		b.index[n.Name] = len(b.nodes)
		b.nodes = append(b.nodes, n)
	}
	b.order = make([]int, len(b.nodes))
	for i := range b.order {
		b.order[i] = i
	}
	b.sort()
	return b
}

func (b *balancer) sort() {
	slices.SortFunc(b.order, func(x, y int) int { return compareLoad(b.nodes[x].Node, b.nodes[y].Node) })
}

// minLoad is the lowest load per core of a Ready node.
func (b *balancer) minLoad() float64 {
	if len(b.order) == 0 {
		return 0
	}
	return LoadPerCore(b.nodes[b.order[0]].Node)
}

func (b *balancer) overloaded(n BalanceNode) bool {
	l := LoadPerCore(n.Node)
	return l > 1 && l-b.minLoad() > b.cfg.Hysteresis
}

// sources groups the jobs on overloaded nodes: most loaded node first, each
// node's jobs oldest first.
func (b *balancer) sources(jobs []BalanceJob) []source {
	bySource := make(map[int]int) // node index -> index in out
	var out []source
	for _, j := range jobs {
		i, ok := b.index[j.Node]
		if !ok || !b.overloaded(b.nodes[i]) {
			continue
		}
		k, ok := bySource[i]
		if !ok {
			k = len(out)
			bySource[i] = k
			out = append(out, source{node: i})
		}
		out[k].jobs = append(out[k].jobs, j)
	}
	slices.SortFunc(out, func(x, y source) int {
		lx, ly := LoadPerCore(b.nodes[x.node].Node), LoadPerCore(b.nodes[y.node].Node)
		switch {
		case lx > ly:
			return -1
		case lx < ly:
			return 1
		}
		return strings.Compare(b.nodes[x.node].Name, b.nodes[y.node].Name)
	})
	for _, s := range out {
		slices.SortFunc(s.jobs, func(x, y BalanceJob) int {
			if c := cmp.Compare(y.Age, x.Age); c != 0 {
				return c
			}
			return cmp.Compare(x.GPID, y.GPID)
		})
	}
	return out
}

// consider returns the move for job j on node src, or why there is none.
func (b *balancer) consider(src int, j BalanceJob, planned int) (Move, string) {
	cfg := b.cfg
	s := &b.nodes[src]
	switch {
	case j.Pinned:
		return Move{}, "pinned (ssi run --pin)"
	case j.Migrating:
		return Move{}, "already migrating"
	case j.BackedOff > 0:
		return Move{}, "a move of it failed; backed off for " + dur(j.BackedOff) + " more"
	case j.Moved && j.Resident < cfg.Residency:
		return Move{}, "moved here " + dur(j.Resident) + " ago, less than the residency " + dur(cfg.Residency)
	case !(j.Demand > 0) || math.IsInf(j.Demand, 0):
		return Move{}, "no CPU demand: moving it would not help anyone"
	case planned >= cfg.MaxMovesPerRound:
		return Move{}, "round full: " + strconv.Itoa(planned) + " moves already planned (MaxMovesPerRound)"
	case s.Inflight >= cfg.MaxInflightPerNode:
		return Move{}, "source has " + strconv.Itoa(s.Inflight) + " migrations in flight (max " + strconv.Itoa(cfg.MaxInflightPerNode) + ")"
	case !b.overloaded(*s):
		return Move{}, "source no longer overloaded after this round's moves (load/core " + f2(LoadPerCore(s.Node)) + ")"
	}
	req := Request{CPUs: j.CPUs, Memory: j.MemoryRequest, Constraints: j.Constraints}
	t := b.target(src, j, req)
	if t < 0 {
		return Move{}, b.noTarget(src, req)
	}
	tn := &b.nodes[t]
	ls, lt := LoadPerCore(s.Node), LoadPerCore(tn.Node)
	lsAfter := (s.Load - j.Demand) / max(s.CPUs, 1)
	ltAfter := (tn.Load + j.Demand) / max(tn.CPUs, 1)
	if ls-lt <= cfg.Hysteresis {
		return Move{}, "best target " + tn.Name + " at load/core " + f2(lt) + " vs " + f2(ls) + " here: difference within the hysteresis " + f2(cfg.Hysteresis)
	}
	if Slowdown(ltAfter) > 1 && ltAfter-lsAfter > cfg.Hysteresis {
		return Move{}, "would overshoot: best target " + tn.Name + " would be at load/core " + f2(ltAfter) + ", this node at " + f2(lsAfter)
	}
	ss, st := Slowdown(ls), Slowdown(ltAfter)
	gain := time.Duration(float64(j.Age) * (1 - st/ss))
	cost := MigrationCost(j.Memory, cfg)
	if gain <= cost {
		return Move{}, "gain " + dur(gain) + " ≤ cost " + dur(cost) + " (age " + dur(j.Age) + ", slowdown " + f2(ss) + " here → " + f2(st) + " on " + tn.Name + ", " + strconv.FormatInt(j.Memory>>20, 10) + " MiB)"
	}
	// The freeze: a stop-and-copy move freezes the job for its whole cost;
	// past the budget it moves post-copy, frozen for the fixed part alone.
	postcopy := cost > cfg.MaxFreeze
	if postcopy && cfg.Freeze > cfg.MaxFreeze {
		return Move{}, "expected freeze " + dur(cost) + " by stop-and-copy, " + dur(cfg.Freeze) + " post-copy: both over the budget " + dur(cfg.MaxFreeze)
	}
	m := Move{
		GPID: j.GPID, From: s.Name, To: tn.Name, Gain: gain, Cost: cost, PostCopy: postcopy,
		Reason: "load/core " + f2(ls) + " here, " + f2(ltAfter) + " on " + tn.Name + " with it; gain " + dur(gain) + " > cost " + dur(cost),
	}
	if postcopy {
		m.Reason += "; post-copy: a stop-and-copy freeze of " + dur(cost) + " would exceed the budget " + dur(cfg.MaxFreeze)
	}
	b.apply(s, tn, j)
	return m, ""
}

// target returns the index of the best target for j, or -1.
func (b *balancer) target(src int, j BalanceJob, req Request) int {
	best, bestAfter := -1, 0.0
	for _, i := range b.order {
		n := b.nodes[i]
		if best >= 0 && LoadPerCore(n.Node) >= bestAfter {
			break // sorted: nobody further can end up below bestAfter
		}
		if i == src || n.Cordoned || n.Protocol != b.nodes[src].Protocol || n.Inflight >= b.cfg.MaxInflightPerNode || !Matches(n.Node, req.Constraints) || !Fits(n.Node, req) {
			continue
		}
		if after := (n.Load + j.Demand) / max(n.CPUs, 1); best < 0 || after < bestAfter {
			best, bestAfter = i, after
		}
	}
	return best
}

// noTarget says why no node can take a job from src.
func (b *balancer) noTarget(src int, req Request) string {
	var cordoned, protocol, labels, capacity, busy int
	for i, n := range b.nodes {
		switch {
		case i == src:
		case n.Cordoned:
			cordoned++
		case n.Protocol != b.nodes[src].Protocol:
			protocol++
		case !Matches(n.Node, req.Constraints):
			labels++
		case !Fits(n.Node, req):
			capacity++
		case n.Inflight >= b.cfg.MaxInflightPerNode:
			busy++
		}
	}
	var parts []string
	if cordoned > 0 {
		parts = append(parts, strconv.Itoa(cordoned)+" cordoned")
	}
	if protocol > 0 {
		parts = append(parts, strconv.Itoa(protocol)+" "+otherProtocol)
	}
	if labels > 0 {
		parts = append(parts, strconv.Itoa(labels)+" lack labels "+formatLabels(req.Constraints))
	}
	if capacity > 0 {
		parts = append(parts, strconv.Itoa(capacity)+" lack free capacity")
	}
	if busy > 0 {
		parts = append(parts, strconv.Itoa(busy)+" have migrations in flight")
	}
	if len(parts) == 0 {
		return "no target: no other Ready node"
	}
	return "no target among " + strconv.Itoa(len(b.nodes)-1) + " other Ready nodes: " + strings.Join(parts, ", ")
}

// apply moves j from s to t in the working copy.
func (b *balancer) apply(s, t *BalanceNode, j BalanceJob) {
	s.Load -= j.Demand
	s.ReservedCPUs -= j.CPUs
	s.ReservedMemory -= j.MemoryRequest
	s.Jobs--
	s.Inflight++
	t.Load += j.Demand
	t.ReservedCPUs += j.CPUs
	t.ReservedMemory += j.MemoryRequest
	t.Jobs++
	t.Inflight++
	b.sort()
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Millisecond).String()
	}
	return d.String()
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func f2(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }

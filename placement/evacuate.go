package placement

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
)

// EvacuateJob is a job on a node being drained.
type EvacuateJob struct {
	BalanceJob
	// Unmovable says why the job cannot move at all ("" when it can): a
	// terminal, say. It is rejected with that reason.
	Unmovable string
}

// loadTolerance is the difference in load per core under which two targets
// count as equally loaded, and the one with fewer moves in flight, then
// fewer jobs, is preferred: a load table sample is noisy, and a drain of
// idle jobs must spread them rather than pile them on the node that looked
// idlest by a hair.
const loadTolerance = 0.25

// Evacuate decides which jobs of the node from to move now, and where: at
// most slots moves (the drain's parallelism minus the moves in flight). It is
// pure and deterministic. Jobs go smallest first (the count of jobs left
// falls fastest, and a big job does not hold back the small ones), each to
// the Ready node, other than from and not cordoned, that carries its
// constraint labels and fits its request (Matches, Fits) with the lowest load
// per core once the job's demand is added; among targets within
// loadTolerance of each other, the one with the fewest moves in flight, then
// the fewest jobs. Unlike Balance there is no cost model: a drained node must
// be emptied whatever the gain. A job whose stop-and-copy freeze is expected
// to exceed cfg.MaxFreeze moves post-copy (as the balancer would). Jobs
// already migrating are skipped; unmovable ones and ones with no target are
// rejected with the reason.
func Evacuate(nodes []BalanceNode, from string, jobs []EvacuateJob, slots int, cfg BalanceConfig) Plan {
	cfg = cfg.WithDefaults()
	var targets []BalanceNode
	protocol := 0
	for _, n := range nodes {
		if n.Ready && n.Name != from && finite(n.Load) && finite(n.CPUs) {
			targets = append(targets, n)
		}
		if n.Name == from {
			protocol = n.Protocol
		}
	}
	order := slices.Clone(jobs)
	slices.SortFunc(order, func(a, b EvacuateJob) int {
		if c := cmp.Compare(a.Memory, b.Memory); c != 0 {
			return c
		}
		return cmp.Compare(a.GPID, b.GPID)
	})
	var plan Plan
	for _, j := range order {
		switch {
		case j.Migrating:
			continue
		case j.Unmovable != "":
			plan.Rejected = append(plan.Rejected, Rejection{j.GPID, from, j.Unmovable})
			continue
		case len(plan.Moves) >= slots:
			continue
		}
		req := Request{CPUs: j.CPUs, Memory: j.MemoryRequest, Constraints: j.Constraints}
		demand := j.Demand
		if !(demand >= 0) || math.IsInf(demand, 0) {
			demand = 0
		}
		best := -1
		for i, n := range targets {
			if n.Cordoned || n.Protocol != protocol || !Matches(n.Node, req.Constraints) || !Fits(n.Node, req) {
				continue
			}
			if best < 0 || betterTarget(n, targets[best], demand) {
				best = i
			}
		}
		if best < 0 {
			plan.Rejected = append(plan.Rejected, Rejection{j.GPID, from, noEvacuationTarget(targets, protocol, req)})
			continue
		}
		t := &targets[best]
		cost := MigrationCost(j.Memory, cfg)
		m := Move{GPID: j.GPID, From: from, To: t.Name, Cost: cost, Reason: "drain of " + from + ": " + t.Name + " at load/core " + f2(LoadPerCore(t.Node)) + " with " + strconv.Itoa(t.Jobs) + " jobs"}
		if cost > cfg.MaxFreeze && cfg.Freeze <= cfg.MaxFreeze {
			m.PostCopy = true
			m.Reason += "; post-copy: a stop-and-copy freeze of " + dur(cost) + " would exceed " + dur(cfg.MaxFreeze)
		}
		t.Load += demand
		t.ReservedCPUs += j.CPUs
		t.ReservedMemory += j.MemoryRequest
		t.Jobs++
		t.Inflight++
		plan.Moves = append(plan.Moves, m)
	}
	return plan
}

// betterTarget reports whether a is a better target than b for a job of
// this demand.
func betterTarget(a, b BalanceNode, demand float64) bool {
	la, lb := (a.Load+demand)/max(a.CPUs, 1), (b.Load+demand)/max(b.CPUs, 1)
	if math.Abs(la-lb) >= loadTolerance {
		return la < lb
	}
	if a.Inflight != b.Inflight {
		return a.Inflight < b.Inflight
	}
	if a.Jobs != b.Jobs {
		return a.Jobs < b.Jobs
	}
	if la != lb {
		return la < lb
	}
	return a.Name < b.Name
}

// otherProtocol is the reason given for nodes of another migration
// protocol than the job's node.
const otherProtocol = "run another migration protocol (another ssi version: finish the upgrade)"

// noEvacuationTarget says why no node can take a job.
func noEvacuationTarget(targets []BalanceNode, protocol int, req Request) string {
	if len(targets) == 0 {
		return "no other Ready node to move it to"
	}
	var cordoned, other, labels, capacity int
	for _, n := range targets {
		switch {
		case n.Cordoned:
			cordoned++
		case n.Protocol != protocol:
			other++
		case !Matches(n.Node, req.Constraints):
			labels++
		case !Fits(n.Node, req):
			capacity++
		}
	}
	var parts []string
	if cordoned > 0 {
		parts = append(parts, strconv.Itoa(cordoned)+" cordoned")
	}
	if other > 0 {
		parts = append(parts, strconv.Itoa(other)+" "+otherProtocol)
	}
	if labels > 0 {
		parts = append(parts, strconv.Itoa(labels)+" lack labels "+formatLabels(req.Constraints))
	}
	if capacity > 0 {
		parts = append(parts, strconv.Itoa(capacity)+" lack "+formatRequest(req)+" free")
	}
	return "no target among " + strconv.Itoa(len(targets)) + " other Ready nodes: " + strings.Join(parts, ", ")
}

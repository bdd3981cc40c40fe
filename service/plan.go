package service

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// Backoff and crash-loop rules.
const (
	// MaxBackoff caps the delay before a restart: RestartSec doubles with
	// every failure in a row, up to this.
	MaxBackoff = time.Minute
	// StableAfter is how long a replica must have run for its failure not to
	// count as one more in a row (the count starts again at 1).
	StableAfter = 10 * time.Second
	// CrashLoopAfter failures in a row make a service's state crash-loop.
	CrashLoopAfter = 3
)

// Service states (ServiceStatus.State).
const (
	StateRunning    = "running"
	StateStarting   = "starting"
	StateUpdating   = "updating"
	StateDegraded   = "degraded"
	StateRestarting = "restarting"
	StateCrashLoop  = "crash-loop"
	StateRemoving   = "removing"
	StateStopped    = "stopped"
)

// Node is what the planner knows of a node.
type Node struct {
	Name   string
	Ready  bool
	Labels map[string]string
	// Load is the node's load in cores (for the choice among eligible nodes).
	Load float64
	// Cordoned nodes (ssi node cordon) get no new replica; the replicas
	// they run still count.
	Cordoned bool
	// Replacing are replicas on the node that its drain does not move live
	// (Migratable=no, or their moves failed): each is replaced by one
	// started elsewhere, and stopped once the service has its count
	// running without it.
	Replacing []uint64
}

// Input is everything one plan of one service depends on.
type Input struct {
	Now     time.Time
	Service pidtable.Service
	// Status is the service's last status (zero for a new service).
	Status pidtable.ServiceStatus
	// Replicas are the records of the service's replicas (Proc.Service).
	Replicas []pidtable.Proc
	Nodes    []Node
	// Pending counts replicas started whose records are not in Replicas yet;
	// PendingNodes are their nodes.
	Pending      int
	PendingNodes []string
	// Stopping are replicas being stopped (their stop is in flight).
	Stopping map[uint64]bool
}

// Plan is what to do for one service, and its status once done.
type Plan struct {
	// Start lists a node per replica to start.
	Start []string
	// Stop lists replicas to stop.
	Stop []pidtable.Proc
	// Status is the service's new status (write it before acting).
	Status pidtable.ServiceStatus
	// Wake is when a plan should be made again at the latest (a backoff's
	// end); zero: on the next change.
	Wake time.Time
	// Events say what happened (replica crashed, node lost, shortfall).
	Events []string
	// Delete: a removed service with no replica left; delete its record.
	Delete bool
}

// Backoff is the delay before a restart after failures in a row.
func Backoff(restartSec time.Duration, failures int) time.Duration {
	d := max(restartSec, DefaultRestartSec)
	for i := 1; i < failures && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// Decide plans one service. It is a pure function of its input.
func Decide(in Input) Plan {
	svc, spec := in.Service, in.Service.Spec
	st := in.Status
	st.Name = svc.Name
	st.Handled = slices.Clone(st.Handled)
	if st.Generation != svc.Generation {
		// A new apply or scale: its replicas start afresh.
		st.Generation, st.Completed, st.Failures, st.NextStart = svc.Generation, 0, 0, time.Time{}
	}
	var plan Plan
	ready := map[string]Node{}
	replacing := map[uint64]bool{}
	for _, n := range in.Nodes {
		if n.Ready {
			ready[n.Name] = n
		}
		for _, g := range n.Replacing {
			replacing[g] = true
		}
	}
	handled := map[uint64]bool{}
	for _, g := range st.Handled {
		handled[g] = true
	}
	handle := func(g uint64) {
		if !handled[g] {
			handled[g] = true
		}
	}
	replicas := slices.Clone(in.Replicas)
	sort.Slice(replicas, func(i, j int) bool { return replicas[i].GPID < replicas[j].GPID })
	var live, leaving []pidtable.Proc
	restoring := 0 // replicas of down nodes that failover restores
	for _, r := range replicas {
		_, up := ready[r.Node]
		switch {
		case !r.State.Ended() && up && !handled[r.GPID] && replacing[r.GPID] && !svc.Removing:
			// Its node is drained: it does not count; stopped once its
			// replacement runs.
			leaving = append(leaving, r)
		case !r.State.Ended() && up && !handled[r.GPID]:
			live = append(live, r)
		case !r.State.Ended() && up:
			// Handled yet running on a live node: a replica being stopped,
			// or one on a node that came back after it was replaced.
			if !in.Stopping[r.GPID] {
				plan.Stop = append(plan.Stop, r)
			}
		case !r.State.Ended() && r.CheckpointEvery > 0 && !svc.Removing:
			// Its node is down, and the failover controller restores it
			// from its checkpoints under its gpid (or records it lost,
			// and it is restarted then): it counts as running meanwhile.
			restoring++
		case !r.State.Ended():
			if !handled[r.GPID] {
				handle(r.GPID)
				if !svc.Removing {
					plan.Events = append(plan.Events, fmt.Sprintf("replica gpid %d: node %s is down (its lease expired); replacing it", r.GPID, r.Node))
				}
			}
		case !handled[r.GPID]:
			handle(r.GPID)
			if svc.Removing {
				continue
			}
			failed := r.State == pidtable.Lost || r.ExitCode == nil || *r.ExitCode != 0
			ended := r.Ended
			if ended.IsZero() {
				ended = in.Now
			}
			restart := spec.Restart == pidtable.RestartAlways || (spec.Restart == pidtable.RestartOnFailure && failed)
			how := "exited with status 0"
			if failed {
				how = describeEnd(r)
				if r.Started.IsZero() || ended.Sub(r.Started) < StableAfter {
					st.Failures++
				} else {
					st.Failures = 1
				}
				st.LastFailure = ended
			} else {
				st.Failures = 0
			}
			if restart {
				st.Restarts++
				delay := spec.RestartSec
				if failed {
					delay = Backoff(spec.RestartSec, st.Failures)
				}
				if next := ended.Add(delay); next.After(st.NextStart) {
					st.NextStart = next
				}
				plan.Events = append(plan.Events, fmt.Sprintf("replica gpid %d on %s %s; restarting it in %s (Restart=%s)", r.GPID, r.Node, how, delay.Round(time.Millisecond), spec.Restart))
			} else {
				st.Completed++
				plan.Events = append(plan.Events, fmt.Sprintf("replica gpid %d on %s %s; not restarted (Restart=%s)", r.GPID, r.Node, how, spec.Restart))
			}
		}
	}
	for _, r := range plan.Stop {
		handle(r.GPID)
	}
	// Forget what has no record any more.
	present := map[uint64]bool{}
	for _, r := range replicas {
		present[r.GPID] = true
	}
	st.Handled = st.Handled[:0]
	for _, g := range slices.Sorted(maps.Keys(handled)) {
		if present[g] {
			st.Handled = append(st.Handled, g)
		}
	}

	want := max(spec.Replicas-st.Completed, 0)
	if svc.Removing {
		want = 0
	}
	need := want - len(live) - restoring - in.Pending
	stale := 0
	for _, r := range live {
		if r.ServiceHash != svc.RunHash {
			stale++
		}
	}
	var shortfall string
	switch {
	case need < 0:
		victims := victimOrder(live, svc.RunHash)
		for _, r := range victims[:min(-need, len(victims))] {
			plan.Stop = append(plan.Stop, r)
			handle(r.GPID)
			st.Handled = append(st.Handled, r.GPID)
		}
		live = slices.DeleteFunc(live, func(r pidtable.Proc) bool {
			return slices.ContainsFunc(plan.Stop, func(s pidtable.Proc) bool { return s.GPID == r.GPID })
		})
	case need > 0 && in.Now.Before(st.NextStart):
		plan.Wake = st.NextStart
	case need > 0:
		plan.Start, shortfall = place(spec, need, live, in.PendingNodes, ready)
	case stale > 0 && in.Pending == 0 && len(in.Stopping) == 0:
		if svc.Rollout == "now" {
			for _, r := range live {
				if r.ServiceHash != svc.RunHash {
					plan.Stop = append(plan.Stop, r)
					st.Handled = append(st.Handled, r.GPID)
				}
			}
		} else {
			// Rolling: one new replica first; the next plan stops an old one.
			plan.Start, shortfall = place(spec, 1, live, in.PendingNodes, ready)
			if len(plan.Start) == 0 {
				// No room for one more (Spread=node on every node): replace
				// one old replica in place instead.
				victims := victimOrder(live, svc.RunHash)
				plan.Stop = append(plan.Stop, victims[0])
				st.Handled = append(st.Handled, victims[0].GPID)
				shortfall = ""
			}
		}
	}
	if shortfall != "" {
		plan.Events = append(plan.Events, shortfall)
	}
	// Replicas of drained nodes go once the others run the count without
	// them: never fewer running than asked, where there is room elsewhere.
	running := 0
	for _, r := range live {
		if r.State == pidtable.Running {
			running++
		}
	}
	if len(leaving) > 0 && running >= want {
		for _, r := range leaving {
			if !in.Stopping[r.GPID] {
				plan.Stop = append(plan.Stop, r)
				st.Handled = append(st.Handled, r.GPID)
				plan.Events = append(plan.Events, fmt.Sprintf("replica gpid %d on %s, a node being drained: stopped, %d replicas run elsewhere", r.GPID, r.Node, running))
			}
		}
		leaving = nil
	}
	sort.Slice(st.Handled, func(i, j int) bool { return st.Handled[i] < st.Handled[j] })
	st.Handled = slices.Compact(st.Handled)

	// The status.
	st.Want, st.Running, st.Nodes = want, 0, nil
	nodes := map[string]bool{}
	for _, r := range live {
		if r.State == pidtable.Running || r.State == pidtable.Migrating || r.State == pidtable.Checkpointing {
			st.Running++
			nodes[r.Node] = true
		}
	}
	st.Nodes = slices.Sorted(maps.Keys(nodes))
	st.State, st.Message = StateRunning, ""
	switch {
	case svc.Removing:
		st.State, st.Message = StateRemoving, fmt.Sprintf("stopping %d replicas", len(live)+len(in.Stopping))
		plan.Delete = len(live) == 0 && len(plan.Stop) == 0 && len(in.Stopping) == 0 && in.Pending == 0
	case need > 0 && !plan.Wake.IsZero():
		st.State = StateRestarting
		if st.Failures >= CrashLoopAfter {
			st.State = StateCrashLoop
		}
		st.Message = fmt.Sprintf("%d failures in a row, last at %s; next start at %s (backoff %s, at most %s)", st.Failures, st.LastFailure.Format(time.TimeOnly), st.NextStart.Format(time.TimeOnly), Backoff(spec.RestartSec, st.Failures), MaxBackoff)
	case shortfall != "":
		st.State, st.Message = StateDegraded, shortfall
	case stale > 0:
		st.State, st.Message = StateUpdating, fmt.Sprintf("%d of %d replicas run the previous version", stale, len(live))
	case want == 0 && spec.Replicas > 0:
		st.State, st.Message = StateStopped, fmt.Sprintf("all %d replicas ended and Restart=%s", spec.Replicas, spec.Restart)
	case st.Running < want:
		st.State = StateStarting
		switch {
		case restoring > 0:
			st.Message = fmt.Sprintf("%d replicas on dead nodes being restored from their checkpoints", restoring)
		case len(leaving) > 0:
			st.Message = fmt.Sprintf("%d replicas on drained nodes being replaced (they run until their replacements do)", len(leaving))
		}
	}
	plan.Status = st
	return plan
}

func describeEnd(r pidtable.Proc) string {
	switch {
	case r.State == pidtable.Lost:
		return "was lost (" + r.Error + ")"
	case r.ExitCode == nil:
		return "ended (" + string(r.State) + ")"
	case *r.ExitCode > 128:
		return fmt.Sprintf("was killed (status %d: signal %d)", *r.ExitCode, *r.ExitCode-128)
	}
	return fmt.Sprintf("failed with status %d", *r.ExitCode)
}

// victimOrder orders live replicas for stopping: those running an old
// version first, then those sharing a node with others, then the newest.
func victimOrder(live []pidtable.Proc, runHash string) []pidtable.Proc {
	perNode := map[string]int{}
	for _, r := range live {
		perNode[r.Node]++
	}
	out := slices.Clone(live)
	slices.SortStableFunc(out, func(a, b pidtable.Proc) int {
		if c := cmp.Compare(boolInt(a.ServiceHash == runHash), boolInt(b.ServiceHash == runHash)); c != 0 {
			return c
		}
		if c := cmp.Compare(perNode[b.Node], perNode[a.Node]); c != 0 {
			return c
		}
		// The newest first: by creation (gpids come from per-node blocks,
		// so their order is not the order of creation across nodes).
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return cmp.Compare(b.GPID, a.GPID)
	})
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// place picks a node for each of n new replicas: a ready node that meets
// the constraints, with the fewest replicas of the service (with
// Spread=node: none), then the least load, then by name. It returns the
// nodes, and what could not be placed and why.
func place(spec pidtable.ServiceSpec, n int, live []pidtable.Proc, pending []string, ready map[string]Node) ([]string, string) {
	count := map[string]int{}
	for _, r := range live {
		count[r.Node]++
	}
	for _, p := range pending {
		count[p]++
	}
	var eligible []Node
	cordoned := 0
	for _, nd := range ready {
		switch {
		case nd.Cordoned:
			cordoned++
		case meets(nd.Labels, spec.Constraints):
			eligible = append(eligible, nd)
		}
	}
	var out []string
	for range n {
		best := -1
		for i, nd := range eligible {
			if spec.Spread == pidtable.SpreadNode && count[nd.Name] > 0 {
				continue
			}
			if best < 0 || less(nd, eligible[best], count) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		out = append(out, eligible[best].Name)
		count[eligible[best].Name]++
	}
	if len(out) == n {
		return out, ""
	}
	short := n - len(out)
	switch {
	case len(ready) == 0:
		return out, fmt.Sprintf("%d replicas cannot be placed: no node is ready", short)
	case len(ready) == cordoned:
		return out, fmt.Sprintf("%d replicas cannot be placed: every ready node is cordoned (ssi node uncordon NAME)", short)
	case len(eligible) == 0:
		return out, fmt.Sprintf("%d replicas cannot be placed: no ready node has the labels %s", short, labelList(spec.Constraints))
	}
	return out, fmt.Sprintf("%d replicas cannot be placed: Spread=node and only %d eligible nodes are ready", short, len(eligible))
}

func less(a, b Node, count map[string]int) bool {
	if count[a.Name] != count[b.Name] {
		return count[a.Name] < count[b.Name]
	}
	if a.Load != b.Load {
		return a.Load < b.Load
	}
	return a.Name < b.Name
}

func meets(labels, constraints map[string]string) bool {
	for k, v := range constraints {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func labelList(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

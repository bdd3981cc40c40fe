package balancer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/placement"
)

// rejectEvery bounds how often one job's rejection is logged when its reason
// keeps changing.
const rejectEvery = 10 * time.Second

// maxRejectEvents bounds the rejection events one round records: each is an
// etcd write, and a cluster with 100,000 jobs on overloaded nodes rejected
// them all in one round, which then took 196 s writing events one by one
// (hack/benchhollow, 100 nodes × 100,000 jobs). The rejections past the bound
// are recorded by later rounds, this bound at a time.
const maxRejectEvents = 20

type rejection struct {
	class string
	at    time.Time
}

// round is one balancing round of the leader's term; the moves it starts
// belong to life.
func (b *Balancer) round(ctx, life context.Context, lease clientv3.LeaseID) error {
	cfg, _, err := b.cfg.Table.BalancerConfig(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	b.mu.Lock()
	b.enabled = cfg.Enabled
	if !cfg.Enabled {
		clear(b.rejected) // start afresh when switched on again
	}
	b.mu.Unlock()
	if cfg.Enabled {
		snap, err := b.cfg.Table.Snapshot(ctx)
		if err != nil {
			return err
		}
		pcfg := b.config(cfg)
		nodes, jobs := b.viewIfOverloaded(snap, now, pcfg)
		plan := placement.Balance(nodes, jobs, pcfg)
		for _, mv := range plan.Moves {
			b.start(ctx, life, snap, mv)
		}
		b.logRejections(ctx, plan.Rejected, jobs, now)
	}
	st := b.status(now)
	st.RoundTook = time.Since(now)
	return b.cfg.Table.PublishBalancerStatus(ctx, st, lease)
}

// view builds the policy's input from a snapshot: Ready nodes with the
// migrations in flight from or to each, and the running jobs of Ready nodes
// (those of a node being drained count as pinned: the drain moves them).
//
// A node's load is the sum of the demands of the jobs the process table puts
// on it, not the node's published sum: a node publishes every second, so right
// after a move the target's last figures lack the job and the source's still
// have it, and a round that believed them would send the next job to a node
// that is fuller than it looks (and later move jobs back). A job's demand is
// from its owner's status; a job not in it yet (it just arrived) keeps the
// demand its previous node or an earlier round saw, else counts as one CPU.
func (b *Balancer) view(snap *pidtable.Snapshot, now time.Time) ([]placement.BalanceNode, []placement.BalanceJob) {
	return b.viewFor(snap, now, nil)
}

// viewIfOverloaded is view without the jobs when no node is overloaded
// (placement.AnyOverloaded): the round then has nothing to plan, and a
// quiet cluster of 100,000 jobs does not build their list every second.
func (b *Balancer) viewIfOverloaded(snap *pidtable.Snapshot, now time.Time, cfg placement.BalanceConfig) ([]placement.BalanceNode, []placement.BalanceJob) {
	return b.viewFor(snap, now, func(nodes []placement.BalanceNode) bool { return placement.AnyOverloaded(nodes, cfg) })
}

func (b *Balancer) viewFor(snap *pidtable.Snapshot, now time.Time, worth func([]placement.BalanceNode) bool) ([]placement.BalanceNode, []placement.BalanceJob) {
	b.mu.Lock()
	defer b.mu.Unlock()
	inflight := map[string]int{}
	counted := map[uint64]bool{}
	for _, p := range snap.Procs {
		if p.State == pidtable.Migrating && p.Migration != nil {
			inflight[p.Node]++
			inflight[p.Migration.Target]++
			counted[p.GPID] = true
		}
	}
	for g, m := range b.inflight {
		if !counted[g] { // started, not yet claimed by the source
			inflight[m.From]++
			inflight[m.To]++
		}
	}
	// A drained node's jobs are the drain's: it moves them at its own
	// parallelism and records each; the balancer moving them too would
	// exceed it and race it for the same jobs.
	draining := map[string]bool{}
	for _, n := range snap.Nodes {
		draining[n.Name] = n.Draining
	}
	// Nothing to plan when no node's own figures say it is above a job per
	// core and no move is in flight: a quiet cluster of 100,000 jobs is not
	// walked every second (its leader's CPU went from 15 % of a core to
	// what the statuses' watch costs). A node's published demand lags the
	// table by a status interval after a move, so a node just filled by
	// moves may wait that long for the next round that sees it.
	if worth != nil && len(b.inflight) == 0 && !publishedOverload(snap) {
		return nil, nil
	}
	// First the demands and the nodes' loads, then (if worth it) the jobs.
	load := map[string]float64{}
	seen := map[uint64]float64{}
	// elsewhere: the demands every status lists, for the jobs their owner's
	// status does not list yet (just moved): built at the first such job.
	var elsewhere map[uint64]float64
	live := func(p *pidtable.Proc) bool {
		if p.State != pidtable.Running && p.State != pidtable.Migrating {
			return false
		}
		_, ready := snap.Status[p.Node]
		return ready
	}
	for i := range snap.Procs {
		p := &snap.Procs[i]
		if !live(p) {
			continue
		}
		ps, measured := snap.Status[p.Node].Procs[p.GPID]
		demand := ps.Demand
		if !measured {
			demand = 1
			if d, ok := b.demand[p.GPID]; ok {
				demand = d
			}
			if elsewhere == nil { // once a round, not once a job
				elsewhere = map[uint64]float64{}
				for _, other := range snap.Status {
					for g, o := range other.Procs {
						elsewhere[g] = o.Demand
					}
				}
			}
			if d, ok := elsewhere[p.GPID]; ok {
				demand = d
			}
		}
		seen[p.GPID] = demand
		load[p.Node] += demand
	}
	b.demand = seen
	b.backoff.keep(seen)
	nodes := make([]placement.BalanceNode, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		pn := placement.Node{Name: n.Name, CPUs: n.CPUs, Memory: n.Memory, Labels: n.Labels, Cordoned: n.Cordoned, Protocol: n.Protocol}
		if st, ok := snap.Status[n.Name]; ok {
			pn.Ready, pn.Load, pn.Jobs, pn.ReservedCPUs, pn.ReservedMemory = true, load[n.Name], st.Jobs, st.ReservedCPUs, st.ReservedMemory
		}
		nodes = append(nodes, placement.BalanceNode{Node: pn, Inflight: inflight[n.Name]})
	}
	if worth != nil && !worth(nodes) {
		return nodes, nil
	}
	var jobs []placement.BalanceJob
	for i := range snap.Procs {
		p := &snap.Procs[i]
		if !live(p) || p.Started.IsZero() {
			continue
		}
		arrived := p.Arrived
		if arrived.IsZero() {
			arrived = p.Started
		}
		_, moving := b.inflight[p.GPID]
		jobs = append(jobs, placement.BalanceJob{
			GPID: p.GPID, Node: p.Node,
			Age: max(now.Sub(p.Started), 0), Resident: max(now.Sub(arrived), 0), Moved: p.Epoch > 1,
			Demand: seen[p.GPID], Memory: snap.Status[p.Node].Procs[p.GPID].RSS,
			CPUs: p.CPUs, MemoryRequest: p.Memory, Constraints: p.Constraints,
			Pinned: p.Pinned || p.TTY || draining[p.Node], Migrating: moving || p.State == pidtable.Migrating,
			BackedOff: b.backoff.left(p.GPID, now),
		})
	}
	return nodes, jobs
}

// publishedOverload reports whether some Ready node's published demand
// is above one job per core: the cheap test before a round's walk over the
// jobs.
func publishedOverload(snap *pidtable.Snapshot) bool {
	for _, n := range snap.Nodes {
		if st, ok := snap.Status[n.Name]; ok && st.Demand > max(n.CPUs, 1) {
			return true
		}
	}
	return false
}

// config is the policy's tuning: the cluster's overrides and what the moves
// so far measured (zero, i.e. the policy's defaults, until then).
func (b *Balancer) config(c pidtable.BalancerConfig) placement.BalanceConfig {
	b.mu.Lock()
	defer b.mu.Unlock()
	return placement.BalanceConfig{
		Residency: c.Residency, Hysteresis: c.Hysteresis, MaxInflightPerNode: c.MaxInflightPerNode,
		MaxMovesPerRound: c.MaxMovesPerRound, TransferRate: b.cost.rate, Freeze: b.cost.freeze, MaxFreeze: c.MaxFreeze,
	}
}

// start begins one move: the source agent runs the migration (as for ssi
// migrate); a goroutine of life waits for its outcome, records it and
// measures it.
func (b *Balancer) start(ctx, life context.Context, snap *pidtable.Snapshot, mv placement.Move) {
	src, ok := snap.Node(mv.From)
	if !ok {
		return
	}
	b.mu.Lock()
	if _, busy := b.inflight[mv.GPID]; busy {
		b.mu.Unlock()
		return
	}
	started := time.Now()
	b.inflight[mv.GPID] = pidtable.InflightMove{GPID: mv.GPID, User: ownerIn(snap, mv.GPID), From: mv.From, To: mv.To, Started: started.UTC()}
	b.moves++
	b.mu.Unlock()
	b.cfg.Record(ctx, pidtable.Event{Kind: pidtable.EventMove, GPID: mv.GPID, From: mv.From, To: mv.To, Reason: mv.Reason, Gain: mv.Gain, Cost: mv.Cost})
	// The migration runs in the source agent whatever becomes of this one's
	// leadership; its outcome is still worth recording, unless this agent
	// stops meanwhile (life ends).
	mctx, cancel := context.WithTimeout(life, b.cfg.MoveTimeout)
	b.moving.Add(1)
	go func() {
		defer b.moving.Done()
		defer cancel()
		st, err := b.cfg.Mover.Move(mctx, src.Addr, mv.GPID, api.MigrateRequest{Node: mv.To, PostCopy: mv.PostCopy})
		if errors.Is(err, api.ErrStreamLost) {
			err = b.outcome(mctx, mv)
		}
		b.mu.Lock()
		delete(b.inflight, mv.GPID)
		if life.Err() != nil {
			// The agent is stopping: the source completes or rolls back the
			// move on its own, and no figure of it is known here.
			b.mu.Unlock()
			return
		}
		var delay time.Duration
		if err == nil {
			b.done++
			b.cost.measure(st)
			b.backoff.forget(mv.GPID)
		} else {
			b.failed++
			delay = b.backoff.fail(mv.GPID, time.Now())
		}
		b.mu.Unlock()
		ev := pidtable.Event{GPID: mv.GPID, From: mv.From, To: mv.To, Took: time.Since(started)}
		if err != nil {
			ev.Kind, ev.Reason = pidtable.EventFailed, fmt.Sprintf("%v (not moved again for %s)", err, delay)
		} else {
			ev.Kind = pidtable.EventMoved
			ev.Frozen, ev.Bytes = time.Duration(st.FrozenMS*float64(time.Millisecond)), st.ImageBytes
		}
		b.cfg.Record(mctx, ev)
	}()
}

// outcome reads how a move whose progress stream broke ended, from the
// record, waiting while it is still migrating.
func (b *Balancer) outcome(ctx context.Context, mv placement.Move) error {
	for ctx.Err() == nil {
		p, _, err := b.cfg.Table.Get(ctx, mv.GPID)
		switch {
		case err != nil:
		case p.State == pidtable.Migrating:
		case p.Node == mv.To:
			return nil
		case p.MigrationError != "":
			return fmt.Errorf("%s (progress stream lost; reason from the record)", p.MigrationError)
		default:
			return fmt.Errorf("progress stream lost; the job is %s on %s", p.State, p.Node)
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	return fmt.Errorf("outcome unknown: %w", ctx.Err())
}

// digits strips numbers from a reason, so that "gain 1.2s < cost 1.5s" and
// "gain 1.3s < cost 1.5s" count as the same reason.
var digits = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)

// logRejections writes a rejection event for a job only when its reason
// changed (numbers aside) and not more often than rejectEvery.
func (b *Balancer) logRejections(ctx context.Context, rejected []placement.Rejection, jobs []placement.BalanceJob, now time.Time) {
	var fresh []placement.Rejection
	b.mu.Lock()
	for _, r := range rejected {
		class := digits.ReplaceAllString(r.Reason, "#")
		last, seen := b.rejected[r.GPID]
		if seen && (last.class == class || now.Sub(last.at) < rejectEvery) {
			continue
		}
		if len(fresh) == maxRejectEvents {
			continue // a later round's
		}
		b.rejected[r.GPID] = rejection{class: class, at: now}
		fresh = append(fresh, r)
	}
	if jobs != nil { // nil: a round that had nothing to plan; forget nothing
		live := make(map[uint64]bool, len(jobs))
		for _, j := range jobs {
			live[j.GPID] = true
		}
		for g := range b.rejected {
			if !live[g] {
				delete(b.rejected, g)
			}
		}
	}
	b.mu.Unlock()
	for _, r := range fresh {
		b.cfg.Record(ctx, pidtable.Event{Kind: pidtable.EventRejected, GPID: r.GPID, From: r.Node, Reason: r.Reason})
	}
}

// ownerIn returns the user owning gpid in snap ("" if it is not there).
func ownerIn(snap *pidtable.Snapshot, gpid uint64) string {
	i, ok := slices.BinarySearchFunc(snap.Procs, gpid, func(p pidtable.Proc, g uint64) int { return cmp.Compare(p.GPID, g) })
	if !ok {
		return ""
	}
	return snap.Procs[i].User
}

package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/placement"
)

// The automatic balancer. Every agent (unless started with --balancer=false)
// campaigns in an etcd election on its session; the winner runs a round every
// balanceInterval while the cluster's setting (/ssi/balancer/config) says
// enabled: it reads the process table and the nodes' statuses at one revision,
// hands them to placement.Balance (a pure function), starts the moves it
// returns through the source agents' migrate API (the same path as ssi
// migrate), and writes every decision as an event. When its lease is lost
// (agent dead, or cut off from etcd for a TTL) another agent's campaign wins.
// A move is a migration: transactional on its own, so a second leader during
// a hand-over can at worst have a move refused ("already being migrated").

const (
	balanceInterval = time.Second
	// rejectEvery bounds how often one job's rejection is logged when its
	// reason keeps changing.
	rejectEvery = 10 * time.Second
	// rateWeight is the weight of the newest move in the measured transfer
	// rate and freeze (an exponentially weighted average).
	rateWeight = 0.3
	// minRateSample is the least image size of a move that says something
	// about the transfer rate (see measure).
	minRateSample = 32 << 20
	// balancerUser is the identity the leader presents to source agents.
	balancerUser = "ssi-balancer"
)

// balancer is the leader-side state. It outlives a leadership term: moves
// started in one term finish (and are measured) even if the agent lost the
// election meanwhile.
type balancer struct {
	a      *Agent
	events *eventLog

	mu       sync.Mutex
	inflight map[uint64]pidtable.InflightMove
	moves    int
	done     int
	failed   int
	rate     float64       // bytes/s, 0 until a big enough move was measured
	freeze   time.Duration // 0 until a move was measured
	measured int
	clients  map[string]*api.Client
	// rejected remembers the last rejection logged per job, for dedupe.
	rejected map[uint64]rejection
	// demand is each live job's demand as the last round saw it.
	demand map[uint64]float64
	// backoff holds back jobs a move failed for, per job, growing.
	backoff map[uint64]backoff
	enabled bool
}

// backoff is how long the balancer leaves a job alone after failed moves:
// moveBackoff after the first failure, doubling with each failure that
// follows, at most maxMoveBackoff. A job that keeps failing to move (it
// cannot be dumped, say) is then tried a few times an hour, not every round,
// and the round moves the others meanwhile.
type backoff struct {
	until time.Time
	delay time.Duration
}

const (
	moveBackoff    = 10 * time.Second
	maxMoveBackoff = 10 * time.Minute
)

// failedMove backs gpid off after a failed move (b.mu held).
func (b *balancer) failedMove(gpid uint64, now time.Time) time.Duration {
	bo := b.backoff[gpid]
	bo.delay = min(max(2*bo.delay, moveBackoff), maxMoveBackoff)
	bo.until = now.Add(bo.delay)
	b.backoff[gpid] = bo
	return bo.delay
}

type rejection struct {
	class string
	at    time.Time
}

func newBalancer(a *Agent, events *eventLog) *balancer {
	return &balancer{a: a, events: events, inflight: map[uint64]pidtable.InflightMove{}, clients: map[string]*api.Client{}, rejected: map[uint64]rejection{}, backoff: map[uint64]backoff{}}
}

// balancerLoop campaigns for the balancer's leadership and, while leading,
// runs rounds. It returns when ctx ends.
func (a *Agent) balancerLoop(ctx context.Context) {
	b := a.balancer
	for ctx.Err() == nil {
		s := a.session.Load()
		select {
		case <-s.Done():
			// statusLoop is replacing the session.
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		default:
		}
		term, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-s.Done():
			case <-term.Done():
			}
			cancel()
		}()
		el := concurrency.NewElection(s, pidtable.BalancerLeaderPrefix)
		if err := el.Campaign(term, a.cfg.Name); err != nil {
			cancel()
			if ctx.Err() == nil {
				a.log.Debug("balancer: campaign", "err", err)
				sleepCtx(ctx, time.Second)
			}
			continue
		}
		a.log.Info("balancer: elected leader")
		b.events.add(term, pidtable.Event{Kind: pidtable.EventLeader, Reason: "elected leader of the balancer"})
		b.lead(term, s.Lease())
		cancel()
		if ctx.Err() == nil {
			a.log.Warn("balancer: lost the leadership (etcd lease lost)")
		}
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = el.Resign(rctx)
		rcancel()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// lead runs a round every balanceInterval until ctx ends.
func (b *balancer) lead(ctx context.Context, lease clientv3.LeaseID) {
	t := time.NewTicker(balanceInterval)
	defer t.Stop()
	for {
		if err := b.round(ctx, lease); err != nil && ctx.Err() == nil {
			b.a.log.Warn("balancer: round", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round is one balancing round.
func (b *balancer) round(ctx context.Context, lease clientv3.LeaseID) error {
	a := b.a
	cfg, _, err := a.store.BalancerConfig(ctx)
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
		snap, err := a.store.Snapshot(ctx)
		if err != nil {
			return err
		}
		nodes, jobs := b.view(snap, now)
		plan := placement.Balance(nodes, jobs, b.config(cfg))
		for _, mv := range plan.Moves {
			b.start(ctx, snap, mv)
		}
		b.logRejections(ctx, plan.Rejected, jobs, now)
	}
	return a.store.PublishBalancerStatus(ctx, b.status(now), lease)
}

// view builds the policy's input from a snapshot: Ready nodes with the
// migrations in flight from or to each, and the running jobs of Ready nodes.
//
// A node's load is the sum of the demands of the jobs the process table puts
// on it, not the node's published sum: a node publishes every second, so right
// after a move the target's last figures lack the job and the source's still
// have it, and a round that believed them would send the next job to a node
// that is fuller than it looks (and later move jobs back). A job's demand is
// from its owner's status; a job not in it yet (it just arrived) keeps the
// demand its previous node or an earlier round saw, else counts as one CPU.
func (b *balancer) view(snap *pidtable.Snapshot, now time.Time) ([]placement.BalanceNode, []placement.BalanceJob) {
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
	load := map[string]float64{}
	var jobs []placement.BalanceJob
	seen := map[uint64]float64{}
	for _, p := range snap.Procs {
		if p.State != pidtable.Running && p.State != pidtable.Migrating {
			continue
		}
		st, ready := snap.Status[p.Node]
		if !ready {
			continue
		}
		ps, measured := st.Procs[p.GPID]
		demand := ps.Demand
		if !measured {
			demand = 1
			if d, ok := b.demand[p.GPID]; ok {
				demand = d
			}
			for _, other := range snap.Status {
				if o, ok := other.Procs[p.GPID]; ok {
					demand = o.Demand
				}
			}
		}
		seen[p.GPID] = demand
		load[p.Node] += demand
		if p.Started.IsZero() {
			continue
		}
		arrived := p.Arrived
		if arrived.IsZero() {
			arrived = p.Started
		}
		_, moving := b.inflight[p.GPID]
		var backedOff time.Duration
		if bo, ok := b.backoff[p.GPID]; ok {
			backedOff = max(bo.until.Sub(now), 0)
		}
		jobs = append(jobs, placement.BalanceJob{
			GPID: p.GPID, Node: p.Node,
			Age: max(now.Sub(p.Started), 0), Resident: max(now.Sub(arrived), 0), Moved: p.Epoch > 1,
			Demand: demand, Memory: ps.RSS,
			CPUs: p.CPUs, MemoryRequest: p.Memory, Constraints: p.Constraints,
			Pinned: p.Pinned || p.TTY, Migrating: moving || p.State == pidtable.Migrating,
			BackedOff: backedOff,
		})
	}
	b.demand = seen
	for g := range b.backoff {
		if _, live := seen[g]; !live {
			delete(b.backoff, g) // ended or gone: forget it
		}
	}
	nodes := make([]placement.BalanceNode, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		pn := placement.Node{Name: n.Name, CPUs: n.CPUs, Memory: n.Memory, Labels: n.Labels}
		if st, ok := snap.Status[n.Name]; ok {
			pn.Ready, pn.Load, pn.Jobs, pn.ReservedCPUs, pn.ReservedMemory = true, load[n.Name], st.Jobs, st.ReservedCPUs, st.ReservedMemory
		}
		nodes = append(nodes, placement.BalanceNode{Node: pn, Inflight: inflight[n.Name]})
	}
	return nodes, jobs
}

// config is the policy's tuning: the cluster's overrides and what the moves
// so far measured (zero, i.e. the policy's defaults, until then).
func (b *balancer) config(c pidtable.BalancerConfig) placement.BalanceConfig {
	b.mu.Lock()
	defer b.mu.Unlock()
	return placement.BalanceConfig{
		Residency: c.Residency, Hysteresis: c.Hysteresis, MaxInflightPerNode: c.MaxInflightPerNode,
		MaxMovesPerRound: c.MaxMovesPerRound, TransferRate: b.rate, Freeze: b.freeze, MaxFreeze: c.MaxFreeze,
	}
}

// start begins one move: the source agent runs the migration (as for ssi
// migrate); a goroutine waits for its outcome, records it and measures it.
func (b *balancer) start(ctx context.Context, snap *pidtable.Snapshot, mv placement.Move) {
	src, ok := snap.Node(mv.From)
	if !ok {
		return
	}
	b.mu.Lock()
	if _, busy := b.inflight[mv.GPID]; busy {
		b.mu.Unlock()
		return
	}
	cl, err := b.client(src.Addr)
	if err != nil {
		b.mu.Unlock()
		b.events.add(ctx, pidtable.Event{Kind: pidtable.EventFailed, GPID: mv.GPID, From: mv.From, To: mv.To, Reason: err.Error()})
		return
	}
	started := time.Now()
	b.inflight[mv.GPID] = pidtable.InflightMove{GPID: mv.GPID, User: ownerIn(snap, mv.GPID), From: mv.From, To: mv.To, Started: started.UTC()}
	b.moves++
	b.mu.Unlock()
	b.events.add(ctx, pidtable.Event{Kind: pidtable.EventMove, GPID: mv.GPID, From: mv.From, To: mv.To, Reason: mv.Reason, Gain: mv.Gain, Cost: mv.Cost})
	// The migration runs in the source agent whatever becomes of this one's
	// leadership; its outcome is still worth recording.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), migrate.Timeout+time.Minute)
	go func() {
		defer cancel()
		st, err := cl.Migrate(mctx, mv.GPID, api.MigrateRequest{Node: mv.To, PostCopy: mv.PostCopy}, nil)
		if errors.Is(err, api.ErrStreamLost) {
			err = b.outcome(mctx, mv)
		}
		b.mu.Lock()
		delete(b.inflight, mv.GPID)
		var delay time.Duration
		if err == nil {
			b.done++
			b.measure(st)
			delete(b.backoff, mv.GPID)
		} else {
			b.failed++
			delay = b.failedMove(mv.GPID, time.Now())
		}
		b.mu.Unlock()
		ev := pidtable.Event{GPID: mv.GPID, From: mv.From, To: mv.To, Took: time.Since(started)}
		if err != nil {
			ev.Kind, ev.Reason = pidtable.EventFailed, fmt.Sprintf("%v (not moved again for %s)", err, delay)
		} else {
			ev.Kind = pidtable.EventMoved
			ev.Frozen, ev.Bytes = time.Duration(st.FrozenMS*float64(time.Millisecond)), st.ImageBytes
		}
		b.events.add(mctx, ev)
	}()
}

// client returns an API client for the agent at addr (b.mu held).
func (b *balancer) client(addr string) (*api.Client, error) {
	if c := b.clients[addr]; c != nil {
		return c, nil
	}
	var c *api.Client
	var err error
	if b.a.node != nil {
		// The leader moves jobs as itself (its node certificate); the source
		// checks that it is the elected leader (the job-mover role, admitMover).
		c, err = api.NewTLSClient(addr, b.a.node.ClientTLS())
	} else {
		c, err = api.NewClient(addr, balancerUser, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("balancer: agent address %q: %w", addr, err)
	}
	b.clients[addr] = c
	return c, nil
}

// outcome reads how a move whose progress stream broke ended, from the
// record, waiting while it is still migrating.
func (b *balancer) outcome(ctx context.Context, mv placement.Move) error {
	for ctx.Err() == nil {
		p, _, err := b.a.store.Get(ctx, mv.GPID)
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

// measure folds a finished move into the cost model's two figures, in the
// policy's sense (placement.DefaultBalanceConfig): TransferRate is the rate of
// the whole stop-and-copy (dump, transfer, restore) per image byte, Freeze the
// fixed part of a move. One move of a small job says nothing about the rate
// (its frozen time is nearly all fixed costs), so: every move updates Freeze
// with its frozen time minus what the current rate explains; only moves of at
// least minRateSample image bytes update the rate with what the current
// Freeze leaves unexplained. Both are exponentially weighted averages. b.mu
// held.
func (b *balancer) measure(st api.MigrateStats) {
	if st.StreamLost || st.PostCopy || st.ImageBytes <= 0 || st.FrozenMS <= 0 {
		return // a post-copy move's freeze says nothing of the transfer rate
	}
	def := placement.DefaultBalanceConfig()
	rate, freeze := b.rate, b.freeze
	if rate == 0 {
		rate = def.TransferRate
	}
	if freeze == 0 {
		freeze = def.Freeze
	}
	frozen := time.Duration(st.FrozenMS * float64(time.Millisecond))
	byRate := time.Duration(float64(st.ImageBytes) / rate * float64(time.Second))
	fold := func(old, sample float64) float64 {
		if b.measured == 0 {
			return sample
		}
		return (1-rateWeight)*old + rateWeight*sample
	}
	b.freeze = time.Duration(fold(float64(b.freeze), float64(max(frozen-byRate, 0))))
	if st.ImageBytes >= minRateSample && frozen > freeze {
		sample := float64(st.ImageBytes) / (frozen - freeze).Seconds()
		if b.rate == 0 {
			b.rate = sample
		} else {
			b.rate = (1-rateWeight)*b.rate + rateWeight*sample
		}
	}
	b.measured++
}

// digits strips numbers from a reason, so that "gain 1.2s < cost 1.5s" and
// "gain 1.3s < cost 1.5s" count as the same reason.
var digits = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)

// logRejections writes a rejection event for a job only when its reason
// changed (numbers aside) and not more often than rejectEvery.
func (b *balancer) logRejections(ctx context.Context, rejected []placement.Rejection, jobs []placement.BalanceJob, now time.Time) {
	var fresh []placement.Rejection
	b.mu.Lock()
	for _, r := range rejected {
		class := digits.ReplaceAllString(r.Reason, "#")
		last, seen := b.rejected[r.GPID]
		if seen && (last.class == class || now.Sub(last.at) < rejectEvery) {
			continue
		}
		b.rejected[r.GPID] = rejection{class: class, at: now}
		fresh = append(fresh, r)
	}
	live := make(map[uint64]bool, len(jobs))
	for _, j := range jobs {
		live[j.GPID] = true
	}
	for g := range b.rejected {
		if !live[g] {
			delete(b.rejected, g)
		}
	}
	b.mu.Unlock()
	for _, r := range fresh {
		b.events.add(ctx, pidtable.Event{Kind: pidtable.EventRejected, GPID: r.GPID, From: r.Node, Reason: r.Reason})
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

// status is what the leader publishes after a round.
func (b *balancer) status(now time.Time) pidtable.BalancerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := pidtable.BalancerStatus{
		Leader: b.a.cfg.Name, Enabled: b.enabled, LastRound: now.UTC(),
		Moves: b.moves, MovesDone: b.done, MovesFail: b.failed,
		TransferRate: b.rate, Freeze: b.freeze, Measured: b.measured,
	}
	for _, m := range b.inflight {
		st.Inflight = append(st.Inflight, m)
	}
	return st
}

// handleBalance is GET /v1/balancer.
func (a *Agent) handleBalance(w http.ResponseWriter, r *http.Request) {
	st, err := a.balanceStatus(r.Context(), callerOf(r))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// balanceStatus is the balancer's state as who may see it: a user sees the
// recent moves of their own jobs only.
func (a *Agent) balanceStatus(ctx context.Context, who caller) (api.BalanceStatus, error) {
	cfg, st, ok, leader, err := a.store.BalancerState(ctx)
	if err != nil {
		return api.BalanceStatus{}, err
	}
	out := api.BalanceStatus{Config: cfg, Leader: leader}
	if ok {
		var seen []pidtable.InflightMove
		for _, m := range st.Inflight {
			if visible(who, m.User) {
				seen = append(seen, m)
			}
		}
		st.Inflight = seen
		out.Status = &st
	}
	evs, _, err := a.store.Events(ctx, 0, 0, 0)
	if err != nil {
		return api.BalanceStatus{}, err
	}
	for i := len(evs) - 1; i >= 0 && len(out.Recent) < 10; i-- {
		if !visible(who, evs[i].User) {
			continue
		}
		switch evs[i].Kind {
		case pidtable.EventMove, pidtable.EventMoved, pidtable.EventFailed:
			out.Recent = append(out.Recent, evs[i])
		}
	}
	return out, nil
}

// handleSetBalance is PUT /v1/balancer: on/off and tuning, cluster-wide.
func (a *Agent) handleSetBalance(w http.ResponseWriter, r *http.Request) {
	var req api.BalanceRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	switch {
	case req.Residency != nil && *req.Residency < 0:
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--residency %s: must not be negative", *req.Residency))
		return
	case req.Hysteresis != nil && *req.Hysteresis < 0:
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--hysteresis %g: must not be negative", *req.Hysteresis))
		return
	case req.MaxInflightPerNode != nil && *req.MaxInflightPerNode < 0:
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--max-inflight %d: must not be negative", *req.MaxInflightPerNode))
		return
	case req.MaxMovesPerRound != nil && *req.MaxMovesPerRound < 0:
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--max-moves %d: must not be negative", *req.MaxMovesPerRound))
		return
	case req.MaxFreeze != nil && *req.MaxFreeze < 0:
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--max-freeze %s: must not be negative", *req.MaxFreeze))
		return
	}
	cfg, err := a.store.UpdateBalancerConfig(r.Context(), func(c *pidtable.BalancerConfig) error {
		c.Enabled = req.Enabled
		if req.Residency != nil {
			c.Residency = *req.Residency
		}
		if req.Hysteresis != nil {
			c.Hysteresis = *req.Hysteresis
		}
		if req.MaxInflightPerNode != nil {
			c.MaxInflightPerNode = *req.MaxInflightPerNode
		}
		if req.MaxMovesPerRound != nil {
			c.MaxMovesPerRound = *req.MaxMovesPerRound
		}
		if req.MaxFreeze != nil {
			c.MaxFreeze = *req.MaxFreeze
		}
		return nil
	})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	state := "off"
	if cfg.Enabled {
		state = "on"
	}
	who := callerOf(r).user
	a.events.add(r.Context(), pidtable.Event{Kind: pidtable.EventConfig, Reason: fmt.Sprintf("balancer switched %s by %s (residency %s, hysteresis %g, max in flight per node %d, max moves per round %d, max freeze %s; 0: default)", state, who, cfg.Residency, cfg.Hysteresis, cfg.MaxInflightPerNode, cfg.MaxMovesPerRound, cfg.MaxFreeze)})
	st, err := a.balanceStatus(r.Context(), callerOf(r))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

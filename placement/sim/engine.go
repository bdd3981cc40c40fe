package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/placement"
)

// Scenario names a way of choosing where jobs run.
type Scenario string

// Scenarios.
const (
	None          Scenario = "none"           // every job runs where it was submitted
	Random        Scenario = "random"         // placement.Place, policy random
	LeastLoaded   Scenario = "least-loaded"   // placement.Place, policy least-loaded
	TwoChoices    Scenario = "two-choices"    // placement.Place, policy two-choices
	Balance       Scenario = "balance"        // where submitted, then placement.Balance every tick
	RandomBalance Scenario = "random+balance" // random placement, then placement.Balance every tick
)

// Scenarios lists every scenario, in the order reports show them.
var Scenarios = []Scenario{None, Random, LeastLoaded, TwoChoices, Balance, RandomBalance}

// ErrUnknownScenario is returned by ParseScenario.
var ErrUnknownScenario = errors.New("sim: unknown scenario")

// ErrInvariant is returned when the code under test broke a placement
// invariant during a run (a NotReady node chosen, a job moved from a node it
// is not on): a bug, not a property of the workload.
var ErrInvariant = errors.New("sim: invariant broken")

// ParseScenario validates a scenario name.
func ParseScenario(s string) (Scenario, error) {
	for _, sc := range Scenarios {
		if string(sc) == s {
			return sc, nil
		}
	}
	names := make([]string, len(Scenarios))
	for i, sc := range Scenarios {
		names[i] = string(sc)
	}
	return "", fmt.Errorf("%w %q (choose from %s)", ErrUnknownScenario, s, strings.Join(names, ", "))
}

func (s Scenario) policy() placement.Policy {
	switch s {
	case Random, RandomBalance:
		return placement.Random
	case LeastLoaded:
		return placement.LeastLoaded
	case TwoChoices:
		return placement.TwoChoices
	}
	return "" // the origin
}

func (s Scenario) balances() bool { return s == Balance || s == RandomBalance }

// Result is the outcome of one scenario. Times are in seconds of simulated
// time, except Wall.
type Result struct {
	Scenario Scenario `json:"scenario"`
	Load     float64  `json:"load"`
	Jobs     int      `json:"jobs"`
	// Makespan is the time from the first arrival to the last completion.
	Makespan float64 `json:"makespan_s"`
	// Slowdown is a job's response time (submission to exit, including time
	// frozen by migrations) over its work.
	MeanSlowdown float64 `json:"mean_slowdown"`
	P50Slowdown  float64 `json:"p50_slowdown"`
	P99Slowdown  float64 `json:"p99_slowdown"`
	MeanResponse float64 `json:"mean_response_s"`
	// Migrations is the number of moves, MovedJobs the jobs moved at least
	// once, Frozen the total time jobs spent frozen by moves.
	Migrations int     `json:"migrations"`
	MovedJobs  int     `json:"moved_jobs"`
	Frozen     float64 `json:"frozen_s"`
	// Rounds counts the calls of placement.Balance (ticks where some node was
	// oversubscribed), Rejections the jobs they considered and left.
	Rounds     int `json:"balance_rounds"`
	Rejections int `json:"rejections"`
	// MaxRoundMoves is the most moves one round decided.
	MaxRoundMoves int `json:"max_round_moves"`
	// MinResidentAtMove is the shortest time a job that had arrived by a
	// migration had been on its node when it moved again (-1: none); MovedBack counts moves straight back to the node the job
	// last left, MinReturn the shortest time between leaving and coming back
	// (-1: none).
	MinResidentAtMove float64 `json:"min_resident_at_move_s"`
	MovedBack         int     `json:"moved_back"`
	MinReturn         float64 `json:"min_return_s"`
	// Failures counts the nodes that died, FailedOver the jobs restored
	// elsewhere from a checkpoint, Lost the jobs that died with their node
	// (no checkpoints), Redone the work done again after failovers (what
	// ran since each job's last checkpoint).
	Failures   int     `json:"failures,omitempty"`
	FailedOver int     `json:"failed_over,omitempty"`
	Lost       int     `json:"lost,omitempty"`
	Redone     float64 `json:"redone_s,omitempty"`
	// Wall is the real time the run took.
	Wall float64 `json:"wall_s"`
}

// Run simulates scenario s on cfg's synthetic workload.
func Run(cfg Config, s Scenario) (Result, error) {
	jobs, err := Synthetic(cfg)
	if err != nil {
		return Result{}, err
	}
	return RunWorkload(cfg, jobs, s)
}

// RunWorkload simulates scenario s on jobs (sorted by arrival, origins below
// cfg.Nodes-cfg.NotReady); cfg's workload fields are ignored.
//
// Each tick the balancer is given every node and, of the jobs, only those on
// oversubscribed nodes (load per core above 1: the only ones Balance
// considers) and, of each such node, only its cfg.MaxJobsPerNode oldest
// (Balance takes a node's jobs oldest first and, with MaxInflightPerNode 1,
// moves at most one of them a round; passing hundreds per node each second
// would only lengthen the list of rejections). Ticks where no node is
// oversubscribed skip the call.
func RunWorkload(cfg Config, jobs []JobSpec, s Scenario) (Result, error) {
	start := time.Now()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	if _, err := ParseScenario(string(s)); err != nil {
		return Result{}, err
	}
	for i, j := range jobs {
		if j.Origin < 0 || j.Origin >= cfg.ready() {
			return Result{}, fmt.Errorf("%w: job %d: origin %d is not a Ready node (0..%d)", ErrBadConfig, i, j.Origin, cfg.ready()-1)
		}
		if j.Work <= 0 || (i > 0 && j.Arrival < jobs[i-1].Arrival) {
			return Result{}, fmt.Errorf("%w: job %d: work must be above 0 and jobs sorted by arrival", ErrBadConfig, i)
		}
	}
	e := newEngine(cfg, jobs, s)
	if err := e.run(); err != nil {
		return Result{}, err
	}
	r := e.result()
	r.Wall = time.Since(start).Seconds()
	return r, nil
}

const (
	evComplete = iota // a node's earliest job may be done (if version matches)
	evLand            // a migrating job arrives on its target
	evFail            // a node dies (failures.go)
	evRecover         // a dead node's job is restored elsewhere from its checkpoint
)

type event struct {
	t    float64
	seq  uint64
	kind uint8
	id   int32 // node (evComplete) or job (evLand)
	ver  uint32
}

type simJob struct {
	arrival, work float64
	memory        int64
	pinned        bool
	origin        int32
	node          int32   // where it runs; -1 before arrival, while migrating and after exit
	since         float64 // arrival on node
	moved         bool    // arrived on node by a migration
	rem           float64 // work left, valid while not on a node
	finishV       float64 // node's V at which it is done
	hidx          int32   // index in its node's heap
	from, to      int32   // last move
	leftAt        float64
	moves         int32
	end           float64
	lost          bool // died with its node (no checkpoint)
}

type simNode struct {
	cpus     float64
	v, lastT float64 // service each runnable job received since the start, as of lastT
	heap     []int32 // runnable jobs, min-heap on finishV
	version  uint32
	inflight int
}

type engine struct {
	cfg      Config
	scenario Scenario
	jobs     []simJob
	nodes    []simNode
	live     []placement.Node // current loads
	view     []placement.Node // the load table placement sees
	index    map[string]int
	rnd      *rand.Rand
	events   []event
	seq      uint64
	now      float64
	done     int

	bnodes  []placement.BalanceNode
	bjobs   []placement.BalanceJob
	scratch []int32

	rounds, rejections, migrations, movedBack, maxRound int
	frozen                                              float64
	minResident, minReturn                              float64

	failed, failedOver, lost int     // failures.go
	redone                   float64 // work done again after failovers
	err                      error   // set by an event handler; ends the run
}

func newEngine(cfg Config, specs []JobSpec, s Scenario) *engine {
	e := &engine{
		cfg: cfg, scenario: s,
		jobs:        make([]simJob, len(specs)),
		nodes:       make([]simNode, cfg.Nodes),
		live:        make([]placement.Node, cfg.Nodes),
		index:       make(map[string]int, cfg.Nodes),
		rnd:         rand.New(rand.NewPCG(cfg.Seed, 0x91ace)),
		minResident: -1, minReturn: -1,
	}
	for i := range e.nodes {
		e.nodes[i].cpus = float64(cfg.CPUs)
		name := fmt.Sprintf("n%04d", i)
		e.index[name] = i
		e.live[i] = placement.Node{Name: name, Ready: i < cfg.ready(), CPUs: float64(cfg.CPUs), Memory: 1 << 50}
	}
	e.view = e.live
	if !cfg.FreshPlacement {
		e.view = slices.Clone(e.live)
	}
	for i, j := range specs {
		e.jobs[i] = simJob{arrival: j.Arrival.Seconds(), work: j.Work.Seconds(), memory: j.Memory, pinned: j.Pinned, origin: int32(j.Origin), node: -1, rem: j.Work.Seconds(), from: -1, to: -1}
	}
	e.scheduleFailures(e.jobs)
	return e
}

func (e *engine) run() error {
	tick := e.cfg.Tick.Seconds()
	nextTick, next := tick, 0
	specs := e.jobs
	for e.done < len(specs) {
		tH, tA := math.Inf(1), math.Inf(1)
		if len(e.events) > 0 {
			tH = e.events[0].t
		}
		if next < len(specs) {
			tA = specs[next].arrival
		}
		switch {
		case nextTick <= tH && nextTick <= tA:
			e.now = nextTick
			if err := e.tick(); err != nil {
				return err
			}
			nextTick += tick
		case tH <= tA:
			ev := e.pop()
			e.now = ev.t
			e.handle(ev)
			if e.err != nil {
				return e.err
			}
		default:
			e.now = tA
			if err := e.arrive(int32(next)); err != nil {
				return err
			}
			next++
		}
	}
	return nil
}

func (e *engine) arrive(ji int32) error {
	j := &e.jobs[ji]
	target := int(j.origin)
	if p := e.scenario.policy(); p != "" || !e.live[target].Ready {
		if p == "" {
			p = placement.LeastLoaded // the origin died: its user submits elsewhere
		}
		name, err := placement.Place(e.view, placement.Request{Policy: p}, e.rnd)
		if err != nil {
			return fmt.Errorf("place job %d: %w", ji, err)
		}
		target = e.index[name]
		if !e.live[target].Ready {
			return fmt.Errorf("%w: job %d placed on NotReady node %s", ErrInvariant, ji, name)
		}
	}
	j.since = e.now
	e.add(ji, int32(target))
	return nil
}

func (e *engine) handle(ev event) {
	switch ev.kind {
	case evComplete:
		nd := &e.nodes[ev.id]
		if ev.ver != nd.version {
			return
		}
		e.advance(ev.id)
		for len(nd.heap) > 0 && e.jobs[nd.heap[0]].finishV <= nd.v+1e-9 {
			ji := e.popJob(ev.id)
			j := &e.jobs[ji]
			j.node, j.end = -1, e.now
			e.done++
		}
		e.changed(ev.id)
	case evLand:
		j := &e.jobs[ev.id]
		e.nodes[j.from].inflight--
		e.nodes[j.to].inflight--
		j.since, j.moved = e.now, true
		if !e.live[j.to].Ready {
			e.failOver(ev.id, 0) // landed on a node that died meanwhile
			return
		}
		e.add(ev.id, j.to)
	case evFail:
		e.fail(ev.id)
	case evRecover:
		e.restore(ev.id)
	}
}

// tick publishes the load table and runs a balancing round.
func (e *engine) tick() error {
	if !e.cfg.FreshPlacement {
		copy(e.view, e.live)
	}
	if !e.scenario.balances() {
		return nil
	}
	over := false
	for i := range e.live {
		if e.live[i].Ready && placement.LoadPerCore(e.live[i]) > 1 {
			over = true
			break
		}
	}
	if !over {
		return nil
	}
	e.bnodes = e.bnodes[:0]
	e.bjobs = e.bjobs[:0]
	for i := range e.live {
		e.bnodes = append(e.bnodes, placement.BalanceNode{Node: e.live[i], Inflight: e.nodes[i].inflight})
		if !e.live[i].Ready || placement.LoadPerCore(e.live[i]) <= 1 {
			continue
		}
		ids := append(e.scratch[:0], e.nodes[i].heap...)
		if m := e.cfg.MaxJobsPerNode; m > 0 && len(ids) > m {
			slices.SortFunc(ids, func(a, b int32) int {
				if c := cmpFloat(e.jobs[a].arrival, e.jobs[b].arrival); c != 0 {
					return c
				}
				return int(a - b)
			})
			ids = ids[:m]
		}
		e.scratch = ids
		for _, ji := range ids {
			j := &e.jobs[ji]
			e.bjobs = append(e.bjobs, placement.BalanceJob{
				GPID:     uint64(ji) + 1,
				Node:     e.live[i].Name,
				Age:      seconds(e.now - j.arrival),
				Resident: seconds(e.now - j.since),
				Moved:    j.moved,
				Demand:   1,
				Memory:   j.memory,
				Pinned:   j.pinned,
			})
		}
	}
	plan := placement.Balance(e.bnodes, e.bjobs, e.cfg.Balance)
	e.rounds++
	e.rejections += len(plan.Rejected)
	e.maxRound = max(e.maxRound, len(plan.Moves))
	for _, m := range plan.Moves {
		if err := e.move(m); err != nil {
			return err
		}
	}
	return nil
}

func (e *engine) move(m placement.Move) error {
	ji := int32(m.GPID - 1)
	if m.GPID == 0 || int(ji) >= len(e.jobs) {
		return fmt.Errorf("%w: move of unknown job %d", ErrInvariant, m.GPID)
	}
	j := &e.jobs[ji]
	from, okF := e.index[m.From]
	to, okT := e.index[m.To]
	switch {
	case !okF || !okT || int(j.node) != from:
		return fmt.Errorf("%w: move %+v of a job on node %d", ErrInvariant, m, j.node)
	case from == to || !e.live[to].Ready:
		return fmt.Errorf("%w: move %+v to itself or to a NotReady node", ErrInvariant, m)
	case j.pinned:
		return fmt.Errorf("%w: move %+v of a pinned job", ErrInvariant, m)
	}
	// The residency binds jobs that arrived by a migration only.
	if resident := e.now - j.since; j.moved && (e.minResident < 0 || resident < e.minResident) {
		e.minResident = resident
	}
	if j.moves > 0 && int(j.from) == to {
		e.movedBack++
		if back := e.now - j.leftAt; e.minReturn < 0 || back < e.minReturn {
			e.minReturn = back
		}
	}
	e.remove(ji)
	j.from, j.to, j.leftAt = int32(from), int32(to), e.now
	j.moves++
	e.nodes[from].inflight++
	e.nodes[to].inflight++
	e.migrations++
	cost := m.Cost.Seconds()
	e.frozen += cost
	e.push(event{t: e.now + cost, kind: evLand, id: ji})
	return nil
}

// Processor sharing on one node.

func (e *engine) rate(ni int32) float64 {
	nd := &e.nodes[ni]
	return min(1, nd.cpus/float64(len(nd.heap)))
}

func (e *engine) advance(ni int32) {
	nd := &e.nodes[ni]
	if len(nd.heap) > 0 {
		nd.v += (e.now - nd.lastT) * e.rate(ni)
	}
	nd.lastT = e.now
}

func (e *engine) add(ji, ni int32) {
	e.advance(ni)
	j := &e.jobs[ji]
	nd := &e.nodes[ni]
	j.node = ni
	j.finishV = nd.v + j.rem
	j.hidx = int32(len(nd.heap))
	nd.heap = append(nd.heap, ji)
	e.up(ni, int(j.hidx))
	e.changed(ni)
}

func (e *engine) remove(ji int32) {
	j := &e.jobs[ji]
	ni := j.node
	e.advance(ni)
	nd := &e.nodes[ni]
	j.rem = max(0, j.finishV-nd.v)
	i := int(j.hidx)
	last := len(nd.heap) - 1
	if i != last {
		e.swap(ni, i, last)
	}
	nd.heap = nd.heap[:last]
	if i != last {
		e.down(ni, i)
		e.up(ni, i)
	}
	j.node = -1
	e.changed(ni)
}

func (e *engine) popJob(ni int32) int32 {
	nd := &e.nodes[ni]
	ji := nd.heap[0]
	last := len(nd.heap) - 1
	e.swap(ni, 0, last)
	nd.heap = nd.heap[:last]
	e.down(ni, 0)
	return ji
}

// changed updates the load table entry of ni and schedules its next completion.
func (e *engine) changed(ni int32) {
	nd := &e.nodes[ni]
	n := len(nd.heap)
	e.live[ni].Load, e.live[ni].Jobs = float64(n), n
	nd.version++
	if n == 0 {
		return
	}
	dt := max(0, e.jobs[nd.heap[0]].finishV-nd.v) / e.rate(ni)
	e.push(event{t: nd.lastT + dt, kind: evComplete, id: ni, ver: nd.version})
}

func (e *engine) less(ni int32, a, b int) bool {
	h := e.nodes[ni].heap
	return e.jobs[h[a]].finishV < e.jobs[h[b]].finishV
}

func (e *engine) swap(ni int32, a, b int) {
	h := e.nodes[ni].heap
	h[a], h[b] = h[b], h[a]
	e.jobs[h[a]].hidx, e.jobs[h[b]].hidx = int32(a), int32(b)
}

func (e *engine) up(ni int32, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !e.less(ni, i, p) {
			return
		}
		e.swap(ni, i, p)
		i = p
	}
}

func (e *engine) down(ni int32, i int) {
	n := len(e.nodes[ni].heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && e.less(ni, r, l) {
			m = r
		}
		if !e.less(ni, m, i) {
			return
		}
		e.swap(ni, i, m)
		i = m
	}
}

// The event queue: a binary heap on (t, seq).

func (e *engine) push(ev event) {
	e.seq++
	ev.seq = e.seq
	e.events = append(e.events, ev)
	i := len(e.events) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !evLess(e.events[i], e.events[p]) {
			break
		}
		e.events[i], e.events[p] = e.events[p], e.events[i]
		i = p
	}
}

func (e *engine) pop() event {
	h := e.events
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && evLess(h[r], h[l]) {
			m = r
		}
		if !evLess(h[m], h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	e.events = h
	return top
}

func evLess(a, b event) bool {
	if a.t != b.t {
		return a.t < b.t
	}
	return a.seq < b.seq
}

func (e *engine) result() Result {
	r := Result{
		Scenario: e.scenario, Load: e.cfg.Load, Jobs: len(e.jobs),
		Migrations: e.migrations, Frozen: e.frozen, Rounds: e.rounds, Rejections: e.rejections, MaxRoundMoves: e.maxRound,
		MinResidentAtMove: e.minResident, MovedBack: e.movedBack, MinReturn: e.minReturn,
		Failures: e.failed, FailedOver: e.failedOver, Lost: e.lost, Redone: e.redone,
	}
	slow := make([]float64, 0, len(e.jobs))
	var sumSlow, sumResp float64
	for _, j := range e.jobs {
		if j.lost {
			continue // it never finished: no response time
		}
		resp := j.end - j.arrival
		slow = append(slow, resp/j.work)
		sumSlow += resp / j.work
		sumResp += resp
		r.Makespan = max(r.Makespan, j.end)
		if j.moves > 0 {
			r.MovedJobs++
		}
	}
	if len(slow) > 0 {
		r.Makespan -= e.jobs[0].arrival
		r.MeanSlowdown = sumSlow / float64(len(slow))
		r.MeanResponse = sumResp / float64(len(slow))
		slices.Sort(slow)
		r.P50Slowdown = quantile(slow, 0.50)
		r.P99Slowdown = quantile(slow, 0.99)
	}
	return r
}

// quantile of sorted xs, nearest rank.
func quantile(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

package timer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/service"
)

// Runner starts and stops timer runs on nodes. The agent's asks the node's
// agent (this one, or over the peer routes); tests use fakes.
type Runner interface {
	// Start starts claimed tick's run on node; it fails, starting nothing,
	// unless the tick moves from claimed to started with the run's record
	// (Store.StartClaim, pidtable.Store.CreateClaimed).
	Start(ctx context.Context, t Timer, tick Tick, node string) error
	// Stop stops a run (Overlap=replace) with the service's KillSignal.
	Stop(ctx context.Context, t Timer, p pidtable.Proc) error
}

// Config is what a Controller needs.
type Config struct {
	Timers *Store
	Procs  *pidtable.Store
	// Nodes returns the nodes and whether each is Ready.
	Nodes  func(ctx context.Context) ([]service.Node, error)
	Runner Runner
	Log    *slog.Logger
	// Node is this agent's name (recorded as who wrote a tick).
	Node string
	// Event records what happened (fired, skipped, missed, caught up).
	Event func(ctx context.Context, t Timer, gpid uint64, node, msg string)
	// Interval is the period of a pass (default 200ms); Location the zone
	// of calendar events without one (default time.Local).
	Interval time.Duration
	Location *time.Location
}

// Controller fires every timer's ticks while its agent leads.
type Controller struct {
	cfg Config

	mu       sync.Mutex
	inflight map[string]bool      // tick keys being started
	ended    map[uint64]time.Time // gpids known ended (final), and when
	trimmed  map[string]time.Time
}

// Ticks kept per timer.
const keepTicks = 200

// maxAttempts bounds the starts of one tick before it is recorded failed.
const maxAttempts = 3

// NewController returns a controller; Lead runs it.
func NewController(cfg Config) *Controller {
	if cfg.Interval == 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	return &Controller{cfg: cfg}
}

// Lead fires ticks until ctx ends (the end of a leadership term); every
// tick it creates is guarded by guard. A new leader carries on from the
// ticks in etcd: it starts ticks claimed and not started, and finds the
// ticks due since the newest recorded.
func (c *Controller) Lead(ctx context.Context, guard clientv3.Cmp) error {
	c.mu.Lock()
	c.inflight, c.ended, c.trimmed = map[string]bool{}, map[uint64]time.Time{}, map[string]time.Time{}
	c.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	tk := time.NewTicker(c.cfg.Interval)
	defer tk.Stop()
	for {
		if err := c.pass(ctx, guard, &wg); err != nil && ctx.Err() == nil {
			c.cfg.Log.Warn("timer controller: pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
	}
}

func (c *Controller) pass(ctx context.Context, guard clientv3.Cmp, wg *sync.WaitGroup) error {
	timers, err := c.cfg.Timers.List(ctx)
	if err != nil {
		return err
	}
	var nodes []service.Node
	for _, t := range timers {
		ticks, err := c.cfg.Timers.Ticks(ctx, t.Name, 50)
		if err != nil {
			return err
		}
		if nodes == nil {
			if nodes, err = c.cfg.Nodes(ctx); err != nil {
				return err
			}
		}
		if err := c.timer(ctx, guard, t, ticks, nodes, wg); err != nil {
			if errors.Is(err, ErrChanged) {
				continue // a concurrent change: the next pass sees it
			}
			c.cfg.Log.Warn("timer controller: timer", "timer", t.Name, "err", err)
		}
	}
	return nil
}

// runs is what a timer's recent ticks say of its runs.
type runs struct {
	last    Last
	running []pidtable.Proc // started runs not ended
	pending bool            // a claimed tick not started
}

// look reads what the timer's recent ticks say of its runs. A run on a node
// that is not Ready does not count as running: its end cannot be recorded
// until the node is back, and it must not hold the timer's ticks (with
// Overlap=skip) for as long as the node is away.
func (c *Controller) look(ctx context.Context, ticks []TickRec, ready map[string]bool) (runs, error) {
	var r runs
	for _, tk := range ticks {
		if !tk.Manual && r.last.Scheduled.IsZero() {
			r.last.Scheduled = tk.Scheduled
		}
		switch tk.State {
		case Claimed:
			r.pending = true
		case Started:
			c.mu.Lock()
			endedAt, ended := c.ended[tk.GPID]
			c.mu.Unlock()
			if ended {
				if r.last.RunStarted.IsZero() {
					r.last.RunStarted, r.last.RunEnded = tk.Started, endedAt
				}
				continue
			}
			p, _, err := c.cfg.Procs.Find(ctx, tk.GPID)
			if errors.Is(err, pidtable.ErrNotFound) {
				continue // its start failed after the claim moved: it never ran
			}
			if err != nil {
				return r, err
			}
			if r.last.RunStarted.IsZero() {
				r.last.RunStarted, r.last.RunEnded = tk.Started, p.Ended
			}
			if p.State.Ended() {
				c.mu.Lock()
				c.ended[tk.GPID] = p.Ended
				c.mu.Unlock()
			} else if ready[p.Node] {
				r.running = append(r.running, p)
			}
		}
	}
	return r, nil
}

// timer handles one timer in one pass: claims or records its due ticks,
// then starts its claimed ones.
func (c *Controller) timer(ctx context.Context, guard clientv3.Cmp, t Timer, ticks []TickRec, nodes []service.Node, wg *sync.WaitGroup) error {
	ready := map[string]bool{}
	for _, n := range nodes {
		ready[n.Name] = n.Ready
	}
	r, err := c.look(ctx, ticks, ready)
	if err != nil {
		return err
	}
	now := time.Now()
	due, dropped := Due(t, r.last, now, c.cfg.Location)
	if dropped > 0 {
		c.event(ctx, t, 0, "", fmt.Sprintf("%d ticks missed before %s (not recorded one by one)", dropped, due[0].Scheduled.Format(time.DateTime)))
	}
	for _, d := range due {
		tick := Tick{Timer: t.Name, Scheduled: d.Scheduled.UTC(), Due: d.Due.UTC(), By: c.cfg.Node, CatchUp: d.CatchUp}
		busy := len(r.running) > 0 || r.pending
		switch {
		case d.Missed:
			tick.State, tick.Reason = Missed, fmt.Sprintf("due at %s; no controller could start it within MissAfter=%s", d.Due.Format(time.DateTime), t.Spec.MissAfter)
			if err := c.cfg.Timers.Record(ctx, tick, guard); err != nil {
				return err
			}
			c.event(ctx, t, 0, "", "missed tick "+d.Scheduled.Format(time.DateTime))
			continue
		case busy && t.Spec.Overlap == OverlapSkip:
			tick.State, tick.Reason = Skipped, "the last run still runs (Overlap=skip)"
			var g uint64
			if len(r.running) > 0 {
				g = r.running[0].GPID
				tick.Reason = fmt.Sprintf("gpid %d still runs (Overlap=skip)", g)
			}
			if err := c.cfg.Timers.Record(ctx, tick, guard); err != nil {
				return err
			}
			c.event(ctx, t, g, "", "skipped tick "+d.Scheduled.Format(time.DateTime)+": "+tick.Reason)
			continue
		case busy && t.Spec.Overlap == OverlapReplace:
			for _, p := range r.running {
				if err := c.cfg.Runner.Stop(ctx, t, p); err != nil {
					c.cfg.Log.Warn("timer controller: stop the last run (Overlap=replace)", "timer", t.Name, "gpid", p.GPID, "err", err)
				}
				c.event(ctx, t, p.GPID, p.Node, "stopped the last run (Overlap=replace)")
			}
		}
		tick.Claimed = time.Now().UTC()
		rec, err := c.cfg.Timers.Claim(ctx, c.cfg.Procs, tick, &guard)
		if err != nil {
			return err
		}
		ticks = append([]TickRec{rec}, ticks...)
		r.pending = true
		msg := "claimed tick " + d.Scheduled.Format(time.DateTime)
		if d.CatchUp {
			msg = "caught up missed tick " + d.Scheduled.Format(time.DateTime) + " (Persistent=true)"
		}
		c.event(ctx, t, rec.GPID, "", msg)
	}
	c.startClaimed(ctx, t, ticks, r, nodes, wg)
	c.trim(ctx, t.Name, now)
	return nil
}

// startClaimed starts the timer's claimed ticks, oldest first, each on a
// node placement picks; with Overlap=queue, one at a time.
func (c *Controller) startClaimed(ctx context.Context, t Timer, ticks []TickRec, r runs, nodes []service.Node, wg *sync.WaitGroup) {
	var claimed []TickRec
	for _, tk := range ticks {
		if tk.State == Claimed {
			claimed = append(claimed, tk)
		}
	}
	sort.Slice(claimed, func(i, j int) bool { return claimed[i].Scheduled.Before(claimed[j].Scheduled) })
	for i, tk := range claimed {
		if t.Spec.Overlap == OverlapQueue && (len(r.running) > 0 || i > 0) {
			return
		}
		key := TickKey(t.Name, tk.Scheduled)
		c.mu.Lock()
		if c.inflight[key] {
			c.mu.Unlock()
			continue
		}
		c.inflight[key] = true
		c.mu.Unlock()
		node, why := Place(t, ticks, nodes)
		if node == "" {
			c.mu.Lock()
			delete(c.inflight, key)
			c.mu.Unlock()
			c.failAttempt(ctx, t, tk, why)
			continue
		}
		Placed(nodes, node)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				c.mu.Lock()
				delete(c.inflight, key)
				c.mu.Unlock()
			}()
			err := c.cfg.Runner.Start(ctx, t, tk.Tick, node)
			switch {
			case err == nil:
				c.event(ctx, t, tk.GPID, node, "fired tick "+tk.Scheduled.Format(time.DateTime)+" on "+node)
			case ctx.Err() != nil:
			case startedElsewhere(err):
				// Started by another (an earlier leader's start): once only.
				c.cfg.Log.Info("timer controller: tick started elsewhere", "timer", t.Name, "gpid", tk.GPID, "err", err)
			default:
				c.failAttempt(ctx, t, tk, fmt.Sprintf("starting on %s: %v", node, err))
			}
		}()
	}
}

// failAttempt counts a failed start of a claimed tick; after maxAttempts
// the tick is failed (it never ran).
func (c *Controller) failAttempt(ctx context.Context, t Timer, tk TickRec, why string) {
	// Re-read: the tick may have moved on meanwhile.
	ticks, err := c.cfg.Timers.Ticks(ctx, t.Name, 50)
	if err != nil {
		return
	}
	for _, cur := range ticks {
		if !cur.Scheduled.Equal(tk.Scheduled) || cur.State != Claimed {
			continue
		}
		cur.Attempts++
		cur.Reason = why
		if cur.Attempts >= maxAttempts {
			cur.State = Failed
		}
		if err := c.cfg.Timers.Update(ctx, cur); err == nil && cur.State == Failed {
			c.event(ctx, t, cur.GPID, "", fmt.Sprintf("tick %s failed: %s", cur.Scheduled.Format(time.DateTime), why))
		}
	}
}

func (c *Controller) trim(ctx context.Context, name string, now time.Time) {
	c.mu.Lock()
	last := c.trimmed[name]
	if now.Sub(last) < time.Minute {
		c.mu.Unlock()
		return
	}
	c.trimmed[name] = now
	c.mu.Unlock()
	if err := c.cfg.Timers.Trim(ctx, name, keepTicks); err != nil {
		c.cfg.Log.Warn("timer controller: trim ticks", "timer", name, "err", err)
	}
}

func (c *Controller) event(ctx context.Context, t Timer, gpid uint64, node, msg string) {
	c.cfg.Log.Info("timer controller: "+msg, "timer", t.Name)
	if c.cfg.Event != nil {
		c.cfg.Event(ctx, t, gpid, node, msg)
	}
}

// Place picks the node for a tick's run: a ready, uncordoned node that meets
// the service's constraints, with the fewest of the timer's recent runs,
// then the least load, then by name: ticks spread over the nodes. It
// returns "" and why when there is none.
func Place(t Timer, recent []TickRec, nodes []service.Node) (string, string) {
	count := map[string]int{}
	for _, tk := range recent {
		if tk.Node != "" {
			count[tk.Node]++
		}
	}
	best := -1
	ready := 0
	for i, n := range nodes {
		if !n.Ready || n.Cordoned {
			continue
		}
		ready++
		ok := true
		for k, v := range t.Service.Constraints {
			if n.Labels[k] != v {
				ok = false
			}
		}
		if !ok {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		b := nodes[best]
		switch {
		case count[n.Name] != count[b.Name]:
			if count[n.Name] < count[b.Name] {
				best = i
			}
		case n.Load != b.Load:
			if n.Load < b.Load {
				best = i
			}
		case n.Name < b.Name:
			best = i
		}
	}
	if best >= 0 {
		return nodes[best].Name, ""
	}
	if ready == 0 {
		return "", "no node is ready and uncordoned"
	}
	return "", fmt.Sprintf("no ready node has the labels %v", t.Service.Constraints)
}

// Placed counts a run placed on node in the pass's view of the nodes: one
// core more of load until the node's own figures show it. Without it, the
// timers due at one instant all saw the same loads and all went to the
// first node by name (hack/benchtimer: 932 of 1,000 runs on node1).
func Placed(nodes []service.Node, node string) {
	for i := range nodes {
		if nodes[i].Name == node {
			nodes[i].Load++
		}
	}
}

// startedElsewhere reports whether a start failed because the tick is no
// longer claimed: another start won (here, or on a node: a conflict).
func startedElsewhere(err error) bool {
	var ae *api.Error
	return errors.Is(err, ErrNotClaimed) || errors.Is(err, pidtable.ErrClaimLost) || errors.Is(err, pidtable.ErrConflict) ||
		errors.As(err, &ae) && ae.Code == api.CodeConflict
}

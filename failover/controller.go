package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/checkpoint/store"
	"github.com/ssi-cluster/ssi/pidtable"
)

// ControllerConfig is what a Controller needs from its agent.
type ControllerConfig struct {
	// Name is the agent's node name, its value in the election.
	Name string
	// Session returns the agent's current etcd session.
	Session func() *concurrency.Session
	// View is the agent's watched view of the cluster, with the live jobs.
	View func(ctx context.Context) (*pidtable.Snapshot, error)
	// Checkpoints lists every checkpoint's record.
	Checkpoints func(ctx context.Context) ([]pidtable.Checkpoint, error)
	// Restore has node restore c as its job, which ran on dead.
	Restore func(ctx context.Context, node string, c pidtable.Checkpoint, dead string) error
	// Abandon records gpid, on dead, lost with reason.
	Abandon func(ctx context.Context, gpid uint64, dead, reason string) error
	// Record writes an event; it reports no error.
	Record func(context.Context, pidtable.Event)
	Log    *slog.Logger
	// Grace is the package's Grace when 0.
	Grace time.Duration
}

// Controller is one agent's candidate for the failover controller.
type Controller struct {
	cfg ControllerConfig
	// down is when each node was first seen without a status key.
	down map[string]time.Time

	mu       sync.Mutex
	inflight map[uint64]bool
	retry    map[uint64]time.Time // not acted on again before
	wg       sync.WaitGroup
}

// NewController returns a Controller; Run runs it.
func NewController(cfg ControllerConfig) *Controller {
	if cfg.Grace <= 0 {
		cfg.Grace = Grace
	}
	return &Controller{cfg: cfg, down: map[string]time.Time{}, inflight: map[uint64]bool{}, retry: map[uint64]time.Time{}}
}

// Run campaigns for the leadership and, while leading, steps every 200 ms
// on the watched view (no etcd read unless a node is down). It returns when
// ctx ends and the restores it started have returned.
func (c *Controller) Run(ctx context.Context) {
	defer c.wg.Wait()
	pidtable.Elect(ctx, c.cfg.Session, pidtable.FailoverLeaderPrefix, c.cfg.Name,
		func(err error) { c.cfg.Log.Debug("failover: campaign", "err", err) },
		func(term context.Context, _ *concurrency.Session, _ *concurrency.Election) {
			c.cfg.Log.Info("failover: elected controller")
			clear(c.down)
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				if err := c.Step(term, time.Now()); err != nil && term.Err() == nil {
					c.cfg.Log.Warn("failover: step", "err", err)
				}
				select {
				case <-term.Done():
					return
				case <-t.C:
				}
			}
		})
}

// Action is what a step decided for one job.
type Action struct {
	GPID uint64
	Dead string
	// Checkpoint is the one to restore from, on its holder; zero: none on a
	// Ready node, the job is recorded lost.
	Checkpoint pidtable.Checkpoint
	User       string
}

// Plan returns the jobs to act on: those with checkpoints (CheckpointEvery)
// whose node has been down (no status key) for grace at now. down is
// updated with the nodes seen down; cs is read only when a job is due
// (nil: read it through list).
func Plan(snap *pidtable.Snapshot, down map[string]time.Time, now time.Time, grace time.Duration, list func() ([]pidtable.Checkpoint, error)) ([]Action, error) {
	for n := range down {
		if snap.Ready(n) {
			delete(down, n)
		}
	}
	var due []pidtable.Proc
	for _, p := range snap.Procs {
		if p.CheckpointEvery <= 0 || p.State.Ended() || snap.Ready(p.Node) {
			continue
		}
		since, ok := down[p.Node]
		if !ok {
			down[p.Node] = now
			continue
		}
		if now.Sub(since) >= grace {
			due = append(due, p)
		}
	}
	if len(due) == 0 {
		return nil, nil
	}
	cs, err := list()
	if err != nil {
		return nil, err
	}
	out := make([]Action, 0, len(due))
	for _, p := range due {
		a := Action{GPID: p.GPID, Dead: p.Node, User: p.User}
		if ck, ok := store.Newest(cs, p.GPID, func(n string) bool { return n != p.Node && snap.Ready(n) }); ok {
			a.Checkpoint = ck
		}
		out = append(out, a)
	}
	return out, nil
}

// Step plans once and starts what it decided (one restore per job at a time).
func (c *Controller) Step(ctx context.Context, now time.Time) error {
	snap, err := c.cfg.View(ctx)
	if err != nil {
		return err
	}
	acts, err := Plan(snap, c.down, now, c.cfg.Grace, func() ([]pidtable.Checkpoint, error) { return c.cfg.Checkpoints(ctx) })
	if err != nil {
		return err
	}
	for _, a := range acts {
		c.mu.Lock()
		busy := c.inflight[a.GPID] || now.Before(c.retry[a.GPID])
		if !busy {
			c.inflight[a.GPID] = true
		}
		c.mu.Unlock()
		if busy {
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.act(ctx, a)
			c.mu.Lock()
			delete(c.inflight, a.GPID)
			// Not again before retryAfter: a failure waits, and a success
			// is not acted on twice while the view still lags it.
			c.retry[a.GPID] = time.Now().Add(retryAfter)
			for g, at := range c.retry {
				if time.Since(at) > time.Minute {
					delete(c.retry, g)
				}
			}
			c.mu.Unlock()
		}()
	}
	return nil
}

// retryAfter is the wait before a job is acted on again (a failed restore
// is tried again then).
const retryAfter = 5 * time.Second

// act restores one job, or records it lost.
func (c *Controller) act(ctx context.Context, a Action) {
	ev := pidtable.Event{Kind: pidtable.EventFailover, GPID: a.GPID, User: a.User, From: a.Dead}
	if a.Checkpoint.Name == "" {
		reason := fmt.Sprintf("node %s died (its lease expired) and no checkpoint of the job is held by a live node, so it could not be restored elsewhere", a.Dead)
		if err := c.cfg.Abandon(ctx, a.GPID, a.Dead, reason); err != nil {
			c.cfg.Log.Warn("failover: record lost", "gpid", a.GPID, "err", err)
			return
		}
		ev.Reason = reason
		c.cfg.Record(ctx, ev)
		return
	}
	t := time.Now()
	err := c.cfg.Restore(ctx, a.Checkpoint.Node, a.Checkpoint, a.Dead)
	ev.To = a.Checkpoint.Node
	switch {
	case errors.Is(err, pidtable.ErrChanged):
		c.cfg.Log.Info("failover: the job changed meanwhile (its node came back, or another leader acted)", "gpid", a.GPID, "err", err)
		return
	case err != nil:
		ev.Reason = fmt.Sprintf("node %s died; restoring checkpoint %s on %s failed: %v", a.Dead, a.Checkpoint.Name, a.Checkpoint.Node, err)
		c.cfg.Log.Warn("failover: restore failed", "gpid", a.GPID, "checkpoint", a.Checkpoint.Name, "node", a.Checkpoint.Node, "err", err)
	default:
		ev.Reason = fmt.Sprintf("node %s died; restored from checkpoint %s (taken %s) on %s in %s", a.Dead, a.Checkpoint.Name,
			a.Checkpoint.Created.Format(time.RFC3339), a.Checkpoint.Node, time.Since(t).Round(time.Millisecond))
		c.cfg.Log.Info("failover: restored", "gpid", a.GPID, "from", a.Dead, "to", a.Checkpoint.Node, "checkpoint", a.Checkpoint.Name, "took", time.Since(t))
	}
	c.cfg.Record(ctx, ev)
}

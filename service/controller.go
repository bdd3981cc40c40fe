package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/pidtable"
)

// Runner starts and stops replicas. The agent's goes through the chosen
// node's agent (its run path: spawn under the service owner's identity);
// tests use fakes.
type Runner interface {
	// Start starts one replica of svc on node and returns its gpid once it
	// runs.
	Start(ctx context.Context, svc pidtable.Service, node string) (uint64, error)
	// Stop stops replica p with the service's KillSignal, then SIGKILL after
	// its TimeoutStopSec.
	Stop(ctx context.Context, svc pidtable.Service, p pidtable.Proc) error
}

// Config is what a Controller needs.
type Config struct {
	Store *pidtable.Store
	// Procs is a watched copy of the replicas' records (Proc.Service set);
	// Services of the service records. Both must be running.
	Procs    *pidtable.ProcCache
	Services *pidtable.ServiceCache
	// Nodes returns the nodes and whether each is Ready.
	Nodes  func(ctx context.Context) ([]Node, error)
	Runner Runner
	Log    *slog.Logger
	// Event records what happened to a service (optional).
	Event func(ctx context.Context, svc pidtable.Service, gpid uint64, node, msg string)
	// Interval is the period of a pass (default 250ms); each pass plans on
	// the caches, without reading etcd but the nodes' small records.
	Interval time.Duration
}

// Controller reconciles every service while its agent leads.
type Controller struct {
	cfg   Config
	guard clientv3.Cmp

	mu       sync.Mutex
	statuses map[string]pidtable.ServiceStatus
	busy     map[string]bool
	pending  map[string][]pending
	stopping map[uint64]time.Time
}

type pending struct {
	gpid uint64
	node string
	at   time.Time
}

// pendingFor bounds how long a started replica not yet in the cache counts.
const pendingFor = 30 * time.Second

// New returns a controller; Lead runs it.
func New(cfg Config) *Controller {
	if cfg.Interval == 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	return &Controller{cfg: cfg}
}

// Lead reconciles until ctx ends (the end of a leadership term). guard holds
// while this controller leads; every status write is guarded by it. It
// carries on from the statuses in etcd, so a new leader loses nothing.
func (c *Controller) Lead(ctx context.Context, guard clientv3.Cmp) error {
	for _, ch := range []<-chan struct{}{c.cfg.Procs.Synced(), c.cfg.Services.Synced()} {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	sts, err := c.cfg.Store.ServiceStatuses(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.guard = guard
	c.statuses, c.busy, c.pending, c.stopping = sts, map[string]bool{}, map[string][]pending{}, map[uint64]time.Time{}
	c.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if err := c.pass(ctx, guard, &wg); err != nil {
			if errors.Is(err, pidtable.ErrChanged) {
				return fmt.Errorf("service controller: %w", err)
			}
			if ctx.Err() == nil {
				c.cfg.Log.Warn("service controller: pass", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// pass plans every service that has no action in flight, writes the
// statuses that changed, then acts.
func (c *Controller) pass(ctx context.Context, guard clientv3.Cmp, wg *sync.WaitGroup) error {
	svcs, revs := c.cfg.Services.Services()
	procs, _ := c.cfg.Procs.Procs()
	bySvc := map[string][]pidtable.Proc{}
	seen := map[uint64]pidtable.Proc{}
	for _, p := range procs {
		if p.Service != "" {
			bySvc[p.Service] = append(bySvc[p.Service], p)
			seen[p.GPID] = p
		}
	}
	nodes, err := c.cfg.Nodes(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	for i, svc := range svcs {
		c.mu.Lock()
		if c.busy[svc.Name] {
			c.mu.Unlock()
			continue
		}
		var pend []pending
		var pendNodes []string
		for _, p := range c.pending[svc.Name] {
			if _, ok := seen[p.gpid]; !ok && now.Sub(p.at) < pendingFor {
				pend = append(pend, p)
				pendNodes = append(pendNodes, p.node)
			}
		}
		c.pending[svc.Name] = pend
		stopping := map[uint64]bool{}
		for g, at := range c.stopping {
			p, ok := seen[g]
			if !ok || p.State.Ended() || now.Sub(at) > svc.Spec.StopTimeout+pendingFor {
				delete(c.stopping, g)
				continue
			}
			if p.Service == svc.Name {
				stopping[g] = true
			}
		}
		old := c.statuses[svc.Name]
		c.mu.Unlock()

		plan := Decide(Input{Now: now, Service: svc, Status: old, Replicas: bySvc[svc.Name], Nodes: nodes, Pending: len(pend), PendingNodes: pendNodes, Stopping: stopping})
		if changed(old, plan.Status) {
			plan.Status.Updated = now.UTC()
			if err := c.cfg.Store.PutServiceStatus(ctx, plan.Status, guard); err != nil {
				return err
			}
		}
		for _, msg := range plan.Events {
			c.event(ctx, svc, 0, "", msg)
		}
		c.mu.Lock()
		c.statuses[svc.Name] = plan.Status
		c.mu.Unlock()
		if plan.Delete {
			if err := c.cfg.Store.DeleteService(ctx, svc.Name, revs[i], guard); err != nil {
				c.cfg.Log.Info("service controller: delete removed service", "service", svc.Name, "err", err)
				continue
			}
			c.event(ctx, svc, 0, "", "removed: every replica stopped")
			c.mu.Lock()
			delete(c.statuses, svc.Name)
			delete(c.pending, svc.Name)
			c.mu.Unlock()
			continue
		}
		if len(plan.Start) == 0 && len(plan.Stop) == 0 {
			continue
		}
		c.mu.Lock()
		c.busy[svc.Name] = true
		for _, p := range plan.Stop {
			c.stopping[p.GPID] = now
		}
		c.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.act(ctx, svc, plan)
			c.mu.Lock()
			c.busy[svc.Name] = false
			c.mu.Unlock()
		}()
	}
	return nil
}

// act stops (in parallel) and starts (one after the other) replicas.
func (c *Controller) act(ctx context.Context, svc pidtable.Service, plan Plan) {
	var wg sync.WaitGroup
	for _, p := range plan.Stop {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.cfg.Runner.Stop(ctx, svc, p); err != nil && ctx.Err() == nil {
				c.cfg.Log.Warn("service controller: stop replica", "service", svc.Name, "gpid", p.GPID, "node", p.Node, "err", err)
			}
		}()
	}
	for _, node := range plan.Start {
		gpid, err := c.cfg.Runner.Start(ctx, svc, node)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.startFailed(ctx, svc, node, err)
			break
		}
		c.mu.Lock()
		c.pending[svc.Name] = append(c.pending[svc.Name], pending{gpid: gpid, node: node, at: time.Now()})
		c.mu.Unlock()
		c.cfg.Log.Info("service controller: replica started", "service", svc.Name, "gpid", gpid, "node", node)
	}
	wg.Wait()
}

// startFailed counts a start that failed as a failure (so it backs off) and
// says why in the service's status and events.
func (c *Controller) startFailed(ctx context.Context, svc pidtable.Service, node string, err error) {
	now := time.Now()
	c.mu.Lock()
	st := c.statuses[svc.Name]
	st.Failures++
	st.LastFailure = now
	st.NextStart = now.Add(Backoff(svc.Spec.RestartSec, st.Failures))
	c.statuses[svc.Name] = st
	guard := c.guard
	c.mu.Unlock()
	if err := c.cfg.Store.PutServiceStatus(ctx, st, guard); err != nil {
		c.cfg.Log.Warn("service controller: write status", "service", svc.Name, "err", err)
	}
	c.event(ctx, svc, 0, node, fmt.Sprintf("starting a replica on %s failed: %v; next try at %s", node, err, st.NextStart.Format(time.TimeOnly)))
}

func (c *Controller) event(ctx context.Context, svc pidtable.Service, gpid uint64, node, msg string) {
	c.cfg.Log.Info("service controller: "+msg, "service", svc.Name)
	if c.cfg.Event != nil {
		c.cfg.Event(ctx, svc, gpid, node, msg)
	}
}

// changed reports whether a status differs in more than its time stamp.
func changed(a, b pidtable.ServiceStatus) bool {
	a.Updated, b.Updated = time.Time{}, time.Time{}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) != string(jb)
}

package pidtable

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"
)

// ClusterCache is a watched view of the cluster, nodes, their statuses and
// (WithProcs) the process records that are not ended, for planners that
// would otherwise read the whole table at each decision: placement at every
// `ssi run`, the balancer at every round. Its Snapshot has the shape of
// Store.Snapshot but costs etcd nothing.
//
// It runs while it is used: the first Snapshot starts its informers (one
// list each, then watches), and they stop after idleStop without a
// Snapshot, so an agent that is not the balancer's leader, or that places
// nothing, watches nothing. The informers (nodes, statuses, the admin's
// node settings, drains, jobs) are not at one revision; a
// decision taken on the view is committed by a transaction guarded by the
// record's revision, as with any cache.
type ClusterCache struct {
	s         *Store
	life      context.Context
	withProcs bool
	log       *slog.Logger
	idleStop  time.Duration

	mu      sync.Mutex
	run     *clusterRun
	lastUse time.Time
	wg      sync.WaitGroup
}

type clusterRun struct {
	nodes  *Informer[Node]
	status *Informer[NodeStatus]
	confs  *Informer[NodeConfig] // the admin's cordons and labels
	drains *Informer[drainView]  // whether each node's drain is active, its replicas replaced
	procs  *Informer[Proc]       // nil without procs
	stop   context.CancelFunc

	// The jobs as the last Snapshot built them, and the procs informer's
	// revision then: rebuilt only when a job changed, so a planner that
	// asks every second of a quiet table of 100,000 jobs does not copy and
	// sort it every second (hack/benchscale: the leader used 155 % of a core).
	mu        sync.Mutex
	procsRev  int64
	procsList []Proc
}

// NewClusterCache returns a view whose informers run within life; withProcs
// adds the records of jobs that are not ended.
func (s *Store) NewClusterCache(life context.Context, withProcs bool, log *slog.Logger) *ClusterCache {
	return &ClusterCache{s: s, life: life, withProcs: withProcs, log: log, idleStop: time.Minute}
}

// Wait blocks until the informers have stopped (after life ended).
func (c *ClusterCache) Wait() { c.wg.Wait() }

// Snapshot returns the cached view, starting the informers (and waiting
// for their first list) if they are not running. Its Procs (sorted by gpid)
// may be shared with other snapshots: callers must not modify it.
func (c *ClusterCache) Snapshot(ctx context.Context) (*Snapshot, error) {
	r := c.use()
	for _, ch := range r.synced() {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	snap := &Snapshot{Status: map[string]NodeStatus{}}
	nodes, rev := r.nodes.List()
	snap.Revision = rev
	snap.Nodes = make([]Node, len(nodes))
	for i, it := range nodes {
		n := it.Val
		if nc, _, ok := r.confs.Get(n.Name); ok {
			n = nc.Apply(n)
		}
		if v, _, ok := r.drains.Get(n.Name); ok {
			v.apply(&n)
		}
		snap.Nodes[i] = n
	}
	sts, rev := r.status.List()
	snap.Revision = max(snap.Revision, rev)
	for _, it := range sts {
		snap.Status[it.Key] = it.Val
	}
	if r.procs != nil {
		r.mu.Lock()
		if rev := r.procs.Rev(); rev != r.procsRev || r.procsList == nil {
			procs, rev := r.procs.List()
			list := make([]Proc, len(procs))
			for i, it := range procs {
				list[i] = it.Val
			}
			r.procsRev, r.procsList = rev, list
		}
		snap.Revision = max(snap.Revision, r.procsRev)
		snap.Procs = r.procsList // shared between snapshots: read-only
		r.mu.Unlock()
	}
	return snap, nil
}

// Running reports whether the informers run (for tests and metrics).
func (c *ClusterCache) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.run != nil
}

func (r *clusterRun) synced() []<-chan struct{} {
	out := []<-chan struct{}{r.nodes.Synced(), r.status.Synced(), r.confs.Synced(), r.drains.Synced()}
	if r.procs != nil {
		out = append(out, r.procs.Synced())
	}
	return out
}

// use notes a use and returns the running informers, starting them first if
// needed.
func (c *ClusterCache) use() *clusterRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastUse = time.Now()
	if c.run != nil {
		return c.run
	}
	ctx, stop := context.WithCancel(c.life)
	r := &clusterRun{stop: stop}
	r.nodes = NewInformer(c.s.c, "node cache", nodesPrefix, func(_ string, val []byte) (Node, bool) {
		var n Node
		return n, json.Unmarshal(val, &n) == nil
	}, c.log)
	r.status = NewInformer(c.s.c, "status cache", statusPrefix, func(_ string, val []byte) (NodeStatus, bool) {
		var st NodeStatus
		return st, json.Unmarshal(val, &st) == nil
	}, c.log)
	r.confs = NewInformer(c.s.c, "node config cache", nodeConfigPrefix, func(_ string, val []byte) (NodeConfig, bool) {
		var nc NodeConfig
		return nc, decode(val, &nc, false) == nil
	}, c.log)
	r.drains = NewInformer(c.s.c, "drain cache", drainPrefix, func(_ string, val []byte) (drainView, bool) {
		return viewDrain(val)
	}, c.log)
	loops := []func(context.Context){r.nodes.Run, r.status.Run, r.confs.Run, r.drains.Run}
	if c.withProcs {
		r.procs = NewInformer(c.s.c, "cluster proc cache", procsPrefix, func(_ string, val []byte) (Proc, bool) {
			p, err := DecodeProc(val)
			return p, err == nil && !p.State.Ended()
		}, c.log)
		loops = append(loops, r.procs.Run)
	}
	loops = append(loops, func(ctx context.Context) { c.stopWhenIdle(ctx, r) })
	for _, loop := range loops {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); loop(ctx) }()
	}
	c.run = r
	return r
}

// stopWhenIdle stops r once no Snapshot used it for idleStop.
func (c *ClusterCache) stopWhenIdle(ctx context.Context, r *clusterRun) {
	t := time.NewTicker(max(c.idleStop/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		idle := time.Since(c.lastUse) > c.idleStop
		if idle && c.run == r {
			c.run = nil
		}
		c.mu.Unlock()
		if idle {
			r.stop()
			return
		}
	}
}

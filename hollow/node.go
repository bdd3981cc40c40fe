package hollow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Node is one hollow node: a session, a status loop and fake jobs.
type Node struct {
	c        *Cluster
	name     string
	index    int
	instance string
	log      *slog.Logger

	// life ends the node's loops (its stop); killed says the stop is a crash.
	life   context.Context
	cancel context.CancelFunc

	// status writes the node's status when it says something new, as the
	// agent's does.
	status pidtable.StatusGate

	mu      sync.Mutex
	session *concurrency.Session
	jobs    map[uint64]*job
	killed  bool
	stopped bool
	created int
	ended   int
	// leaseLosses counts the leases lost while running (renewed too late:
	// the node was NotReady until its next session).
	leaseLosses int
}

func newNode(c *Cluster, name string, index int) *Node {
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	return &Node{c: c, name: name, index: index, instance: hex.EncodeToString(seed[:]), log: c.cfg.Log.With("node", name), jobs: map[uint64]*job{}}
}

// join registers the node and makes it Ready, as the agent's join does:
// refuse a name a live node holds, RegisterNode, a new session, a first
// status on its lease.
func (n *Node) join(ctx context.Context) error {
	st := n.c.store
	prev, _, live, err := st.Status(ctx, n.name)
	if err != nil {
		return err
	}
	if live {
		return fmt.Errorf("%w: node %s has a live agent (instance %s); stop it, or wait %ds for its lease to expire", ErrDuplicate, n.name, prev.Instance, n.c.cfg.LeaseTTL)
	}
	cfg := n.c.cfg
	if err := st.RegisterNode(ctx, pidtable.Node{
		Name: n.name, Addr: cfg.Addr, CPUs: cfg.CPUs, Memory: cfg.Memory, Labels: cfg.Labels,
		Version: cfg.Version, Protocol: migrate.Protocol, Registered: time.Now().UTC(),
	}); err != nil {
		return err
	}
	n.life, n.cancel = context.WithCancel(ctx)
	if err := n.newSession(); err != nil {
		n.cancel()
		return err
	}
	return n.publish(ctx)
}

// newSession grants the node a new lease, kept alive until the node stops.
func (n *Node) newSession() error {
	s, err := concurrency.NewSession(n.c.cfg.Etcd, concurrency.WithTTL(n.c.cfg.LeaseTTL), concurrency.WithContext(n.life))
	if err != nil {
		return fmt.Errorf("hollow: node %s: create etcd lease: %w", n.name, err)
	}
	n.mu.Lock()
	n.session = s
	n.mu.Unlock()
	return nil
}

func (n *Node) currentSession() *concurrency.Session {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.session
}

// closeSession revokes the node's lease (a start that failed).
func (n *Node) closeSession() {
	if n.cancel != nil {
		n.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.revoke(ctx)
}

// revoke revokes the node's lease: its status key goes, it is NotReady at
// once. Not Session.Close: that revokes under the session's context, which
// has ended by then (the node's life), so the revoke would not be sent.
func (n *Node) revoke(ctx context.Context) {
	s := n.currentSession()
	if s == nil {
		return
	}
	s.Orphan()
	if _, err := n.c.cfg.Etcd.Revoke(ctx, s.Lease()); err != nil {
		n.log.Warn("revoke lease", "err", err)
	}
}

// publish writes the node's status on its lease when it says something new:
// the call of the agent's status loop (pidtable.StatusGate), with figures
// from the fake jobs.
func (n *Node) publish(ctx context.Context) error {
	_, err := n.status.Publish(ctx, n.c.store, n.name, n.measure(), n.currentSession().Lease())
	return err
}

// measure is what a real node's supervisor would sample: each running job
// with its figures (an idle job, or one of Config.JobDemand cores).
func (n *Node) measure() pidtable.NodeStatus {
	d := n.c.cfg.JobDemand
	n.mu.Lock()
	defer n.mu.Unlock()
	st := pidtable.NodeStatus{Instance: n.instance, Updated: time.Now().UTC(), Procs: make(map[uint64]pidtable.ProcStats, len(n.jobs))}
	for g, j := range n.jobs {
		if !j.running() {
			continue
		}
		st.Jobs++
		st.Demand += d
		st.Procs[g] = pidtable.ProcStats{CPU: 100 * d, RSS: fakeRSS, Stat: "S", Procs: 1, Demand: d}
	}
	st.Load = min(st.Demand, n.c.cfg.CPUs)
	return st
}

// fakeRSS is what a fake job reports as its memory: about a sleep's.
const fakeRSS = 1 << 20

// run is the node's life after join: the status loop and the job loop, until
// the node stops; then what the stop does (stopped).
func (n *Node) run(parent context.Context, stale []uint64) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); n.statusLoop(n.life) }()
	go func() { defer wg.Done(); n.jobLoop(n.life, stale) }()
	select {
	case <-n.life.Done():
	case <-parent.Done():
	}
	n.cancel()
	wg.Wait()
	n.mu.Lock()
	killed := n.killed
	n.mu.Unlock()
	if killed {
		// A crash: nothing more is written; the lease expires by itself.
		n.log.Info("hollow node killed: its lease expires in its TTL", "ttl_s", n.c.cfg.LeaseTTL)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), time.Minute)
	defer cancel()
	n.endAll(ctx, 143, "its hollow node stopped")
	n.revoke(ctx)
}

// stop ends the node: a crash (kill) or a clean stop.
func (n *Node) stop(kill bool) {
	n.mu.Lock()
	if !n.stopped {
		n.stopped, n.killed = true, kill
	}
	n.mu.Unlock()
	n.cancel()
}

// statusLoop publishes the status every StatusInterval, the first at a
// random offset so that a thousand nodes spread their writes over the
// second; it replaces a lost lease as the agent's status loop does.
func (n *Node) statusLoop(ctx context.Context) {
	pidtable.StatusLoop{
		Interval: StatusInterval,
		Offset:   time.Duration(n.index) * StatusInterval / time.Duration(len(n.c.nodes)),
		Session:  n.currentSession,
		Publish:  n.publish,
		Lost: func(context.Context) {
			n.mu.Lock()
			n.leaseLosses++
			n.mu.Unlock()
		},
		Renew: func(context.Context) error { return n.newSession() },
		Log:   n.log,
	}.Run(ctx)
}

func (n *Node) info() NodeInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	state := "running"
	switch {
	case n.killed:
		state = "killed"
	case n.stopped:
		state = "stopped"
	}
	live := 0
	for _, j := range n.jobs {
		if !j.ended() {
			live++
		}
	}
	return NodeInfo{Name: n.name, State: state, Jobs: live, Created: n.created, Ended: n.ended, LeaseLosses: n.leaseLosses}
}

package hollow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/pidtable"
)

// ErrUnknownNode is returned by Kill and Stop for a name that is not one of
// the cluster's nodes.
var ErrUnknownNode = errors.New("hollow: no such hollow node")

// ErrDuplicate is returned by Start when a node name is held by a live node.
var ErrDuplicate = errors.New("hollow: node name already in use")

// Defaults of Config.
const (
	DefaultLeaseTTL  = 5 // seconds, as the agent's
	DefaultRetention = time.Hour
	// DefaultSpawners bounds the jobs created at once across the cluster.
	DefaultSpawners = 32
)

// StatusInterval is how often a hollow node publishes its status: the
// agent's rate (agent/status.go).
const StatusInterval = time.Second

// Config is a cluster of hollow nodes.
type Config struct {
	// Etcd is the client every node uses (each with its own session and
	// lease on it). Required.
	Etcd *clientv3.Client
	// Prefix names the nodes PREFIX-1 .. PREFIX-N. Required; a node name
	// as pki.CheckName allows.
	Prefix string
	// Nodes is how many hollow nodes to run, 1 to 10,000.
	Nodes int
	// Addr is the API address every node registers (host:port). Nothing
	// answers there as an agent would: see the package doc.
	Addr string
	// CPUs and Memory are the capacity each node offers (default: this
	// machine's CPUs, 4 GiB).
	CPUs   float64
	Memory int64
	// Labels are every node's labels.
	Labels map[string]string
	// Version is what the nodes register as their ssi version.
	Version string
	// LeaseTTL is each node's lease TTL in seconds (DefaultLeaseTTL), 2 to 60.
	LeaseTTL int
	// Jobs is how many fake jobs each node keeps live: at start it creates
	// them, and a job that ends is replaced by a new one.
	Jobs int
	// JobLife is how long a fake job runs before it exits 0; zero: until
	// its node stops.
	JobLife time.Duration
	// JobDemand is the CPU demand each running fake job reports, in cores
	// (0: an idle job, like sleep).
	JobDemand float64
	// Retention is how long an ended fake job's record stays in the live
	// table before it is archived (DefaultRetention), as the agent's --retention.
	Retention time.Duration
	// Spawners bounds the fake jobs being created at once across the
	// cluster (DefaultSpawners), so a start with 100,000 jobs does not
	// swamp etcd.
	Spawners int
	// Log is the logger (required).
	Log *slog.Logger
}

// Validate checks c and fills in its defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Etcd == nil {
		errs = append(errs, errors.New("hollow: no etcd client"))
	}
	if c.Log == nil {
		errs = append(errs, errors.New("hollow: no logger"))
	}
	if c.Prefix == "" || validName(c.Prefix+"-1") != nil {
		errs = append(errs, fmt.Errorf("hollow: prefix %q: want 1 to 50 letters, digits, '-', '_' or '.', starting with a letter or digit", c.Prefix))
	}
	if c.Nodes < 1 || c.Nodes > 10_000 {
		errs = append(errs, fmt.Errorf("hollow: %d nodes: want 1 to 10000", c.Nodes))
	}
	if c.Addr == "" {
		errs = append(errs, errors.New("hollow: no address to register"))
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.LeaseTTL < 2 || c.LeaseTTL > 60 {
		errs = append(errs, fmt.Errorf("hollow: lease TTL %ds: want 2 to 60", c.LeaseTTL))
	}
	if c.Jobs < 0 || c.Jobs > 100_000 {
		errs = append(errs, fmt.Errorf("hollow: %d jobs per node: want 0 to 100000", c.Jobs))
	}
	if c.JobLife < 0 || c.JobDemand < 0 || c.Retention < 0 || c.Spawners < 0 {
		errs = append(errs, errors.New("hollow: job life, job demand, retention and spawners must not be negative"))
	}
	if c.CPUs == 0 {
		c.CPUs = float64(runtime.NumCPU())
	}
	if c.Memory == 0 {
		c.Memory = 4 << 30
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Spawners == 0 {
		c.Spawners = DefaultSpawners
	}
	return errors.Join(errs...)
}

// validName is pki.CheckName's rule for node names, restated here so that
// this package does not need pki: letters, digits, '-', '_' and '.', at
// most 63 characters, starting with a letter or digit.
func validName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("%q: want 1 to 63 characters", s)
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || (r != '-' && r != '_' && r != '.')) {
			return fmt.Errorf("%q: only letters, digits, '-', '_' and '.', starting with a letter or digit", s)
		}
	}
	return nil
}

// Cluster is a running set of hollow nodes.
type Cluster struct {
	cfg   Config
	store *pidtable.Store
	// spawn bounds the jobs being created at once (Config.Spawners).
	spawn chan struct{}
	nodes []*Node
	names map[string]*Node
	wg    sync.WaitGroup
}

// Start registers cfg.Nodes hollow nodes, makes each Ready (its own
// session, a first status) and starts their loops; it returns once every
// node is Ready, while their fake jobs are still being created (Created
// tells how many are). Nodes stop when ctx ends or on Stop; Wait waits for
// them. A name held by a live node fails the start with ErrDuplicate, and
// the nodes already started are stopped.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, store: pidtable.New(cfg.Etcd), spawn: make(chan struct{}, cfg.Spawners), names: map[string]*Node{}}
	for i := range cfg.Nodes {
		n := newNode(c, fmt.Sprintf("%s-%d", cfg.Prefix, i+1), i)
		c.nodes = append(c.nodes, n)
		c.names[n.name] = n
	}
	stale, err := c.staleRecords(ctx)
	if err != nil {
		return nil, err
	}
	// Join in parallel, a few at a time: three round trips each.
	joins := make(chan *Node)
	errc := make(chan error, len(c.nodes))
	var jwg sync.WaitGroup
	for range min(32, len(c.nodes)) {
		jwg.Add(1)
		go func() {
			defer jwg.Done()
			for n := range joins {
				errc <- n.join(ctx)
			}
		}()
	}
	for _, n := range c.nodes {
		joins <- n
	}
	close(joins)
	jwg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		for _, n := range c.nodes {
			n.closeSession()
		}
		return nil, err
	}
	for _, n := range c.nodes {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); n.run(ctx, stale[n.name]) }()
	}
	cfg.Log.Info("hollow nodes ready", "nodes", len(c.nodes), "first", c.nodes[0].name, "last", c.nodes[len(c.nodes)-1].name, "jobs_per_node", cfg.Jobs)
	return c, nil
}

// staleRecords lists, in one pass over the table, the live records that
// name one of the cluster's nodes: jobs of an earlier run of these hollow
// nodes, which run nowhere now. Each node records them lost when it starts,
// as a real agent's reconcile does for a job whose shim vanished.
func (c *Cluster) staleRecords(ctx context.Context) (map[string][]uint64, error) {
	stale := map[string][]uint64{}
	_, err := c.store.ListProcs(ctx, pidtable.ListOptions{}, func(p pidtable.Proc, _ int64) error {
		if _, ours := c.names[p.Node]; ours && !p.State.Ended() {
			stale[p.Node] = append(stale[p.Node], p.GPID)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hollow: list the records of earlier runs: %w", err)
	}
	return stale, nil
}

// Names returns the nodes' names, in order.
func (c *Cluster) Names() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.name
	}
	return out
}

// NodeInfo is what Nodes reports of one hollow node.
type NodeInfo struct {
	Name string `json:"name"`
	// State is running, killed or stopped.
	State string `json:"state"`
	// Jobs is its live fake jobs; Created and Ended count its fake jobs
	// since the start.
	Jobs    int `json:"jobs"`
	Created int `json:"created"`
	Ended   int `json:"ended"`
	// LeaseLosses counts the node's leases that expired while it ran (a
	// keep-alive too late, on an overloaded machine or etcd): it was
	// NotReady until it had a new one.
	LeaseLosses int `json:"lease_losses"`
}

// Nodes reports every node, in order.
func (c *Cluster) Nodes() []NodeInfo {
	out := make([]NodeInfo, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.info()
	}
	return out
}

// Created is the number of fake jobs created since the start, over all nodes.
func (c *Cluster) Created() int {
	total := 0
	for _, n := range c.nodes {
		total += n.info().Created
	}
	return total
}

// LeaseLosses is the number of leases lost since the start, over all nodes.
func (c *Cluster) LeaseLosses() int {
	total := 0
	for _, n := range c.nodes {
		total += n.info().LeaseLosses
	}
	return total
}

// Kill stops node name as a crash would: it publishes no more and stops
// keeping its lease alive, without revoking it, and leaves its records as
// they are. etcd expires the lease after LeaseTTL seconds and the node is
// NotReady then, as when a machine dies.
func (c *Cluster) Kill(name string) error {
	n := c.names[name]
	if n == nil {
		return fmt.Errorf("%w: %q (the names are %s-1 to %s-%d)", ErrUnknownNode, name, c.cfg.Prefix, c.cfg.Prefix, len(c.nodes))
	}
	n.stop(true)
	return nil
}

// Stop stops node name, or every node when name is "", as a clean stop of
// its agent would (ssi agent --no-drain on SIGTERM) plus the end of its
// jobs: its live fake jobs are recorded exited (143, as killed by SIGTERM)
// and its lease revoked, so it is NotReady at once.
func (c *Cluster) Stop(name string) error {
	if name == "" {
		for _, n := range c.nodes {
			n.stop(false)
		}
		return nil
	}
	n := c.names[name]
	if n == nil {
		return fmt.Errorf("%w: %q (the names are %s-1 to %s-%d)", ErrUnknownNode, name, c.cfg.Prefix, c.cfg.Prefix, len(c.nodes))
	}
	n.stop(false)
	return nil
}

// Wait blocks until every node has stopped (its context ended, or Kill or
// Stop) and done what its stop does.
func (c *Cluster) Wait() { c.wg.Wait() }

package drain

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Defaults of Config's optional fields.
const (
	DefaultInterval    = time.Second
	DefaultMaxAttempts = 3
	DefaultRetryAfter  = 5 * time.Second
	// DefaultParallel is the moves in flight of a drain when the request
	// names none: two keep the link busy while one job is frozen (dump,
	// restore) and the other streams; more halve each other's rate.
	DefaultParallel = 2
	// DefaultDeadline is a drain's deadline when the request names none.
	DefaultDeadline = 10 * time.Minute
)

// Mover moves a job as ssi migrate does: through the migrate API of the
// agent that runs it (the drained node's agent, at addr). An error wrapping
// api.ErrStreamLost says the progress stream broke: the outcome is then
// read from the job's record.
type Mover interface {
	Move(ctx context.Context, addr string, gpid uint64, req api.MigrateRequest) (api.MigrateStats, error)
}

// Table is what a Controller reads and writes in etcd; *pidtable.Store is one.
type Table interface {
	Drains(ctx context.Context) ([]pidtable.Drain, []int64, error)
	PutDrain(ctx context.Context, d pidtable.Drain, rev int64, guard *clientv3.Cmp) (int64, error)
	Snapshot(ctx context.Context) (*pidtable.Snapshot, error)
	Get(ctx context.Context, gpid uint64) (pidtable.Proc, int64, error)
	BalancerConfig(ctx context.Context) (pidtable.BalancerConfig, int64, error)
}

// Config is what a Controller is built from.
type Config struct {
	// Name is the agent's node name, its value in the election.
	Name  string
	Table Table
	Mover Mover
	// Kill kills gpid, which runs on node, at a forced drain's deadline.
	Kill func(ctx context.Context, node string, gpid uint64) error
	// Session returns the agent's current etcd session (the election runs
	// on it).
	Session func() *concurrency.Session
	// Record writes an event of the cluster's log; it reports no error.
	Record func(context.Context, pidtable.Event)
	Log    *slog.Logger
	// MoveTimeout bounds one move.
	MoveTimeout time.Duration
	// Interval is the time between two steps (0: DefaultInterval).
	Interval time.Duration
	// MaxAttempts is how many failed moves make a job "failed" (0:
	// DefaultMaxAttempts); RetryAfter the wait after a failed one, doubled
	// per failure (0: DefaultRetryAfter).
	MaxAttempts int
	RetryAfter  time.Duration
}

// outcome is how one of this controller's moves ended.
type outcome struct {
	node  string
	to    string
	stats api.MigrateStats
	err   error
	at    time.Time
}

// keepOutcome is how long the outcome of a move nobody took (its drain was
// cancelled, say) is kept.
const keepOutcome = 10 * time.Minute

// Controller is one agent's candidate for the drain controller, and the
// leader's state: its moves in flight and their outcomes, which outlive a
// leadership term (a move started in one term is recorded by the next step
// of whichever term this agent leads, or read from the table by another
// leader).
type Controller struct {
	cfg    Config
	moving sync.WaitGroup
	wake   chan struct{}

	mu       sync.Mutex
	inflight map[uint64]string // gpid -> drained node
	done     map[uint64]outcome
}

// New returns a Controller; Run starts it.
func New(cfg Config) *Controller {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.MoveTimeout <= 0 {
		cfg.MoveTimeout = 10 * time.Minute
	}
	return &Controller{cfg: cfg, wake: make(chan struct{}, 1), inflight: map[uint64]string{}, done: map[uint64]outcome{}}
}

// Run campaigns for the drain controller's leadership and, while leading,
// steps every Interval (and as soon as a move ends). It returns when ctx
// ends and the moves it started have given up.
func (c *Controller) Run(ctx context.Context) {
	defer c.moving.Wait()
	log := c.cfg.Log
	pidtable.Elect(ctx, c.cfg.Session, pidtable.DrainLeaderPrefix, c.cfg.Name, func(err error) { log.Debug("drain: campaign", "err", err) },
		func(term context.Context, _ *concurrency.Session, el *concurrency.Election) {
			log.Info("drain: elected controller")
			guard := clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())
			c.lead(term, ctx, &guard)
		})
}

// lead steps until term ends; moves belong to life.
func (c *Controller) lead(term, life context.Context, guard *clientv3.Cmp) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if err := c.Step(term, life, guard); err != nil && term.Err() == nil {
			c.cfg.Log.Warn("drain: step", "err", err)
		}
		select {
		case <-term.Done():
			return
		case <-t.C:
		case <-c.wake:
		}
	}
}

// Wait blocks until the moves started have ended (tests).
func (c *Controller) Wait() { c.moving.Wait() }

// start runs one move in a goroutine of life; its outcome is kept for the
// next step.
func (c *Controller) start(life context.Context, node, addr string, gpid uint64, req api.MigrateRequest) {
	to := req.Node
	c.mu.Lock()
	c.inflight[gpid] = node
	c.mu.Unlock()
	c.moving.Add(1)
	go func() {
		defer c.moving.Done()
		ctx, cancel := context.WithTimeout(life, c.cfg.MoveTimeout)
		defer cancel()
		st, err := c.cfg.Mover.Move(ctx, addr, gpid, req)
		if errors.Is(err, api.ErrStreamLost) {
			err = c.settle(ctx, gpid, to)
		}
		c.mu.Lock()
		delete(c.inflight, gpid)
		if life.Err() == nil {
			c.done[gpid] = outcome{node: node, to: to, stats: st, err: err, at: time.Now()}
			for g, o := range c.done {
				if time.Since(o.at) > keepOutcome {
					delete(c.done, g)
				}
			}
		}
		c.mu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}()
}

// settle reads how a move whose progress stream broke ended, from the
// record, waiting while it is still migrating.
func (c *Controller) settle(ctx context.Context, gpid uint64, to string) error {
	for ctx.Err() == nil {
		p, _, err := c.cfg.Table.Get(ctx, gpid)
		switch {
		case err != nil:
		case p.State == pidtable.Migrating:
		case p.Node == to:
			return nil
		case p.MigrationError != "":
			return errors.New(p.MigrationError + " (progress stream lost; reason from the record)")
		default:
			return errors.New("progress stream lost; the job is " + string(p.State) + " on " + p.Node)
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return errors.New("outcome unknown: " + ctx.Err().Error())
}

// take returns this controller's state of gpid: in flight here, or its
// outcome (consumed).
func (c *Controller) take(gpid uint64) (inflight bool, o outcome, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, busy := c.inflight[gpid]; busy {
		return true, outcome{}, false
	}
	o, ok = c.done[gpid]
	return false, o, ok
}

// forget drops an outcome once it is written.
func (c *Controller) forget(gpid uint64) {
	c.mu.Lock()
	delete(c.done, gpid)
	c.mu.Unlock()
}

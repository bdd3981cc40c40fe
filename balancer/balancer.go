package balancer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// The elected loop. Every Balancer campaigns in an etcd election on its
// agent's session; the winner runs a round every interval while the cluster's
// setting (/ssi/balancer/config) says enabled: it reads the process table and
// the nodes' statuses at one revision, hands them to placement.Balance (a pure
// function), starts the moves it returns through the source agents' migrate
// API (the same path as ssi migrate), and writes every decision as an event.
// When its lease is lost (agent dead, or cut off from etcd for a TTL) another
// agent's campaign wins. A move is a migration: transactional on its own, so a
// second leader during a hand-over can at worst have a move refused ("already
// being migrated").

// interval is the time between two rounds of the leader.
const interval = time.Second

// Mover moves a job as ssi migrate does: through the migrate API of the agent
// that runs it (the source). The agent implements it with its API client,
// presenting its node certificate (the source admits the elected leader).
type Mover interface {
	// Move asks the agent at addr (host:port) to migrate gpid as req says
	// (the target node, post-copy or not) and returns the move's figures once
	// it ended. An error wrapping api.ErrStreamLost says the progress stream
	// broke: the move's outcome is then read from the job's record.
	Move(ctx context.Context, addr string, gpid uint64, req api.MigrateRequest) (api.MigrateStats, error)
}

// Table is what a Balancer reads and writes in etcd; *pidtable.Store is one.
type Table interface {
	// BalancerConfig returns the cluster's setting (on/off, tuning).
	BalancerConfig(ctx context.Context) (pidtable.BalancerConfig, int64, error)
	// Snapshot returns the process table, the nodes and their statuses at
	// one revision.
	Snapshot(ctx context.Context) (*pidtable.Snapshot, error)
	// PublishBalancerStatus writes the leader's status on its lease.
	PublishBalancerStatus(ctx context.Context, st pidtable.BalancerStatus, lease clientv3.LeaseID) error
	// Get returns a job's record.
	Get(ctx context.Context, gpid uint64) (pidtable.Proc, int64, error)
}

// Config is what a Balancer is built from. Every field is required.
type Config struct {
	// Name is the agent's node name: its value in the election and the
	// Leader of the status it publishes.
	Name string
	// Table is the process table and the balancer's keys.
	Table Table
	// Mover carries out moves.
	Mover Mover
	// Session returns the agent's current etcd session, which the agent
	// replaces when its lease is lost; the election runs on it.
	Session func() *concurrency.Session
	// Record writes one event of the cluster's log (and the agent's log). It
	// reports no error: an event must never stop a decision.
	Record func(context.Context, pidtable.Event)
	// Log is the agent's logger.
	Log *slog.Logger
	// MoveTimeout bounds one move, from its start to its known outcome.
	MoveTimeout time.Duration
}

// Balancer is the leader-side state. It outlives a leadership term: moves
// started in one term finish (and are measured) even if the agent lost the
// election meanwhile.
type Balancer struct {
	cfg Config
	// moving counts the goroutines waiting for moves; Run waits for them.
	moving sync.WaitGroup

	mu       sync.Mutex
	inflight map[uint64]pidtable.InflightMove
	moves    int
	done     int
	failed   int
	cost     costModel
	enabled  bool
	// rejected remembers the last rejection logged per job, for dedupe.
	rejected map[uint64]rejection
	// demand is each live job's demand as the last round saw it.
	demand map[uint64]float64
	// backoff holds back jobs a move failed for, per job, growing.
	backoff backoffs
}

// New returns a Balancer; Run starts it.
func New(cfg Config) *Balancer {
	return &Balancer{cfg: cfg, inflight: map[uint64]pidtable.InflightMove{}, rejected: map[uint64]rejection{}, backoff: backoffs{}}
}

// Run campaigns for the balancer's leadership and, while leading, runs
// rounds. It returns when ctx ends and the moves it started have given up
// (they are cancelled with ctx).
func (b *Balancer) Run(ctx context.Context) {
	defer b.moving.Wait()
	log := b.cfg.Log
	campaign := func(err error) { log.Debug("balancer: campaign", "err", err) }
	pidtable.Elect(ctx, b.cfg.Session, pidtable.BalancerLeaderPrefix, b.cfg.Name, campaign, func(term context.Context, s *concurrency.Session, _ *concurrency.Election) {
		log.Info("balancer: elected leader")
		b.cfg.Record(term, pidtable.Event{Kind: pidtable.EventLeader, Reason: "elected leader of the balancer"})
		b.lead(term, ctx, s.Lease())
		if ctx.Err() == nil {
			log.Warn("balancer: lost the leadership (etcd lease lost)")
		}
	})
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// lead runs a round every interval until term ends; moves started belong to
// life (Run's context), not to the term.
func (b *Balancer) lead(term, life context.Context, lease clientv3.LeaseID) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := b.round(term, life, lease); err != nil && term.Err() == nil {
			b.cfg.Log.Warn("balancer: round", "err", err)
		}
		select {
		case <-term.Done():
			return
		case <-t.C:
		}
	}
}

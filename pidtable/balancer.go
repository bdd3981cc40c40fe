package pidtable

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys of the automatic balancer.
const (
	// BalancerLeaderPrefix is the election prefix (go.etcd.io/etcd/client/v3/
	// concurrency): candidate keys on each agent's lease, the oldest leads.
	BalancerLeaderPrefix = prefix + "balancer/leader"
	balancerConfigKey    = prefix + "balancer/config"
	balancerStatusKey    = prefix + "balancer/status"
)

// BalancerConfig is the cluster's balancer setting, /ssi/balancer/config. An
// absent key means the defaults: enabled, and the policy's own tuning. Zero
// tuning fields mean the policy's defaults.
type BalancerConfig struct {
	Enabled bool `json:"enabled"`
	// Residency overrides how long a job stays on a node after it arrived
	// before it may move again.
	Residency time.Duration `json:"residency,omitempty"`
	// Hysteresis overrides the least load difference per core worth a move.
	Hysteresis float64 `json:"hysteresis,omitempty"`
	// MaxInflightPerNode overrides the cap on migrations in flight per node.
	MaxInflightPerNode int `json:"max_inflight_per_node,omitempty"`
	// MaxMovesPerRound overrides the cap on the moves one round starts.
	MaxMovesPerRound int `json:"max_moves_per_round,omitempty"`
	// MaxFreeze overrides the longest freeze the balancer may impose on a
	// job (longer ones move post-copy).
	MaxFreeze time.Duration `json:"max_freeze,omitempty"`
	Updated   time.Time     `json:"updated,omitzero"`
}

// DefaultBalancerConfig is the setting of a cluster where nobody set one: on.
func DefaultBalancerConfig() BalancerConfig { return BalancerConfig{Enabled: true} }

// BalancerStatus is what the balancer's leader publishes after every round, on
// its lease (so it vanishes with the leader).
type BalancerStatus struct {
	Leader    string    `json:"leader"`
	Enabled   bool      `json:"enabled"`
	LastRound time.Time `json:"last_round"`
	// RoundTook is how long the last round took: its reads of the watched
	// view, its plan and the moves it started (not their migrations).
	RoundTook time.Duration `json:"round_took,omitempty"`
	// Inflight are the moves the leader started that have not ended.
	Inflight []InflightMove `json:"inflight,omitempty"`
	// Moves counts the moves this leader started, and how they ended.
	Moves     int `json:"moves"`
	MovesDone int `json:"moves_done"`
	MovesFail int `json:"moves_failed"`
	// TransferRate (bytes/s) and Freeze are what the cost model uses:
	// measured on finished moves, or defaults until there are some.
	TransferRate float64       `json:"transfer_rate"`
	Freeze       time.Duration `json:"freeze"`
	Measured     int           `json:"measured_moves"`
}

// InflightMove is a move the balancer started.
type InflightMove struct {
	GPID uint64 `json:"gpid"`
	// User owns the job: a user sees the moves of their own jobs only.
	User    string    `json:"user,omitempty"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Started time.Time `json:"started"`
}

// BalancerConfig returns the cluster's balancer setting and its key's mod
// revision (0 when unset: the defaults).
func (s *Store) BalancerConfig(ctx context.Context) (BalancerConfig, int64, error) {
	resp, err := s.c.Get(ctx, balancerConfigKey)
	if err != nil {
		return BalancerConfig{}, 0, fmt.Errorf("pidtable: get balancer config: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return DefaultBalancerConfig(), 0, nil
	}
	var c BalancerConfig
	if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
		return BalancerConfig{}, 0, fmt.Errorf("pidtable: decode %s: %w", balancerConfigKey, err)
	}
	return c, resp.Kvs[0].ModRevision, nil
}

// UpdateBalancerConfig applies fn to the balancer setting with a
// compare-and-swap, retrying on conflict, and returns what it wrote.
func (s *Store) UpdateBalancerConfig(ctx context.Context, fn func(*BalancerConfig) error) (BalancerConfig, error) {
	for range maxCASRetries {
		c, rev, err := s.BalancerConfig(ctx)
		if err != nil {
			return BalancerConfig{}, err
		}
		if err := fn(&c); err != nil {
			return BalancerConfig{}, err
		}
		c.Updated = time.Now().UTC()
		val, err := json.Marshal(c)
		if err != nil {
			return BalancerConfig{}, fmt.Errorf("pidtable: encode balancer config: %w", err)
		}
		tr, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(balancerConfigKey), "=", rev)).
			Then(clientv3.OpPut(balancerConfigKey, string(val))).Commit()
		if err != nil {
			return BalancerConfig{}, fmt.Errorf("pidtable: write balancer config: %w", err)
		}
		if tr.Succeeded {
			return c, nil
		}
	}
	return BalancerConfig{}, fmt.Errorf("%w: updating the balancer config", ErrConflict)
}

// PublishBalancerStatus writes the leader's status on lease.
func (s *Store) PublishBalancerStatus(ctx context.Context, st BalancerStatus, lease clientv3.LeaseID) error {
	val, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("pidtable: encode balancer status: %w", err)
	}
	if _, err := s.c.Put(ctx, balancerStatusKey, string(val), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("pidtable: publish balancer status: %w", err)
	}
	return nil
}

// BalancerState returns the balancer's setting, its leader's last status (ok
// false when no leader published one: none elected, or it died) and the
// current leader's name ("" when there is none), in one transaction.
func (s *Store) BalancerState(ctx context.Context) (cfg BalancerConfig, st BalancerStatus, ok bool, leader string, err error) {
	tr, err := s.c.Txn(ctx).Then(
		clientv3.OpGet(balancerConfigKey),
		clientv3.OpGet(balancerStatusKey),
		clientv3.OpGet(BalancerLeaderPrefix+"/", clientv3.WithFirstCreate()...),
	).Commit()
	if err != nil {
		return cfg, st, false, "", fmt.Errorf("pidtable: read balancer state: %w", err)
	}
	cfg = DefaultBalancerConfig()
	if kvs := tr.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		if err := json.Unmarshal(kvs[0].Value, &cfg); err != nil {
			return cfg, st, false, "", fmt.Errorf("pidtable: decode %s: %w", balancerConfigKey, err)
		}
	}
	if kvs := tr.Responses[1].GetResponseRange().Kvs; len(kvs) == 1 {
		if err := json.Unmarshal(kvs[0].Value, &st); err != nil {
			return cfg, st, false, "", fmt.Errorf("pidtable: decode %s: %w", balancerStatusKey, err)
		}
		ok = true
	}
	if kvs := tr.Responses[2].GetResponseRange().Kvs; len(kvs) == 1 {
		leader = string(kvs[0].Value)
	}
	return cfg, st, ok, leader, nil
}

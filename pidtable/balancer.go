package pidtable

import (
	"context"
	"encoding/json"
	"errors"
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
	eventsPrefix         = prefix + "events/"
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

// Event kinds.
const (
	EventMove     = "move"     // the balancer started a migration
	EventMoved    = "moved"    // ... which succeeded
	EventFailed   = "failed"   // ... which failed (the job runs on its source)
	EventRejected = "rejected" // considered and not moved, and why
	EventLeader   = "leader"   // an agent became the balancer's leader
	EventConfig   = "config"   // the balancer was switched on or off, or retuned
	EventLost     = "lost"     // a record said a job runs where no process of it exists (agent/heal.go)
	// Security events (agent/audit.go, agent/revoke.go): Caller is who acted.
	EventAdmin   = "admin"   // an admin action: user add/rotate/revoke, token create/revoke
	EventRefused = "refused" // requests refused (401/403), Count of them from Caller
)

// Event is one entry of the cluster's event log, /ssi/events/<time>-<node>-<seq>.
type Event struct {
	// ID is the event's key suffix: sortable by time.
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Node is the agent that wrote the event (the balancer's leader).
	Node string `json:"node"`
	GPID uint64 `json:"gpid,omitempty"`
	// User owns the job the event is about (GPID): a user sees the events
	// of their own jobs only.
	User   string `json:"user,omitempty"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Gain and Cost are the cost model's figures for a move.
	Gain time.Duration `json:"gain,omitempty"`
	Cost time.Duration `json:"cost,omitempty"`
	// Took is how long a finished move took in all; Frozen how long the job
	// was stopped; Bytes the images shipped.
	Took   time.Duration `json:"took,omitempty"`
	Frozen time.Duration `json:"frozen,omitempty"`
	Bytes  int64         `json:"bytes,omitempty"`
	// Caller is who made the request of an admin or refused event ("admin
	// root", "user alice", "node node2", "anonymous 10.0.0.9"); only admins
	// and the caller see such events (User is then the caller's user name).
	Caller string `json:"caller,omitempty"`
	// Count is how many refused requests the event stands for.
	Count int `json:"count,omitempty"`
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

// eventKey orders events by time; node and seq keep two writers apart.
func eventKey(ev Event) string { return eventsPrefix + ev.ID }

// NewEventID returns a sortable event ID for an event at t written by node.
func NewEventID(t time.Time, node string, seq uint64) string {
	return fmt.Sprintf("%020d-%s-%06d", t.UnixNano(), node, seq%1000000)
}

// AddEvent writes ev (its ID set) on lease, so that it expires with the lease.
func (s *Store) AddEvent(ctx context.Context, ev Event, lease clientv3.LeaseID) error {
	if ev.ID == "" {
		return errors.New("pidtable: event without an ID")
	}
	val, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("pidtable: encode event: %w", err)
	}
	if _, err := s.c.Put(ctx, eventKey(ev), string(val), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("pidtable: write event: %w", err)
	}
	return nil
}

// Events returns the events written after etcd revision since (0 for all),
// oldest first, only those of gpid when gpid is not 0, at most limit (0: no
// limit) of the newest ones; and the revision they were read at, the since of
// the next call that follows the log. Following by revision rather than by ID
// misses nothing: IDs are taken from the writers' clocks, and an event can be
// written after one with a later ID (two migrations ending at once, or an old
// leader's last words), which a reader already past that ID would never see.
func (s *Store) Events(ctx context.Context, since int64, gpid uint64, limit int) ([]Event, int64, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if since > 0 {
		opts = append(opts, clientv3.WithMinModRev(since+1))
	}
	resp, err := s.c.Get(ctx, eventsPrefix, opts...)
	if err != nil {
		return nil, 0, fmt.Errorf("pidtable: list events: %w", err)
	}
	var out []Event
	for _, kv := range resp.Kvs {
		var ev Event
		if err := json.Unmarshal(kv.Value, &ev); err != nil {
			return nil, 0, fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
		}
		if gpid != 0 && ev.GPID != gpid {
			continue
		}
		out = append(out, ev)
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, resp.Header.Revision, nil
}

// TrimEvents deletes the oldest events beyond the newest keep.
func (s *Store) TrimEvents(ctx context.Context, keep int) error {
	resp, err := s.c.Get(ctx, eventsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("pidtable: count events: %w", err)
	}
	excess := resp.Count - int64(keep)
	if excess <= 0 {
		return nil
	}
	old, err := s.c.Get(ctx, eventsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithLimit(excess), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil || len(old.Kvs) == 0 {
		return err
	}
	last := string(old.Kvs[len(old.Kvs)-1].Key)
	if _, err := s.c.Delete(ctx, eventsPrefix, clientv3.WithRange(last+"\x00")); err != nil {
		return fmt.Errorf("pidtable: trim events: %w", err)
	}
	return nil
}

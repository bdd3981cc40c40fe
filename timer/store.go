package timer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/pidtable"
)

// Keys.
const (
	keyPrefix = "/ssi/timers/"
	specKeys  = keyPrefix + "spec/"
	tickKeys  = keyPrefix + "ticks/"
	// LeaderPrefix is the timer controller's election.
	LeaderPrefix = keyPrefix + "leader"
)

// Tick states (see pidtable.Tick).
const (
	Claimed = pidtable.TickClaimed
	Started = pidtable.TickStarted
	Failed  = pidtable.TickFailed
	Skipped = pidtable.TickSkipped
	Missed  = pidtable.TickMissed
)

// Errors.
var (
	ErrNotFound = errors.New("timer: no such timer")
	ErrChanged  = errors.New("timer: changed concurrently")
	// ErrNotClaimed: the tick is not (or no longer) claimed.
	ErrNotClaimed = errors.New("timer: tick is not claimed")
)

// Timer is a timer's record, Tick one of its ticks (see pidtable).
type (
	Timer = pidtable.Timer
	Tick  = pidtable.Tick
)

// Store keeps timers and ticks in etcd.
type Store struct{ c *clientv3.Client }

// NewStore returns a Store over c.
func NewStore(c *clientv3.Client) *Store { return &Store{c: c} }

func specKey(name string) string { return specKeys + name }
func ticksOf(name string) string { return tickKeys + name + "/" }

// TickKey is the key of a timer's tick for scheduled.
func TickKey(name string, scheduled time.Time) string {
	return fmt.Sprintf("%s%020d", ticksOf(name), scheduled.UnixNano())
}

// Get returns a timer and its revision.
func (s *Store) Get(ctx context.Context, name string) (Timer, int64, error) {
	resp, err := s.c.Get(ctx, specKey(name))
	if err != nil {
		return Timer{}, 0, fmt.Errorf("timer: read %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return Timer{}, 0, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	var t Timer
	if err := json.Unmarshal(resp.Kvs[0].Value, &t); err != nil {
		return Timer{}, 0, fmt.Errorf("timer: decode %s: %w", name, err)
	}
	return t, resp.Kvs[0].ModRevision, nil
}

// List returns every timer, by name.
func (s *Store) List(ctx context.Context) ([]Timer, error) {
	resp, err := s.c.Get(ctx, specKeys, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("timer: list: %w", err)
	}
	out := make([]Timer, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var t Timer
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			return nil, fmt.Errorf("timer: decode %s: %w", kv.Key, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// Put writes a timer if its revision is still rev (0: it does not exist).
func (s *Store) Put(ctx context.Context, t Timer, rev int64) error {
	val, err := json.Marshal(t)
	if err != nil {
		return err
	}
	tr, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(specKey(t.Name)), "=", rev)).
		Then(clientv3.OpPut(specKey(t.Name), string(val))).Commit()
	if err != nil {
		return fmt.Errorf("timer: write %s: %w", t.Name, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("%w: %s", ErrChanged, t.Name)
	}
	return nil
}

// Delete removes a timer and its ticks if its revision is still rev. Runs
// that run go on.
func (s *Store) Delete(ctx context.Context, name string, rev int64) error {
	tr, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(specKey(name)), "=", rev)).
		Then(clientv3.OpDelete(specKey(name)), clientv3.OpDelete(ticksOf(name), clientv3.WithPrefix())).Commit()
	if err != nil {
		return fmt.Errorf("timer: remove %s: %w", name, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("%w: %s", ErrChanged, name)
	}
	return nil
}

// TickRec is a tick and its revision.
type TickRec struct {
	Tick
	Rev int64
}

// Ticks returns a timer's newest ticks, newest first, at most limit (0: all).
func (s *Store) Ticks(ctx context.Context, name string, limit int64) ([]TickRec, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	resp, err := s.c.Get(ctx, ticksOf(name), opts...)
	if err != nil {
		return nil, fmt.Errorf("timer: ticks of %s: %w", name, err)
	}
	out := make([]TickRec, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var t Tick
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			return nil, fmt.Errorf("timer: decode %s: %w", kv.Key, err)
		}
		out = append(out, TickRec{t, kv.ModRevision})
	}
	return out, nil
}

// Claim creates tick t as claimed with its run's gpid allocated, in one
// transaction, if the tick has no record, the timer still exists, and
// guard holds (the controller's leadership; none for ssi timer run). It
// returns the tick as written; ErrChanged when any condition failed.
func (s *Store) Claim(ctx context.Context, store *pidtable.Store, t Tick, guard *clientv3.Cmp) (TickRec, error) {
	for range 8 {
		next, rev, err := store.NextGPID(ctx)
		if err != nil {
			return TickRec{}, err
		}
		cmp, op := pidtable.AllocateGPIDOp(next, rev)
		t.State, t.GPID = Claimed, next
		val, err := json.Marshal(t)
		if err != nil {
			return TickRec{}, err
		}
		key := TickKey(t.Timer, t.Scheduled)
		conds := []clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(specKey(t.Timer)), ">", 0),
		}
		if guard != nil {
			conds = append(conds, *guard)
		}
		tr, err := s.c.Txn(ctx).If(append(conds, cmp)...).Then(op, clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return TickRec{}, fmt.Errorf("timer: claim %s: %w", key, err)
		}
		if tr.Succeeded {
			return TickRec{t, tr.Header.Revision}, nil
		}
		// The counter moved (a spawn elsewhere) or the tick exists, the
		// timer is gone, or leadership was lost: tell which by reading.
		if again, err := s.c.Txn(ctx).If(conds...).Commit(); err != nil {
			return TickRec{}, fmt.Errorf("timer: claim %s: %w", key, err)
		} else if !again.Succeeded {
			return TickRec{}, fmt.Errorf("%w: tick %s exists, the timer is gone, or leadership was lost", ErrChanged, key)
		}
	}
	return TickRec{}, fmt.Errorf("%w: the gpid counter kept moving", ErrChanged)
}

// Record creates tick t (skipped or missed) if it has no record and guard
// holds.
func (s *Store) Record(ctx context.Context, t Tick, guard clientv3.Cmp) error {
	val, err := json.Marshal(t)
	if err != nil {
		return err
	}
	key := TickKey(t.Timer, t.Scheduled)
	tr, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0), guard,
		clientv3.Compare(clientv3.CreateRevision(specKey(t.Timer)), ">", 0)).
		Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("timer: record %s: %w", key, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("%w: tick %s", ErrChanged, key)
	}
	return nil
}

// Update rewrites a tick if its revision is still rev.
func (s *Store) Update(ctx context.Context, t TickRec) error {
	val, err := json.Marshal(t.Tick)
	if err != nil {
		return err
	}
	key := TickKey(t.Timer, t.Scheduled)
	tr, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", t.Rev)).
		Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("timer: update %s: %w", key, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("%w: tick %s", ErrChanged, key)
	}
	return nil
}

// StartClaim is the node's side of starting a claimed tick: it reads the
// tick and returns the conditions and writes that go with the creation of
// the run's record (pidtable.Store.CreateClaimed): the tick is still as
// read (claimed, that gpid), and becomes started on node.
func (s *Store) StartClaim(ctx context.Context, name string, scheduled time.Time, gpid uint64, node string) (Tick, []clientv3.Cmp, []clientv3.Op, error) {
	key := TickKey(name, scheduled)
	resp, err := s.c.Get(ctx, key)
	if err != nil {
		return Tick{}, nil, nil, fmt.Errorf("timer: read %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return Tick{}, nil, nil, fmt.Errorf("%w: no tick %s", ErrNotClaimed, key)
	}
	var t Tick
	if err := json.Unmarshal(resp.Kvs[0].Value, &t); err != nil {
		return Tick{}, nil, nil, err
	}
	if t.State != Claimed || t.GPID != gpid {
		return Tick{}, nil, nil, fmt.Errorf("%w: tick %s is %s (gpid %d)", ErrNotClaimed, key, t.State, t.GPID)
	}
	t.State, t.Node, t.Started = Started, node, time.Now().UTC()
	val, err := json.Marshal(t)
	if err != nil {
		return Tick{}, nil, nil, err
	}
	return t, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)},
		[]clientv3.Op{clientv3.OpPut(key, string(val))}, nil
}

// Trim deletes a timer's ticks but the newest keep.
func (s *Store) Trim(ctx context.Context, name string, keep int) error {
	resp, err := s.c.Get(ctx, ticksOf(name), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil {
		return err
	}
	if len(resp.Kvs) <= keep {
		return nil
	}
	oldest := string(resp.Kvs[keep].Key)
	_, err = s.c.Delete(ctx, ticksOf(name), clientv3.WithRange(oldest+"\x00"))
	if err != nil {
		return fmt.Errorf("timer: trim ticks of %s: %w", name, err)
	}
	return nil
}

// NameOfTickKey returns the timer a tick key belongs to.
func NameOfTickKey(key string) string {
	rest := strings.TrimPrefix(key, tickKeys)
	name, _, _ := strings.Cut(rest, "/")
	return name
}

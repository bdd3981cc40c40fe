package pidtable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Informer is a local copy of the records under one etcd prefix, kept
// current by a watch, as client-go's informers and etcd's mirror.Syncer
// keep theirs: list once (in pages, at one revision), then watch from the
// list's revision; list again when the watch breaks (a compaction past the
// watch's revision, an etcd restart, a lost leader). Readers pay nothing to
// etcd. The copy may lag etcd by the watch's latency, so a decision taken on
// it is committed by a transaction guarded by the record's revision, never
// by the copy alone.
//
// Every cache in ssi is one: an agent's own jobs (ProcCache), the services
// (ServiceCache), the revocation list (RevocationCache), and the balancer's
// view of the cluster (ClusterCache).
type Informer[T any] struct {
	c      *clientv3.Client
	name   string
	prefix string
	// decode turns a record into the cached value; ok false leaves it out
	// (filtered, or undecodable).
	decode func(key string, val []byte) (v T, ok bool)
	log    *slog.Logger

	mu      sync.RWMutex
	items   map[string]Item[T] // by key, without the prefix
	rev     int64              // the etcd revision the copy reflects
	synced  chan struct{}
	once    sync.Once
	changed chan struct{} // closed, and replaced, at every change
	lists   int           // lists done (the first, and one per broken watch)
}

// Item is a cached value and its record's mod revision.
type Item[T any] struct {
	Key string // without the prefix
	Val T
	Rev int64
}

// NewInformer returns an informer of the records under prefix; Run (or
// Sync) fills it.
func NewInformer[T any](c *clientv3.Client, name, prefix string, decode func(key string, val []byte) (T, bool), log *slog.Logger) *Informer[T] {
	return &Informer[T]{c: c, name: name, prefix: prefix, decode: decode, log: log,
		items: map[string]Item[T]{}, synced: make(chan struct{}), changed: make(chan struct{})}
}

// Run lists (unless Sync did) and watches until ctx ends, listing again
// whenever the watch breaks.
func (i *Informer[T]) Run(ctx context.Context) {
	listed := false
	select {
	case <-i.synced:
		listed = true
	default:
	}
	for ctx.Err() == nil {
		if !listed {
			if err := i.Sync(ctx); err != nil {
				if ctx.Err() == nil {
					i.log.Warn(i.name+": list", "err", err)
				}
				sleep(ctx, time.Second)
				continue
			}
		}
		err := i.watch(ctx)
		listed = false
		if ctx.Err() == nil {
			i.log.Info(i.name+": watch ended; listing again", "err", err)
			sleep(ctx, 100*time.Millisecond)
		}
	}
}

// Synced is closed once the first list is in.
func (i *Informer[T]) Synced() <-chan struct{} { return i.synced }

// Sync reads every record at one revision (a stream of chunks, as
// ListProcs) and replaces the copy.
func (i *Informer[T]) Sync(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx) // ends the stream
	defer cancel()
	resp, err := i.c.Get(ctx, nextGPIDKey) // pins the revision
	if err != nil {
		return fmt.Errorf("pidtable: list %s: %w", i.prefix, err)
	}
	rev := resp.Header.Revision
	pg := &pager{c: i.c, pfx: i.prefix, next: i.prefix, size: DefaultPageSize, rev: &rev, strict: true}
	items := map[string]Item[T]{}
	for {
		kv, err := pg.peek(ctx)
		if err != nil {
			return err
		}
		if kv == nil {
			break
		}
		pg.pop()
		k := strings.TrimPrefix(string(kv.Key), i.prefix)
		if v, ok := i.decode(k, kv.Value); ok {
			items[k] = Item[T]{k, v, kv.ModRevision}
		}
	}
	i.mu.Lock()
	i.items, i.rev = items, rev
	i.lists++
	i.notifyLocked()
	i.mu.Unlock()
	i.once.Do(func() { close(i.synced) })
	return nil
}

// watch applies changes after the listed revision until the watch fails.
func (i *Informer[T]) watch(ctx context.Context) error {
	i.mu.RLock()
	from := i.rev + 1
	i.mu.RUnlock()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range i.c.Watch(wctx, i.prefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
		if err := wr.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("watch from revision %d compacted: %w", from, err)
			}
			return err
		}
		i.mu.Lock()
		for _, ev := range wr.Events {
			k := strings.TrimPrefix(string(ev.Kv.Key), i.prefix)
			if ev.Type == clientv3.EventTypeDelete {
				delete(i.items, k)
				continue
			}
			if v, ok := i.decode(k, ev.Kv.Value); ok {
				i.items[k] = Item[T]{k, v, ev.Kv.ModRevision}
			} else {
				delete(i.items, k)
			}
		}
		i.rev = wr.Header.Revision
		i.notifyLocked()
		i.mu.Unlock()
	}
	return fmt.Errorf("watch closed: %w", ctx.Err())
}

// notifyLocked wakes the waiters of Changed; i.mu is held.
func (i *Informer[T]) notifyLocked() {
	close(i.changed)
	i.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change of the copy (a
// controller waits on it instead of polling).
func (i *Informer[T]) Changed() <-chan struct{} {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.changed
}

// Get returns the value cached under key (without the prefix) and its
// record's mod revision.
func (i *Informer[T]) Get(key string) (T, int64, bool) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	it, ok := i.items[key]
	return it.Val, it.Rev, ok
}

// List returns the cached items sorted by key, and the revision the copy
// reflects.
func (i *Informer[T]) List() ([]Item[T], int64) {
	i.mu.RLock()
	out := make([]Item[T], 0, len(i.items))
	for _, it := range i.items {
		out = append(out, it)
	}
	rev := i.rev
	i.mu.RUnlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Key < out[b].Key })
	return out, rev
}

// Len is how many items the copy holds.
func (i *Informer[T]) Len() int {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return len(i.items)
}

// Rev is the etcd revision the copy reflects.
func (i *Informer[T]) Rev() int64 {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.rev
}

// Lists is how many times the informer listed (1 + the watches it had to
// replace): a fault test's view of its resyncs.
func (i *Informer[T]) Lists() int {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.lists
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

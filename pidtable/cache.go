package pidtable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ProcCache is a local copy of the process records a filter keeps (e.g. the
// records that name one node), kept current by an etcd watch: list once, then
// watch from the list's revision (etcd's mirror.Syncer; client-go's
// ListAndWatch). When the watch falls behind a compaction it lists again. A
// controller reads it at no cost to etcd; it may lag etcd by the watch's
// latency, so a decision taken on it is committed by a transition guarded by
// the record's revision, never by the cache alone.
type ProcCache struct {
	s    *Store
	keep func(Proc) bool
	log  *slog.Logger

	mu     sync.Mutex
	procs  map[uint64]cachedProc
	rev    int64 // the etcd revision the copy reflects
	synced chan struct{}
}

type cachedProc struct {
	p   Proc
	rev int64 // the record's mod revision
}

// listPage bounds one range read of the initial list.
const listPage = 1000

// NewProcCache returns a cache of the records keep accepts (all when nil).
// Run fills it and keeps it current.
func (s *Store) NewProcCache(keep func(Proc) bool, log *slog.Logger) *ProcCache {
	if keep == nil {
		keep = func(Proc) bool { return true }
	}
	return &ProcCache{s: s, keep: keep, log: log, procs: map[uint64]cachedProc{}, synced: make(chan struct{})}
}

// Run lists and then watches until ctx ends, listing again whenever the watch
// breaks (compaction, etcd restart).
func (c *ProcCache) Run(ctx context.Context) {
	first := true
	for ctx.Err() == nil {
		if err := c.list(ctx); err != nil {
			c.log.Warn("proc cache: list", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if first {
			close(c.synced)
			first = false
		}
		err := c.watch(ctx)
		if ctx.Err() == nil {
			c.log.Info("proc cache: watch ended; listing again", "err", err)
			sleep(ctx, 100*time.Millisecond)
		}
	}
}

// Synced is closed once the first list is in.
func (c *ProcCache) Synced() <-chan struct{} { return c.synced }

// list reads every record in pages at one revision and replaces the copy.
func (c *ProcCache) list(ctx context.Context) error {
	procs := map[uint64]cachedProc{}
	key, end := procsPrefix, clientv3.GetPrefixRangeEnd(procsPrefix)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPage), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := c.s.c.Get(ctx, key, opts...)
		if err != nil {
			return fmt.Errorf("pidtable: list procs: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			p, err := DecodeProc(kv.Value)
			if err != nil {
				c.log.Warn("proc cache: undecodable record", "key", string(kv.Key), "err", err)
				continue
			}
			if c.keep(p) {
				procs[p.GPID] = cachedProc{p, kv.ModRevision}
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	c.mu.Lock()
	c.procs, c.rev = procs, rev
	c.mu.Unlock()
	return nil
}

// watch applies changes after the listed revision until the watch fails.
func (c *ProcCache) watch(ctx context.Context) error {
	c.mu.Lock()
	from := c.rev + 1
	c.mu.Unlock()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range c.s.c.Watch(wctx, procsPrefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
		if err := wr.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("watch from revision %d compacted: %w", from, err)
			}
			return err
		}
		c.mu.Lock()
		for _, ev := range wr.Events {
			var gpid uint64
			if _, err := fmt.Sscanf(string(ev.Kv.Key), procsPrefix+"%d", &gpid); err != nil {
				continue
			}
			if ev.Type == clientv3.EventTypeDelete {
				delete(c.procs, gpid)
				continue
			}
			p, err := DecodeProc(ev.Kv.Value)
			if err != nil {
				continue
			}
			if c.keep(p) {
				c.procs[gpid] = cachedProc{p, ev.Kv.ModRevision}
			} else {
				delete(c.procs, gpid)
			}
		}
		c.rev = wr.Header.Revision
		c.mu.Unlock()
	}
	return fmt.Errorf("watch closed: %w", ctx.Err())
}

// Procs returns the cached records, sorted by gpid, and the revision the copy
// reflects.
func (c *ProcCache) Procs() ([]Proc, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Proc, 0, len(c.procs))
	for _, cp := range c.procs {
		out = append(out, cp.p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GPID < out[j].GPID })
	return out, c.rev
}

// Get returns gpid's cached record and its mod revision.
func (c *ProcCache) Get(gpid uint64) (Proc, int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp, ok := c.procs[gpid]
	return cp.p, cp.rev, ok
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

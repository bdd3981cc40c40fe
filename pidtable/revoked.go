package pidtable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// RevocationCache is an agent's in-memory copy of the revocation list, kept
// current by a watch (list, then watch from the list's revision; a new list
// when the watch breaks), so that a TLS handshake or a request checks a
// serial without asking etcd. A revocation reaches every agent within the
// watch's latency (milliseconds on a healthy cluster).
type RevocationCache struct {
	s   *Store
	log *slog.Logger

	mu      sync.RWMutex
	revoked map[string]Revocation
	rev     int64
	synced  chan struct{}
	once    sync.Once
}

// NewRevocationCache returns an empty cache; Sync or Run fills it.
func (s *Store) NewRevocationCache(log *slog.Logger) *RevocationCache {
	return &RevocationCache{s: s, log: log, revoked: map[string]Revocation{}, synced: make(chan struct{})}
}

// Sync lists the revocations once (an agent does so before it serves, so that
// it never admits a revoked certificate for lack of a list).
func (c *RevocationCache) Sync(ctx context.Context) error {
	list, rev, err := c.s.Revocations(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]Revocation, len(list))
	for _, r := range list {
		m[r.Serial] = r
	}
	c.mu.Lock()
	c.revoked, c.rev = m, rev
	c.mu.Unlock()
	c.once.Do(func() { close(c.synced) })
	return nil
}

// Synced is closed once the first list is in.
func (c *RevocationCache) Synced() <-chan struct{} { return c.synced }

// Run watches (listing first unless Sync did) until ctx ends, listing again
// whenever the watch breaks (compaction, etcd restart).
func (c *RevocationCache) Run(ctx context.Context) {
	listed := false
	select {
	case <-c.synced:
		listed = true
	default:
	}
	for ctx.Err() == nil {
		if !listed {
			if err := c.Sync(ctx); err != nil {
				c.log.Warn("revocation cache: list", "err", err)
				sleep(ctx, time.Second)
				continue
			}
		}
		err := c.watch(ctx)
		listed = false
		if ctx.Err() == nil {
			c.log.Info("revocation cache: watch ended; listing again", "err", err)
			sleep(ctx, 100*time.Millisecond)
		}
	}
}

func (c *RevocationCache) watch(ctx context.Context) error {
	c.mu.RLock()
	from := c.rev + 1
	c.mu.RUnlock()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range c.s.c.Watch(wctx, revokedPrefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
		if err := wr.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("watch from revision %d compacted: %w", from, err)
			}
			return err
		}
		c.mu.Lock()
		for _, ev := range wr.Events {
			serial := strings.TrimPrefix(string(ev.Kv.Key), revokedPrefix)
			if ev.Type == clientv3.EventTypeDelete {
				delete(c.revoked, serial) // expired with its certificate
				continue
			}
			var r Revocation
			if decode(ev.Kv.Value, &r, false) != nil {
				r = Revocation{Serial: serial} // undecodable: still revoked
			}
			c.revoked[serial] = r
		}
		c.rev = wr.Header.Revision
		c.mu.Unlock()
	}
	return fmt.Errorf("watch closed: %w", ctx.Err())
}

// Revoked returns the revocation of serial (lower-case hex), if any.
func (c *RevocationCache) Revoked(serial string) (Revocation, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.revoked[serial]
	return r, ok
}

// Len is how many revocations the cache holds.
func (c *RevocationCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.revoked)
}

package pidtable

import (
	"context"
	"log/slog"
)

// RevocationCache is an agent's in-memory copy of the revocation list, an
// Informer over it, so that a TLS handshake or a request checks a serial
// without asking etcd. A revocation reaches every agent within the watch's
// latency (milliseconds on a healthy cluster).
type RevocationCache struct {
	inf *Informer[Revocation]
}

// NewRevocationCache returns an empty cache; Sync or Run fills it.
func (s *Store) NewRevocationCache(log *slog.Logger) *RevocationCache {
	decode := func(serial string, val []byte) (Revocation, bool) {
		var r Revocation
		if decode(val, &r, false) != nil {
			r = Revocation{Serial: serial} // undecodable: still revoked
		}
		return r, true
	}
	return &RevocationCache{inf: NewInformer(s.c, "revocation cache", revokedPrefix, decode, log)}
}

// Sync lists the revocations once (an agent does so before it serves, so that
// it never admits a revoked certificate for lack of a list).
func (c *RevocationCache) Sync(ctx context.Context) error { return c.inf.Sync(ctx) }

// Synced is closed once the first list is in.
func (c *RevocationCache) Synced() <-chan struct{} { return c.inf.Synced() }

// Run watches (listing first unless Sync did) until ctx ends, listing again
// whenever the watch breaks (compaction, etcd restart).
func (c *RevocationCache) Run(ctx context.Context) { c.inf.Run(ctx) }

// Revoked returns the revocation of serial (lower-case hex), if any.
func (c *RevocationCache) Revoked(serial string) (Revocation, bool) {
	r, _, ok := c.inf.Get(serial)
	return r, ok
}

// Len is how many revocations the cache holds.
func (c *RevocationCache) Len() int { return c.inf.Len() }

package pidtable

import (
	"context"
	"fmt"
	"log/slog"
)

// ProcCache is a local copy of the process records a filter keeps (e.g. the
// records that name one node): an Informer over the process table.
type ProcCache struct {
	inf *Informer[Proc]
}

// NewProcCache returns a cache of the records keep accepts (all when nil).
// Run fills it and keeps it current.
func (s *Store) NewProcCache(keep func(Proc) bool, log *slog.Logger) *ProcCache {
	if keep == nil {
		keep = func(Proc) bool { return true }
	}
	decode := func(key string, val []byte) (Proc, bool) {
		p, err := DecodeProc(val)
		if err != nil {
			log.Warn("proc cache: undecodable record", "key", procsPrefix+key, "err", err)
			return Proc{}, false
		}
		return p, keep(p)
	}
	return &ProcCache{inf: NewInformer(s.c, "proc cache", procsPrefix, decode, log)}
}

// Run lists and then watches until ctx ends (Informer.Run).
func (c *ProcCache) Run(ctx context.Context) { c.inf.Run(ctx) }

// Synced is closed once the first list is in.
func (c *ProcCache) Synced() <-chan struct{} { return c.inf.Synced() }

// Changed is closed at the next change of the copy.
func (c *ProcCache) Changed() <-chan struct{} { return c.inf.Changed() }

// Procs returns the cached records, sorted by gpid, and the revision the copy
// reflects.
func (c *ProcCache) Procs() ([]Proc, int64) {
	items, rev := c.inf.List() // keys are zero-padded gpids: key order is gpid order
	out := make([]Proc, len(items))
	for i, it := range items {
		out[i] = it.Val
	}
	return out, rev
}

// Get returns gpid's cached record and its mod revision.
func (c *ProcCache) Get(gpid uint64) (Proc, int64, bool) {
	return c.inf.Get(fmt.Sprintf("%012d", gpid))
}

// Len is how many records the copy holds.
func (c *ProcCache) Len() int { return c.inf.Len() }

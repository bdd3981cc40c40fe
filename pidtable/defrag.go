package pidtable

import (
	"time"
)

// QuotaBackendBytes bounds the embedded member's db file (etcd's own
// default, stated): past it etcd refuses writes (NOSPACE) until it is
// compacted and defragmented.
const QuotaBackendBytes = 2 << 30

// The embedded member compacts its history by itself (every 30 s, to 5
// minutes ago), which frees pages in the db file for reuse but never gives
// them back: after a burst (a day of jobs archived, then expired) the file
// stays at its high mark. Defragmenting rewrites the file at the size of
// what is in use; it stops every read and write of the member while it
// runs, and on the single member an agent embeds that is the whole
// cluster's etcd: a keepalive waits, and a pause longer than the nodes'
// lease (5 s) would make every node NotReady. The pause grows with the data
// in use (the file is copied key by key: ~0.1-0.3 s per 32 MiB here), so the
// member defragments only when it pays and stays short: at most once per
// interval, when at least half of the file and minFree is free, and only
// while inUse is at most maxInUse. A bigger db is left to the operator
// (etcdctl defrag, at a quiet time), and the member says so in its log.
type defragPolicy struct {
	every    time.Duration // how often the sizes are checked
	interval time.Duration // at least this between two defragmentations
	minFree  int64
	maxInUse int64
}

var defaultDefrag = defragPolicy{every: 10 * time.Minute, interval: time.Hour, minFree: 64 << 20, maxInUse: 128 << 20}

// maintain checks the db's sizes every e.defrag.every until Close.
func (e *Embedded) maintain() {
	defer close(e.done)
	t := time.NewTicker(e.defrag.every)
	defer t.Stop()
	var last time.Time
	warned := false
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		if time.Since(last) < e.defrag.interval {
			continue
		}
		did, size, inUse, took, err := e.maybeDefrag()
		switch {
		case err != nil:
			e.log.Warn("etcd defragmentation failed", "err", err)
		case did:
			last = time.Now()
			e.log.Info("etcd defragmented", "size_before", size, "in_use", inUse, "paused", took.Round(time.Millisecond))
		case size-inUse >= e.defrag.minFree && inUse > e.defrag.maxInUse && !warned:
			warned = true
			e.log.Warn("etcd's db file has much free space but too much in use to defragment without a long pause; run etcdctl defrag at a quiet time",
				"size", size, "in_use", inUse, "max_in_use", e.defrag.maxInUse)
		}
	}
}

// maybeDefrag defragments the member if the policy says it pays; it
// returns whether it did, the sizes before, and the pause.
func (e *Embedded) maybeDefrag() (did bool, size, inUse int64, took time.Duration, err error) {
	be := e.e.Server.Backend()
	size, inUse = be.Size(), be.SizeInUse()
	free := size - inUse
	if free < e.defrag.minFree || free < inUse || inUse > e.defrag.maxInUse {
		return false, size, inUse, 0, nil
	}
	start := time.Now()
	err = e.e.Server.Defragment()
	return err == nil, size, inUse, time.Since(start), err
}

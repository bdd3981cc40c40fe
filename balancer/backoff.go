package balancer

import "time"

// A failed move holds its job back: moveBackoff after the first failure,
// doubling with each failure that follows, at most maxMoveBackoff. A job that
// keeps failing to move (it cannot be dumped, say) is then tried a few times
// an hour, not every round, and the round moves the others meanwhile. A job
// that moved, ended or is gone is forgotten.
const (
	moveBackoff    = 10 * time.Second
	maxMoveBackoff = 10 * time.Minute
)

// backoff is how long the balancer leaves one job alone.
type backoff struct {
	until time.Time
	delay time.Duration
}

// backoffs holds the jobs backed off, by gpid. Callers hold Balancer.mu.
type backoffs map[uint64]backoff

// fail backs gpid off after a failed move at now and returns for how long.
func (bs backoffs) fail(gpid uint64, now time.Time) time.Duration {
	bo := bs[gpid]
	bo.delay = min(max(2*bo.delay, moveBackoff), maxMoveBackoff)
	bo.until = now.Add(bo.delay)
	bs[gpid] = bo
	return bo.delay
}

// left is how long gpid is still held back at now (0: not at all).
func (bs backoffs) left(gpid uint64, now time.Time) time.Duration {
	bo, ok := bs[gpid]
	if !ok {
		return 0
	}
	return max(bo.until.Sub(now), 0)
}

// forget drops gpid's backoff (it moved).
func (bs backoffs) forget(gpid uint64) { delete(bs, gpid) }

// keep forgets the jobs not in live (ended or gone).
func (bs backoffs) keep(live map[uint64]float64) {
	for g := range bs {
		if _, ok := live[g]; !ok {
			delete(bs, g)
		}
	}
}

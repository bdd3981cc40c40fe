package balancer

import (
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// status is what the leader publishes after a round at now: who leads,
// whether the cluster's setting says enabled, the moves in flight and their
// counts, and the cost model's figures.
func (b *Balancer) status(now time.Time) pidtable.BalancerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := pidtable.BalancerStatus{
		Leader: b.cfg.Name, Enabled: b.enabled, LastRound: now.UTC(),
		Moves: b.moves, MovesDone: b.done, MovesFail: b.failed,
		TransferRate: b.cost.rate, Freeze: b.cost.freeze, Measured: b.cost.measured,
	}
	for _, m := range b.inflight {
		st.Inflight = append(st.Inflight, m)
	}
	return st
}

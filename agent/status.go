package agent

import (
	"context"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// statusInterval is how often the node publishes its load.
const statusInterval = time.Second

// statusLoop publishes the node's live status every second and replaces the
// etcd session if its lease was lost (e.g. etcd was unreachable for a TTL).
func (a *Agent) statusLoop(ctx context.Context) {
	t := time.NewTicker(statusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.session.Load().Done():
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("etcd lease lost; node is NotReady until a new one is granted")
			if _, err := a.newSession(ctx); err != nil {
				a.log.Error("renew etcd lease", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
		case <-t.C:
		case <-a.statusNow:
		}
		if err := a.publishStatus(ctx, a.measure()); err != nil && ctx.Err() == nil {
			a.log.Warn("publish status", "err", err)
		}
	}
}

// kickStatus makes the status loop publish now rather than at its next tick:
// a job that just arrived shows in ssi ps with its figures at once.
func (a *Agent) kickStatus() {
	select {
	case a.statusNow <- struct{}{}:
	default:
	}
}

// measure samples the node's jobs (supervisor.Sample), with the placements
// this node served (recent.go), read before the sample.
func (a *Agent) measure() pidtable.NodeStatus {
	return a.sup.Sample(recentWindow, a.served.tokens(time.Now()))
}

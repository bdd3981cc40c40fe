package agent

import (
	"context"
	"time"

	"github.com/ssi-cluster/ssi/failover"
	"github.com/ssi-cluster/ssi/pidtable"
)

// statusInterval is how often the node measures its jobs; it writes its
// status only when the figures moved (pidtable.StatusGate).
const statusInterval = time.Second

// statusLoop measures the node's jobs every second, publishes the status
// when it says something new (pidtable.StatusGate), and replaces the
// etcd session if its lease was lost (e.g. etcd was unreachable for a TTL).
func (a *Agent) statusLoop(ctx context.Context) {
	pidtable.StatusLoop{
		Interval: statusInterval,
		Timeout:  2 * statusInterval,
		Session:  a.session.Load,
		Publish:  func(ctx context.Context) error { return a.publishStatus(ctx, a.measure()) },
		Lost:     a.waitForFailover,
		Renew:    func(ctx context.Context) error { _, err := a.newSession(ctx); return err },
		Now:      a.statusNow,
		Log:      a.log,
	}.Run(ctx)
}

// waitForFailover keeps the node NotReady, after its lease was lost, while
// the failover controller restores the jobs the fence killed elsewhere
// (package failover).
func (a *Agent) waitForFailover(ctx context.Context) {
	at := a.fencedAt.Load()
	if at == nil || time.Since(*at) >= failover.Rejoin {
		return
	}
	wait := failover.Rejoin - time.Since(*at)
	a.log.Warn("jobs were fenced; waiting before taking a new lease", "wait", wait)
	select {
	case <-ctx.Done():
	case <-time.After(wait):
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

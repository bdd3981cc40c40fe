package pidtable

import (
	"context"
	"log/slog"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// StatusLoop keeps a node Ready: it publishes the node's status on its lease
// every Interval (Publish, which writes with Store.PublishStatus), and when
// the lease is lost (etcd was unreachable for a TTL) it grants a new session
// (Renew) and publishes again. The agent's status loop and a hollow node's
// are the same loop; they differ in how they renew and what they publish.
type StatusLoop struct {
	// Interval is the time between two publications.
	Interval time.Duration
	// Offset delays the first publication (hollow nodes spread their writes
	// over the interval); 0: none.
	Offset time.Duration
	// Timeout bounds each publication, so that a publish that hangs (etcd
	// unreachable) does not keep the loop from seeing its lease lost; 0:
	// bounded by Run's context only.
	Timeout time.Duration
	// Session returns the node's current session.
	Session func() *concurrency.Session
	// Publish writes the node's status on the current session's lease.
	Publish func(ctx context.Context) error
	// Lost, if set, is called once a lease is lost, before Renew; it may
	// wait (ctx bounds it).
	Lost func(ctx context.Context)
	// Renew grants the node a new session; it is retried every second
	// until it succeeds.
	Renew func(ctx context.Context) error
	// Now, if set, asks for a publication before the next tick.
	Now <-chan struct{}
	Log *slog.Logger
}

// Run runs the loop until ctx ends.
func (l StatusLoop) Run(ctx context.Context) {
	if l.Offset > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.Offset):
		}
	}
	t := time.NewTicker(l.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.Session().Done():
			if ctx.Err() != nil {
				return
			}
			l.Log.Warn("etcd lease lost; node is NotReady until a new one is granted")
			if l.Lost != nil {
				l.Lost(ctx)
				if ctx.Err() != nil {
					return
				}
			}
			if err := l.Renew(ctx); err != nil {
				l.Log.Error("renew etcd lease", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
		case <-t.C:
		case <-l.Now:
		}
		if err := l.publish(ctx); err != nil && ctx.Err() == nil {
			l.Log.Warn("publish status", "err", err)
		}
	}
}

func (l StatusLoop) publish(ctx context.Context) error {
	if l.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.Timeout)
		defer cancel()
	}
	return l.Publish(ctx)
}

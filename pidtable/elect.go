package pidtable

import (
	"context"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// Elect runs one of the cluster's elected loops (the balancer, the service
// controller): it campaigns at prefix as name on the session session returns
// (an agent replaces its session when the lease is lost), and while elected
// calls lead with a context that ends with the term: when the session's lease
// is lost, or ctx ends. After each term it resigns (bounded), and campaigns
// again; it returns when ctx ends. A failed campaign is retried after
// a second; campaign reports it (nil: none).
func Elect(ctx context.Context, session func() *concurrency.Session, prefix, name string, campaign func(error), lead func(term context.Context, s *concurrency.Session, el *concurrency.Election)) {
	for ctx.Err() == nil {
		s := session()
		select {
		case <-s.Done():
			// The agent is replacing the session.
			sleep(ctx, 200*time.Millisecond)
			continue
		default:
		}
		term, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-s.Done():
			case <-term.Done():
			}
			cancel()
		}()
		el := concurrency.NewElection(s, prefix)
		if err := el.Campaign(term, name); err != nil {
			cancel()
			if ctx.Err() == nil {
				if campaign != nil {
					campaign(err)
				}
				sleep(ctx, time.Second)
			}
			continue
		}
		lead(term, s, el)
		cancel()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = el.Resign(rctx)
		rcancel()
	}
}

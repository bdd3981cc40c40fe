package agent

import (
	"context"
	"slices"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/nodes"
)

// Ended jobs leave the live table after the retention (--retention): each
// agent's gc archives its own (pidtable.Store.Delete archives an ended
// record: history.go). The records of a node that is gone (no agent, no
// status key) have no gc to archive them; the elected agent (the service
// controller's leader, for its term) sweeps the table for them every
// orphanSweepEvery and archives those that ended more than the retention ago.

// orphanSweepEvery is the period of the sweep for a retention: half of it,
// between 30 s and 10 min. One sweep reads the table once, in pages.
func orphanSweepEvery(retention time.Duration) time.Duration {
	return min(max(retention/2, 30*time.Second), 10*time.Minute)
}

// archiveOrphansLoop sweeps until term ends.
func (a *Agent) archiveOrphansLoop(term context.Context) {
	t := time.NewTicker(orphanSweepEvery(a.cfg.Retention))
	defer t.Stop()
	for {
		select {
		case <-term.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		n, err := a.store.ArchiveOrphans(term, start.Add(-a.cfg.Retention))
		switch {
		case err != nil && term.Err() == nil:
			a.log.Warn("archive the ended jobs of nodes that are gone", "err", err)
		case n > 0:
			a.log.Info("archived the ended jobs of nodes that are gone", "count", n, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}

// leftNodesLoop removes, until term ends, the nodes that left more than
// --left-retention ago and did not come back (nodes.ExpiredLeft): a node's
// record and certificates go as with ssi node rm. The nodes are checked on
// the watched view of nodes; the jobs (a node with a live job stays) only
// when one is due, and a node kept by its jobs is looked at again an hour
// later.
func (a *Agent) leftNodesLoop(term context.Context) {
	if a.cfg.LeftRetention <= 0 {
		return
	}
	t := time.NewTicker(min(max(a.cfg.LeftRetention/10, time.Second), time.Minute))
	defer t.Stop()
	later := map[string]time.Time{} // busy nodes, not before
	for {
		select {
		case <-term.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		snap, err := a.nodes(term)
		if err != nil {
			continue
		}
		expired := nodes.ExpiredLeft(snap, now, a.cfg.LeftRetention)
		due := false
		for _, name := range expired {
			due = due || now.After(later[name])
		}
		if !due {
			continue
		}
		full, err := a.balancerView.Snapshot(term) // with the live jobs
		if err != nil {
			continue
		}
		res, err := a.nodeCtl.RemoveExpiredLeft(term, full, now, a.cfg.LeftRetention)
		for _, r := range res {
			a.log.Info("removed a node that left and did not come back", "removed", r.Node, "retention", a.cfg.LeftRetention, "result", r.Message)
		}
		if err != nil && term.Err() == nil {
			a.log.Warn("remove the nodes that left", "err", err)
		}
		for _, name := range expired {
			if !slices.ContainsFunc(res, func(r api.NodeRemoveResult) bool { return r.Node == name }) {
				later[name] = now.Add(time.Hour) // kept by its jobs
			}
		}
	}
}

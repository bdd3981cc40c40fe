package nodes

import (
	"context"
	"fmt"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// DefaultLeftRetention is how long a node that left on purpose (its agent
// drained it and stopped: Left) stays listed before it is removed by itself,
// when it has not come back and runs no job.
const DefaultLeftRetention = 24 * time.Hour

// ExpiredLeft returns the nodes of snap (the watched view: nodes, statuses,
// live jobs) that left more than retention before now, are not Ready and
// have no live job recorded on them: the ones to remove. retention <= 0:
// none.
func ExpiredLeft(snap *pidtable.Snapshot, now time.Time, retention time.Duration) []string {
	if retention <= 0 {
		return nil
	}
	busy := map[string]bool{}
	for _, p := range snap.Procs {
		if !p.State.Ended() {
			busy[p.Node] = true
		}
	}
	var out []string
	for _, n := range snap.Nodes {
		if !n.Left.IsZero() && now.Sub(n.Left) > retention && !snap.Ready(n.Name) && !busy[n.Name] {
			out = append(out, n.Name)
		}
	}
	return out
}

// RemoveExpiredLeft removes the nodes ExpiredLeft names, as ssi node rm
// does (their records, settings and certificates; none has a job), and
// returns what was removed. A node that came back, or got a job, in the
// meantime is refused by Remove and skipped.
func (c *Control) RemoveExpiredLeft(ctx context.Context, snap *pidtable.Snapshot, now time.Time, retention time.Duration) ([]api.NodeRemoveResult, error) {
	var out []api.NodeRemoveResult
	for _, name := range ExpiredLeft(snap, now, retention) {
		res, err := c.remove(ctx, name, fmt.Sprintf("ssi (left more than %s ago: --left-retention)", retention), false, true)
		if err != nil {
			if api.IsCode(err, api.CodeConflict) {
				continue
			}
			return out, fmt.Errorf("remove node %s, which left: %w", name, err)
		}
		out = append(out, res)
	}
	return out, nil
}

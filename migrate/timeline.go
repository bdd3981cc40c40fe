package migrate

import (
	"sync"
	"time"

	"github.com/ssi-cluster/ssi/api"
)

// timeline times the steps of a migration on one node, for the figures
// `ssi migrate -o json` reports (api.MigrateStats.Steps): where the frozen
// time goes.
type timeline struct {
	node  string
	mu    sync.Mutex
	steps []api.Step
}

// since records step name as having taken from start until now, and returns now.
func (t *timeline) since(name string, start time.Time) time.Time {
	now := time.Now()
	if t == nil {
		return now
	}
	t.mu.Lock()
	t.steps = append(t.steps, api.Step{Node: t.node, Name: name, MS: float64(now.Sub(start).Microseconds()) / 1000})
	t.mu.Unlock()
	return now
}

// add appends steps taken elsewhere (the target's, say).
func (t *timeline) add(steps []api.Step) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.steps = append(t.steps, steps...)
	t.mu.Unlock()
}

// list returns a copy of the steps so far.
func (t *timeline) list() []api.Step {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]api.Step(nil), t.steps...)
}

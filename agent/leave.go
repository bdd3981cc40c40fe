package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// A graceful stop (ssi agent on SIGTERM, unless --no-drain): the agent drains
// its own node before it stops, through the same record and controller as
// ssi node drain, then marks the node Left; started again, it lifts that
// cordon and mark (comeBack).

// leaveOnStop waits for cfg.Stopping, then drains this node (at most
// cfg.DrainTimeout), marks it Left, and closes cfg.Drained: the caller then
// stops the agent. Run's context ending first (a second signal) ends it.
func (a *Agent) leaveOnStop(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-a.cfg.Stopping:
	}
	defer close(a.cfg.Drained)
	timeout := a.cfg.DrainTimeout
	dctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	left, err := a.drainSelf(dctx, timeout)
	if err != nil {
		a.log.Warn("drain on stop", "err", err)
	}
	if ctx.Err() != nil {
		return
	}
	_, _, err = a.store.UpdateNodeConfig(dctx, a.cfg.Name, func(c *pidtable.NodeConfig) (bool, error) {
		c.Left = time.Now().UTC()
		return true, nil
	})
	if err != nil {
		a.log.Warn("mark the node Left", "err", err)
		return
	}
	a.log.Info("node left: drained before the agent stops", "jobs_left", left)
}

// drainSelf drains this node as ssi node drain would, waiting at most
// timeout; it returns how many jobs are still here. A drain still under way
// at the timeout is cancelled: what is left keeps running under its shims.
func (a *Agent) drainSelf(ctx context.Context, timeout time.Duration) (int, error) {
	name := a.cfg.Name
	live := a.liveHere(ctx)
	if live == 0 {
		_, _, err := a.store.UpdateNodeConfig(ctx, name, func(c *pidtable.NodeConfig) (bool, error) {
			if c.Cordoned {
				return false, nil
			}
			c.Cordoned, c.CordonedBy, c.CordonedAt, c.Reason = true, "node "+name, time.Now().UTC(), pidtable.CordonAgentStop
			return true, nil
		})
		return 0, err
	}
	by := "node " + name + " (agent stopping)"
	d, err := a.nodeCtl.StartDrain(ctx, name, by, api.DrainRequest{Deadline: timeout}, pidtable.CordonAgentStop)
	if err != nil {
		return live, fmt.Errorf("%d jobs stay here and keep running: %w", live, err)
	}
	a.log.Info("agent stopping: draining the node first", "jobs", live, "timeout", timeout, "already", d.Already)
	a.events.add(ctx, pidtable.Event{Kind: pidtable.EventDrain, From: name, Reason: fmt.Sprintf("drain of %s: its agent is stopping (SIGTERM); %d jobs to move within %s", name, live, timeout)})
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		cur, _, err := a.store.GetDrain(ctx, name)
		if err == nil && cur.State != pidtable.DrainActive {
			return a.liveHere(ctx), nil
		}
		select {
		case <-ctx.Done():
			return a.liveHere(ctx), ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	for range 8 {
		cur, rev, err := a.store.GetDrain(ctx, name)
		if err != nil || cur.State != pidtable.DrainActive {
			break
		}
		cur.State, cur.Finished = pidtable.DrainCancelled, time.Now().UTC()
		cur.Message = fmt.Sprintf("the agent stopped after --drain-timeout %s; the jobs still here keep running under their shims", timeout)
		if _, err := a.store.PutDrain(ctx, cur, rev, nil); !errors.Is(err, pidtable.ErrChanged) {
			break
		}
	}
	return a.liveHere(ctx), nil
}

// comeBack, at start, lifts what a drain on stop left: the Left mark, and the
// cordon it set (not an admin's).
func (a *Agent) comeBack(ctx context.Context) {
	_, changed, err := a.store.UpdateNodeConfig(ctx, a.cfg.Name, func(c *pidtable.NodeConfig) (bool, error) {
		if c.Left.IsZero() && c.Reason != pidtable.CordonAgentStop {
			return false, nil
		}
		c.Left = time.Time{}
		if c.Reason == pidtable.CordonAgentStop {
			c.Cordoned, c.CordonedBy, c.CordonedAt, c.Reason = false, "", time.Time{}, ""
		}
		return true, nil
	})
	switch {
	case err != nil && !errors.Is(err, pidtable.ErrNotFound) && ctx.Err() == nil:
		a.log.Warn("lift the Left mark of the last stop", "err", err)
	case changed:
		a.log.Info("node back: the Left mark and the cordon of the last stop lifted")
	}
}

// liveHere counts the jobs the process table says run on this node (-1 when
// it cannot be read).
func (a *Agent) liveHere(ctx context.Context) int {
	procs, err := a.store.Procs(ctx, a.cfg.Name)
	if err != nil {
		return -1
	}
	n := 0
	for _, p := range procs {
		if !p.State.Ended() {
			n++
		}
	}
	return n
}

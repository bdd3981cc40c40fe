package agent

// The events the agent writes at points of a job's or a node's life that no
// record change marks (the store writes those: pidtable/events.go): a signal
// sent, a migration's outcome with its phase timings, the node Ready; and
// the elected housekeeper's (the service controller's leader): the log's
// trim, and what only a watch of the cluster sees (nodes joined, NotReady or
// left, new leaders).

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/timer"
)

// killed records that who sends sig to p: written before the signal is
// sent, so that the log has it before the exit it may cause.
func (l *eventLog) killed(ctx context.Context, p pidtable.Proc, sig syscall.Signal, who string) {
	l.add(ctx, pidtable.Event{Kind: pidtable.EventKill, GPID: p.GPID, User: p.User, From: p.Node,
		Signal: pidtable.SignalName(int(sig)), Caller: who, Reason: who + " sends SIG" + pidtable.SignalName(int(sig))})
}

// migrated records how a migration of p to target ended: done with its
// figures and phase timings, or failed with the error (the record's
// rollback is an event of its own, rolledback, when the job was claimed).
// The commit of the record writes no event: the done event carries the
// figures, which only the source has, after it.
func (l *eventLog) migrated(ctx context.Context, p pidtable.Proc, target string, stats *api.MigrateStats, err error) {
	ev := pidtable.Event{Kind: pidtable.EventMigrate, GPID: p.GPID, User: p.User, From: p.Node, To: target}
	if err != nil {
		ev.Phase, ev.Reason = pidtable.PhaseFailed, err.Error()
		var me *migrate.Error
		if errors.As(err, &me) {
			ev.Reason = "during " + string(me.Phase) + ": " + err.Error()
		}
		l.add(ctx, ev)
		return
	}
	if stats == nil {
		return
	}
	ev.Phase = pidtable.PhaseDone
	ev.Took, ev.Frozen, ev.Bytes = ms(stats.TotalMS), ms(stats.FrozenMS), stats.ImageBytes
	ev.Phases = map[string]time.Duration{"dump": ms(stats.DumpMS), "transfer": ms(stats.TransferMS), "restore": ms(stats.RestoreMS)}
	if stats.PostCopy {
		ev.Phases["pages"], ev.Reason = ms(stats.PagesMS), "post-copy"
	}
	l.add(ctx, ev)
}

// ready records that this node is Ready on lease, once per lease: the
// first status published on a new lease (a start, or a new session after
// the old lease was lost); at the agent's first, also that the node joined
// if the agent registered it for the first time.
func (l *eventLog) ready(ctx context.Context, lease int64) {
	l.mu.Lock()
	seen, first := l.readyLease == lease, l.readyLease == 0
	l.readyLease = lease
	l.mu.Unlock()
	if seen {
		return
	}
	name := l.a.cfg.Name
	if first {
		if v, err := l.a.store.NodeVersion(ctx, name); err == nil && v == 1 {
			// This agent registered the node for the first time at its start.
			l.add(ctx, pidtable.Event{Kind: pidtable.EventNode, Phase: pidtable.PhaseJoined, From: name, Reason: "node " + name + " joined the cluster"})
		}
	}
	l.add(ctx, pidtable.Event{Kind: pidtable.EventNode, Phase: pidtable.PhaseReady, From: name, Reason: "node " + name + " is Ready"})
}

// eventsHousekeeping runs for a term of the elected housekeeper: it trims
// the log to pidtable.MaxEvents every trimEvery, and reports the cluster's
// changes only a watch sees (pidtable.Store.WatchClusterEvents), its own
// leadership first.
func (a *Agent) eventsHousekeeping(term context.Context) {
	a.events.add(term, pidtable.Event{Kind: pidtable.EventLeader, Role: "service", From: a.cfg.Name,
		Reason: a.cfg.Name + " became leader of the service controller (and the cluster's housekeeping: the event log's trim)"})
	go func() {
		t := time.NewTicker(trimEvery)
		defer t.Stop()
		for {
			select {
			case <-term.Done():
				return
			case <-t.C:
			}
			if err := a.store.TrimEvents(term, pidtable.MaxEvents); err != nil && term.Err() == nil {
				a.log.Warn("events: trim", "err", err)
			}
		}
	}()
	for term.Err() == nil {
		err := a.store.WatchClusterEvents(term, pidtable.ClusterEventsConfig{
			Emit:    a.events.add,
			Leaders: map[string]string{"drain": pidtable.DrainLeaderPrefix, "failover": pidtable.FailoverLeaderPrefix, "timer": timer.LeaderPrefix},
		})
		if term.Err() == nil {
			a.log.Warn("events: watch of the cluster ended; again in a second", "err", err)
			select {
			case <-term.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// The phantom check. A record that names this node and says the job runs
// (running, migrating, checkpointing) while this agent supervises no process
// of it is a phantom: its `ssi wait` would never return and the balancer would
// keep picking it. Whatever made it (a bug, a lost write), it does not outlive
// a few seconds: every healEvery the agent compares its own records, from its
// watched cache (pidtable.ProcCache: no read of the table), with its live jobs;
// a record seen without a process twice in a row at the same revision is
// recorded lost, with the reason, and an event says so. The transition is
// guarded by that revision and re-checks the job under the agent's lock, so a
// job that started, ended or moved meanwhile is left alone.

// healEvery is the period of the phantom check; a phantom is healed within
// two to three periods.
const healEvery = 2 * time.Second

// etcdStepTimeout bounds one record update of the check.
const etcdStepTimeout = 10 * time.Second

// errNotPhantom aborts a heal whose job turned up.
var errNotPhantom = errors.New("agent: the job has a process here")

func (a *Agent) healLoop(ctx context.Context) {
	select {
	case <-a.own.Synced():
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(healEvery)
	defer t.Stop()
	suspects := map[uint64]int64{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		suspects = a.heal(ctx, suspects)
	}
}

// heal checks the records once against the live jobs. prev holds the
// suspects of the last check (gpid to record revision); it returns this
// check's.
func (a *Agent) heal(ctx context.Context, prev map[uint64]int64) map[uint64]int64 {
	procs, _ := a.own.Procs()
	next := map[uint64]int64{}
	for _, p := range procs {
		if p.Node != a.cfg.Name || (p.State != pidtable.Running && p.State != pidtable.Migrating && p.State != pidtable.Checkpointing) {
			continue
		}
		busy := a.sup.Here(p.GPID)
		if busy {
			continue
		}
		_, rev, ok := a.own.Get(p.GPID)
		if !ok {
			continue
		}
		if prev[p.GPID] != rev {
			next[p.GPID] = rev // first sighting at this revision: look again
			continue
		}
		a.healPhantom(ctx, p, rev)
	}
	return next
}

// healPhantom records a phantom lost, if its record is still at rev.
func (a *Agent) healPhantom(ctx context.Context, p pidtable.Proc, rev int64) {
	why := fmt.Sprintf("no process of the job exists on node %s, which its record named as %s (found by the agent's check, %s apart); its end was not recorded, so its exit status is unknown", a.cfg.Name, p.State, healEvery)
	cctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	_, _, err := a.store.TransitionAt(cctx, p.GPID, rev, pidtable.End, a.cfg.Name, func(q *pidtable.Proc) error {
		busy := a.sup.Here(q.GPID)
		if busy {
			return errNotPhantom
		}
		q.State, q.Error, q.PID, q.InitPID = pidtable.Lost, why, 0, 0
		return nil
	})
	if err != nil {
		a.log.Info("phantom check: record changed; left alone", "gpid", p.GPID, "err", err)
		return
	}
	a.log.Warn("phantom check: a record said the job runs here, but it does not; recorded lost", "gpid", p.GPID, "was", p.State)
	// The lost event went with the record's change (pidtable/events.go).
}

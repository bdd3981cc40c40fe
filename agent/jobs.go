package agent

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
	"github.com/ssi-cluster/ssi/supervisor"
)

// The agent's part in its jobs: who may start what (spawn), and, after a
// restart, what each job's record was left in (reconcile). Package
// supervisor does the rest: start, watch, signal, sample, adopt, forget.

// spawn starts req on this node for who, placed under token (recent.go), and
// returns its gpid.
func (a *Agent) spawn(ctx context.Context, req api.RunRequest, who access.Caller, token string) (api.RunResponse, error) {
	if err := supervisor.ValidateRun(req); err != nil {
		return api.RunResponse{}, err
	}
	name := req.User
	if name == "" {
		name = who.User
	}
	if name != who.User && !who.Admin {
		return api.RunResponse{}, api.Errorf(api.CodeForbidden, "--user %s: only admins may run jobs as another user (you are %s)", name, who)
	}
	if pidtable.HasFailoverCopy(req.CheckpointEvery, req.Service) && !a.hasLease() {
		return api.RunResponse{}, api.Errorf(api.CodeNotReady, "node %s has no etcd lease now (cut off, or rejoining after fencing its jobs): a job with a failover copy (--checkpoint-every, a service replica) cannot start here; try again when `ssi nodes` shows it Ready, or pick another node", a.cfg.Name)
	}
	resp, err := a.sup.Start(ctx, supervisor.StartRequest{RunRequest: req, User: name, AllowRoot: who.Admin, Token: token})
	if err == nil {
		a.metrics.Spawned()
	}
	return resp, err
}

// hasLease tells whether this node's etcd lease is live, as far as its
// session knows (a lost one closes the session's Done).
func (a *Agent) hasLease() bool {
	s := a.session.Load()
	if s == nil {
		return false
	}
	select {
	case <-s.Done():
		return false
	default:
		return true
	}
}

// reconcile brings the process table and the job directories into agreement
// after a (re)start: adopt live jobs, resolve the migrations and checkpoints
// the agent's stop interrupted, record ends that happened while the agent
// was away, mark Lost what vanished, and remove leftovers of aborted starts.
func (a *Agent) reconcile(ctx context.Context) error {
	procs, err := a.store.Procs(ctx, a.cfg.Name)
	if err != nil {
		return err
	}
	known := map[uint64]bool{}
	for _, p := range procs {
		known[p.GPID] = true
		if p.State.Ended() {
			continue
		}
		j, alive := a.sup.Recover(p)
		switch {
		case alive:
			switch p.State {
			case pidtable.Migrating:
				a.mig.RollbackOrphan(ctx, p, migrationJob(j), nil)
			case pidtable.Checkpointing:
				// A checkpoint was being taken: the job may be stopped. It runs
				// on; a checkpoint that was saved completely is kept.
				j.Resume()
				_ = a.ckpts.Release(ctx, p.GPID, p.Checkpoint)
			}
			if _, err := os.Stat(filepath.Join(j.Dir(), shim.RestoreFile)); err == nil {
				// Restored here by a migration that committed (the record is ours)
				// while this agent was down: the copy is still stopped.
				j.Resume()
				_ = os.Remove(filepath.Join(j.Dir(), shim.RestoreFile))
			}
			if p.State == pidtable.Starting {
				_ = a.sup.MarkRunning(ctx, j)
			}
			a.sup.Watch(j)
			a.log.Info("adopted running job", "gpid", p.GPID, "pid", j.State().MainPID)
		case a.resumeHandedOver(ctx, p, j):
			// Restored from its images (or recorded lost, saying why).
		default:
			// Ended while we were away (exit.json present) or lost (absent).
			if cg := j.Cgroup(); cg != nil {
				_ = cg.Destroy()
			}
			a.sup.Finish(ctx, j)
		}
	}
	a.mig.RemoveStaleImages()
	if err := a.ckpts.Reconcile(ctx); err != nil {
		return err
	}
	return a.sup.RemoveUnknown(known)
}

// gcLoop forgets ended jobs older than the retention period, and the
// directories of jobs that live elsewhere now.
func (a *Agent) gcLoop(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		a.sup.GC(ctx, func(ctx context.Context) ([]pidtable.Proc, error) {
			select {
			case <-a.own.Synced():
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			procs, _ := a.own.Procs()
			return procs, nil
		})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

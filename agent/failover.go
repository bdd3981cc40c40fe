package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint/store"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/failover"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// The agent's part in failover (package failover): the Keeper of this
// node's automatic checkpoints, the controller's candidate, the fence on a
// lost lease, and the two agent-to-agent calls: copy a checkpoint here, and
// restore a dead node's job here.

// failoverLoops are the Keeper (every agent) and the controller's candidate
// (not with --balancer=false, like the other controllers).
func (a *Agent) failoverLoops() []func(context.Context) {
	loops := []func(context.Context){a.newKeeper().Run, a.fenceLoop, a.leaseDeadlineLoop}
	if !a.cfg.NoBalancer {
		loops = append(loops, a.newFailoverController().Run)
	}
	return loops
}

func (a *Agent) newKeeper() *failover.Keeper {
	return failover.NewKeeper(failover.KeeperConfig{
		Node: a.cfg.Name,
		Own:  func() []pidtable.Proc { p, _ := a.own.Procs(); return p },
		Take: func(ctx context.Context, p pidtable.Proc) (pidtable.Checkpoint, error) {
			ctx, cancel := context.WithTimeout(ctx, store.Timeout)
			defer cancel()
			name := fmt.Sprintf("auto-%d-%s", p.GPID, time.Now().UTC().Format("20060102-150405.000"))
			res, err := a.ckpts.Take(ctx, p, api.CheckpointRequest{Name: name, LeaveRunning: true, Auto: true})
			a.metrics.Checkpointed(true, res.Size, err)
			return res.Checkpoint, err
		},
		Copy: a.copyCheckpoint,
		Prune: func(ctx context.Context, gpid uint64, keep int) error {
			_, err := a.ckpts.PruneAuto(ctx, gpid, keep)
			return err
		},
		Log: a.log,
	})
}

// copyCheckpoint has another Ready node copy c: prefer, if it is Ready,
// else the one with the most free memory.
func (a *Agent) copyCheckpoint(ctx context.Context, c pidtable.Checkpoint, prefer string) (string, error) {
	snap, err := a.nodes(ctx)
	if err != nil {
		return "", err
	}
	var cands []pidtable.Node
	for _, n := range snap.Nodes {
		if n.Name != a.cfg.Name && snap.Ready(n.Name) && !n.Cordoned {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return "", errors.New("no other Ready node to hold a copy")
	}
	free := func(n pidtable.Node) int64 { return n.Memory - snap.Status[n.Name].ReservedMemory }
	slices.SortFunc(cands, func(x, y pidtable.Node) int {
		switch {
		case x.Name == prefer:
			return -1
		case y.Name == prefer:
			return 1
		}
		return cmp.Compare(free(y), free(x)) // most free first
	})
	to := cands[0].Name
	ctx, cancel := context.WithTimeout(ctx, store.Timeout)
	defer cancel()
	var cp pidtable.Checkpoint
	if err := a.peerCall(ctx, to, "/v1/checkpoints/"+url.PathEscape(c.Name)+"/copy", &cp); err != nil {
		return "", err
	}
	return to, nil
}

func (a *Agent) newFailoverController() *failover.Controller {
	return failover.NewController(failover.ControllerConfig{
		Name:        a.cfg.Name,
		Session:     a.session.Load,
		View:        a.balancerView.Snapshot,
		Checkpoints: func(ctx context.Context) ([]pidtable.Checkpoint, error) { return a.store.Checkpoints(ctx, "") },
		Restore: func(ctx context.Context, node string, c pidtable.Checkpoint, dead string) error {
			ctx, cancel := context.WithTimeout(ctx, store.Timeout)
			defer cancel()
			q := url.Values{"checkpoint": {c.Name}, "dead": {dead}}
			err := a.peerCall(ctx, node, fmt.Sprintf("/v1/failover/%d?%s", c.GPID, q.Encode()), nil)
			if api.IsCode(err, api.CodeConflict) {
				return fmt.Errorf("%w: %w", pidtable.ErrChanged, err)
			}
			return err
		},
		Abandon: func(ctx context.Context, gpid uint64, dead, reason string) error {
			_, err := a.store.Abandon(ctx, gpid, dead, reason)
			return err
		},
		Record: a.events.add,
		Log:    a.log,
	})
}

// handleCopyCheckpoint is POST /v1/checkpoints/{name}/copy (a node): the
// node holding an automatic checkpoint asks this one to keep a copy.
func (a *Agent) handleCopyCheckpoint(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, _, err := a.store.GetCheckpoint(ctx, r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if who := access.CallerOf(r).Node; who != c.Node {
		a.writeError(w, r, api.Errorf(api.CodeForbidden, "checkpoint %s is held by %s: only that node may have it copied (not %s)", c.Name, c.Node, who))
		return
	}
	snap, err := a.nodes(ctx)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	holder, ok := snap.Node(c.Node)
	if !ok {
		a.writeError(w, r, errdefs.Unavailablef("node %s, which holds checkpoint %s, is not registered", c.Node, c.Name))
		return
	}
	cp, err := a.ckpts.Copy(ctx, c, holder)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if c.Auto {
		if _, err := a.ckpts.PruneAuto(ctx, c.GPID, failover.DefaultKeep); err != nil {
			a.log.Warn("prune copies of automatic checkpoints", "gpid", c.GPID, "err", err)
		}
	}
	writeJSON(w, http.StatusCreated, cp)
}

// handleFailover is POST /v1/failover/{gpid}?checkpoint=NAME&dead=NODE (a
// node): the failover controller's leader has this node, which holds the
// checkpoint, restore the job of a dead node from it.
func (a *Agent) handleFailover(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	gpid, err := strconv.ParseUint(r.PathValue("gpid"), 10, 64)
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "gpid %q: want a number", r.PathValue("gpid")))
		return
	}
	leader, err := a.store.FailoverLeader(ctx)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if who := access.CallerOf(r).Node; who == "" || who != leader {
		a.writeError(w, r, api.Errorf(api.CodeForbidden, "node %q is not the failover controller's leader (%q)", who, leader))
		return
	}
	c, _, err := a.store.GetCheckpoint(ctx, r.URL.Query().Get("checkpoint"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if c.GPID != gpid || c.Node != a.cfg.Name || c.State != pidtable.Ready {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "checkpoint %s (gpid %d, %s on %s) is not a ready checkpoint of gpid %d held here", c.Name, c.GPID, c.State, c.Node, gpid))
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), store.Timeout)
	defer cancel()
	res, err := a.ckpts.Failover(rctx, c, r.URL.Query().Get("dead"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

// fenceLoop fences as soon as the session's lease is lost (the etcd
// client heard no renewal for a TTL), on its own: the status loop may be
// waiting on etcd meanwhile.
func (a *Agent) fenceLoop(ctx context.Context) {
	for {
		s := a.session.Load()
		select {
		case <-ctx.Done():
			return
		case <-s.Done():
		}
		if ctx.Err() != nil {
			return
		}
		if n := a.fence(ctx); n > 0 {
			a.log.Warn("etcd lease lost: fenced the jobs that may be restored elsewhere", "jobs", n)
		}
		// Wait for the status loop's new session.
		for a.session.Load() == s {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// fence kills, at once, the jobs of this node that have a failover copy:
// those with automatic checkpoints, which the failover controller restores
// elsewhere Grace after etcd expires the lease, and service replicas, which
// the service controller replaces. Their ends are not
// recorded (the record is the controller's to settle). It returns how many
// it fenced.
func (a *Agent) fence(ctx context.Context) int {
	var wg sync.WaitGroup
	n := 0
	for _, p := range a.failoverCopies() {
		j := a.sup.Job(p.GPID)
		if j == nil {
			continue
		}
		n++
		a.log.Warn("fenced: this node lost its etcd lease, and the job may be restored elsewhere from its checkpoints; killed here", "gpid", p.GPID)
		wg.Add(1)
		go func() { defer wg.Done(); a.sup.Forget(j) }()
	}
	if n > 0 {
		now := time.Now()
		a.fencedAt.Store(&now) // before the kills are waited for: the status loop reads it
	}
	wg.Wait()
	return n
}

// failoverCopies are this node's live jobs that have a failover copy: those
// with automatic checkpoints and service replicas.
func (a *Agent) failoverCopies() []pidtable.Proc {
	procs, _ := a.own.Procs()
	var out []pidtable.Proc
	for _, p := range procs {
		if pidtable.HasFailoverCopy(p.CheckpointEvery, p.Service) && p.Node == a.cfg.Name && !p.State.Ended() {
			out = append(out, p)
		}
	}
	return out
}

// failoverJobsHere counts the jobs of failoverCopies running here.
func (a *Agent) failoverJobsHere() int {
	n := 0
	for _, p := range a.failoverCopies() {
		if a.sup.Job(p.GPID) != nil {
			n++
		}
	}
	return n
}

// leaseDeadlineLoop writes, every second, a lower bound of this node's lease
// expiry for the shims of fenced jobs (shim/fence.go): the monotonic time
// the agent asked etcd plus the remaining TTL etcd answered (in whole
// seconds, rounded down). When etcd does not answer, the bound is not moved
// and the shims fence at it, as this agent does when its session ends.
func (a *Agent) leaseDeadlineLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if s := a.session.Load(); s != nil {
			asked := shim.Monotonic()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			resp, err := a.etcd.TimeToLive(cctx, s.Lease())
			cancel()
			if err == nil && resp.TTL > 0 {
				if werr := shim.WriteLeaseDeadline(a.cfg.DataDir, asked+time.Duration(resp.TTL)*time.Second); werr != nil {
					a.log.Warn("write the lease deadline for the shims", "err", werr)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitAfterShimFence keeps a starting agent from taking a lease while the
// failover controller may still be restoring jobs that their shims fenced
// (the agent was dead or cut off): it waits until failover.Rejoin after the
// newest fence mark in the jobs directory.
func (a *Agent) waitAfterShimFence(ctx context.Context) {
	dirs, _ := os.ReadDir(a.jobsDir)
	var newest time.Time
	for _, d := range dirs {
		var m shim.FencedMark
		if shim.ReadJSON(filepath.Join(a.jobsDir, d.Name()), shim.FencedFile, &m) == nil && m.Time.After(newest) {
			newest = m.Time
		}
	}
	if wait := time.Until(newest.Add(failover.Rejoin)); wait > 0 {
		a.log.Warn("jobs were fenced by their shims while this agent was away; waiting before taking a lease", "wait", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// askTakeOver is the source's call of a handover (store.Handover): node to
// restores checkpoint c as the job this node ran at epoch.
func (a *Agent) askTakeOver(ctx context.Context, to string, c pidtable.Checkpoint, epoch uint64) (api.CheckpointRestoreResult, error) {
	var res api.CheckpointRestoreResult
	q := url.Values{"checkpoint": {c.Name}, "epoch": {strconv.FormatUint(epoch, 10)}}
	err := a.peerCall(ctx, to, fmt.Sprintf("/v1/handover/%d?%s", c.GPID, q.Encode()), &res)
	return res, err
}

// handleTakeOver is POST /v1/handover/{gpid}?checkpoint=NAME&epoch=N (a
// node): the node running the job has killed it and asks this one to
// restore it from checkpoint NAME (store.Handover). Only the node the record
// names may ask.
func (a *Agent) handleTakeOver(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	gpid, err := strconv.ParseUint(r.PathValue("gpid"), 10, 64)
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "gpid %q: want a number", r.PathValue("gpid")))
		return
	}
	epoch, err := strconv.ParseUint(r.URL.Query().Get("epoch"), 10, 64)
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "epoch %q: want a number", r.URL.Query().Get("epoch")))
		return
	}
	p, _, err := a.store.Get(ctx, gpid)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if who := access.CallerOf(r).Node; who == "" || who != p.Node {
		a.writeError(w, r, api.Errorf(api.CodeForbidden, "gpid %d runs on %s: only that node may hand it over (not %q)", gpid, p.Node, who))
		return
	}
	c, _, err := a.store.GetCheckpoint(ctx, r.URL.Query().Get("checkpoint"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if c.GPID != gpid || c.State != pidtable.Ready {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "checkpoint %s (gpid %d, %s) is not a ready checkpoint of gpid %d", c.Name, c.GPID, c.State, gpid))
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), store.Timeout)
	defer cancel()
	res, err := a.ckpts.TakeOver(rctx, c, p.Node, epoch)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

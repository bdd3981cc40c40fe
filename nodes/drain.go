package nodes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/drain"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Drain starts a drain of the named node, as admin who: checks, then the
// drain's record and the cordon in one transaction; the drain controller
// (package drain) does the rest. created is false when a drain was already
// under way (the response says Already).
func (c *Control) Drain(ctx context.Context, name, who string, req api.DrainRequest) (d api.DrainResponse, created bool, err error) {
	name, err = Name(name)
	if err != nil {
		return api.DrainResponse{}, false, err
	}
	switch {
	case req.Deadline < 0:
		return api.DrainResponse{}, false, api.Errorf(api.CodeBadRequest, "--deadline %s: must be positive (default %s)", req.Deadline, drain.DefaultDeadline)
	case req.Parallel < 0 || req.Parallel > 64:
		return api.DrainResponse{}, false, api.Errorf(api.CodeBadRequest, "--parallel %d: want 1 to 64 moves at once (default %d)", req.Parallel, drain.DefaultParallel)
	}
	d, err = c.StartDrain(ctx, name, who, req, "drain")
	if err != nil || d.Already {
		return d, false, err
	}
	msg := fmt.Sprintf("drain of %s started by %s: deadline %s, %d moves at once", name, who, d.Deadline.Format(time.RFC3339), d.Parallel)
	if d.Force {
		msg += ", jobs still there at the deadline are killed (--force)"
	}
	c.adminEvent(ctx, name, who, msg)
	return d, true, nil
}

// StartDrain writes a drain of node, started by by, and its cordon (reason:
// the cordon's), or returns the drain under way (Already). The request's
// zero deadline and parallel are drain's defaults.
func (c *Control) StartDrain(ctx context.Context, name, by string, req api.DrainRequest, reason string) (api.DrainResponse, error) {
	if req.Deadline == 0 {
		req.Deadline = drain.DefaultDeadline
	}
	if req.Parallel == 0 {
		req.Parallel = drain.DefaultParallel
	}
	st := c.cfg.Store
	snap, _, err := c.Known(ctx, name)
	if err != nil {
		return api.DrainResponse{}, err
	}
	cur, rev, err := st.GetDrain(ctx, name)
	switch {
	case err == nil && cur.State == pidtable.DrainActive:
		return api.DrainResponse{Drain: cur, Already: true}, nil
	case err != nil && !errors.Is(err, pidtable.ErrNotFound):
		return api.DrainResponse{}, err
	}
	if !snap.Ready(name) {
		return api.DrainResponse{}, api.Errorf(api.CodeNotReady, "node %s is NotReady (its agent is not running): its jobs cannot be moved; start its agent again, or remove the node for good with ssi node rm %s", name, name)
	}
	var targets int
	for _, n := range snap.Nodes {
		if n.Name != name && snap.Ready(n.Name) && !n.Cordoned {
			targets++
		}
	}
	if targets == 0 {
		return api.DrainResponse{}, api.Errorf(api.CodeConflict, "node %s is the only Ready node that is not cordoned: there is nowhere to move its jobs; add a node, or uncordon one (ssi node uncordon NAME)", name)
	}
	now := time.Now().UTC()
	d := pidtable.Drain{Node: name, By: by, Started: now, Deadline: now.Add(req.Deadline), Parallel: req.Parallel, Force: req.Force, State: pidtable.DrainActive}
	conf, crev, err := st.NodeConfig(ctx, name)
	if err != nil {
		return api.DrainResponse{}, err
	}
	if !conf.Cordoned {
		conf.Cordoned, conf.CordonedBy, conf.CordonedAt, conf.Reason = true, by, now, reason
	}
	conf.Updated = now
	if err := st.StartDrain(ctx, d, rev, conf, crev); err != nil {
		if errors.Is(err, pidtable.ErrChanged) {
			err = api.Errorf(api.CodeConflict, "node %s was changed by another request meanwhile (a drain, a cordon or a label); nothing was done; try again", name)
		}
		return api.DrainResponse{}, err
	}
	return api.DrainResponse{Drain: d}, nil
}

// DrainStatus is the drain of the named node.
func (c *Control) DrainStatus(ctx context.Context, name string) (api.DrainResponse, error) {
	name, err := Name(name)
	if err != nil {
		return api.DrainResponse{}, err
	}
	d, _, err := c.cfg.Store.GetDrain(ctx, name)
	if errors.Is(err, pidtable.ErrNotFound) {
		err = api.Errorf(api.CodeNotFound, "node %s has no drain (start one with ssi node drain %s)", name, name)
	}
	if err != nil {
		return api.DrainResponse{}, err
	}
	return api.DrainResponse{Drain: d}, nil
}

// CancelDrain cancels the drain of the named node, as admin who: the drain
// stops starting moves (those in flight finish); the node stays cordoned.
func (c *Control) CancelDrain(ctx context.Context, name, who string) (api.DrainResponse, error) {
	name, err := Name(name)
	if err != nil {
		return api.DrainResponse{}, err
	}
	st := c.cfg.Store
	for range 16 {
		d, rev, err := st.GetDrain(ctx, name)
		if errors.Is(err, pidtable.ErrNotFound) || (err == nil && d.State != pidtable.DrainActive) {
			return api.DrainResponse{}, api.Errorf(api.CodeConflict, "node %s is not being drained; nothing to cancel (ssi node uncordon %s lets it take jobs again)", name, name)
		}
		if err != nil {
			return api.DrainResponse{}, err
		}
		d.State, d.Finished = pidtable.DrainCancelled, time.Now().UTC()
		d.Message = fmt.Sprintf("cancelled by %s; moves in flight finish; %s stays cordoned (ssi node uncordon %s)", who, name, name)
		if _, err := st.PutDrain(ctx, d, rev, nil); errors.Is(err, pidtable.ErrChanged) {
			continue // the controller wrote it meanwhile
		} else if err != nil {
			return api.DrainResponse{}, err
		}
		c.adminEvent(ctx, name, who, "drain of "+name+" "+d.Message)
		return api.DrainResponse{Drain: d}, nil
	}
	return api.DrainResponse{}, api.Errorf(api.CodeConflict, "the drain of %s kept changing; try again", name)
}

// AdmitDrainMover admits a migrate request from the drain controller's
// leader for a job of a node being drained, whose entry the drain's record
// marks moving (pinned jobs included: an admin asked for the node to be
// emptied). It returns the record when admitted, else why not (and the
// caller's other rights are checked). It is access.Lookups' DrainMover.
func (c *Control) AdmitDrainMover(ctx context.Context, who access.Caller, gpid uint64) (pidtable.Proc, string, error) {
	st := c.cfg.Store
	leader, err := st.DrainLeader(ctx)
	if err != nil {
		return pidtable.Proc{}, "", err
	}
	if leader != who.Node {
		return pidtable.Proc{}, fmt.Sprintf("the drain controller's leader is %q", leader), nil
	}
	p, err := access.ReadJob(ctx, st, gpid)
	if err != nil {
		return pidtable.Proc{}, "", err
	}
	d, _, err := st.GetDrain(ctx, p.Node)
	if err != nil && !errors.Is(err, pidtable.ErrNotFound) {
		return pidtable.Proc{}, "", err
	}
	if err != nil || d.State != pidtable.DrainActive {
		return pidtable.Proc{}, fmt.Sprintf("gpid %d runs on %s, which is not being drained", gpid, p.Node), nil
	}
	if j, ok := d.Job(gpid); !ok || j.State != pidtable.JobMoving {
		return pidtable.Proc{}, fmt.Sprintf("the drain of %s has not decided to move gpid %d", p.Node, gpid), nil
	}
	return p, "", nil
}

// DrainKill checks that the drain controller's leader, node leader asking
// this node to kill job gpid (both as the route names them), may: the job
// is one this node's forced drain marked killed at its deadline. It returns
// the gpid to kill.
func (c *Control) DrainKill(ctx context.Context, name, gpid, leaderNode string) (uint64, error) {
	g, err := strconv.ParseUint(gpid, 10, 64)
	if err != nil || name != c.cfg.Name {
		return 0, api.Errorf(api.CodeBadRequest, "kill of %q on %q asked of node %s", gpid, name, c.cfg.Name)
	}
	st := c.cfg.Store
	leader, err := st.DrainLeader(ctx)
	if err != nil {
		return 0, err
	}
	d, _, err := st.GetDrain(ctx, name)
	if err != nil {
		return 0, err
	}
	j, ok := d.Job(g)
	switch {
	case leader != leaderNode:
		return 0, api.Errorf(api.CodeForbidden, "node %s is not the drain controller's leader (%q)", leaderNode, leader)
	case !d.Force || time.Now().Before(d.Deadline) || !ok || j.State != pidtable.JobKilled:
		return 0, api.Errorf(api.CodeForbidden, "the drain of %s does not kill gpid %d (not --force, before the deadline, or not marked)", name, g)
	}
	return g, nil
}

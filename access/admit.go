package access

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Admit decides, before any handler runs, whether r's caller has the role
// rt needs; what names the route's action in a refusal ("ssi token create is
// an admin action"). For the roles decided on a record (a job's, a
// checkpoint's) it returns r carrying that record (ProcOf, CheckpointOf), so
// the handler does not read it again.
func (c *Control) Admit(r *http.Request, role Role, what string) (*http.Request, error) {
	who := CallerOf(r)
	if role == RoleAnyone {
		return r, nil
	}
	if who.Anonymous() {
		if c.node == nil {
			return r, api.Errorf(api.CodeUnauthenticated, "request carries no caller identity (%s, %s headers)", api.HeaderUser, api.HeaderUID)
		}
		return r, api.Errorf(api.CodeUnauthenticated, "no client certificate: this cluster requires mutual TLS; ask an admin for a config ('ssi user add NAME --out FILE') and point SSI_CONFIG at it")
	}
	ctx := r.Context()
	if who.Job != 0 {
		if err := c.jobAlive(ctx, who); err != nil {
			return r, err
		}
	}
	switch role {
	case RoleAuthenticated:
		return r, nil
	case RoleUser:
		if who.User == "" {
			return r, api.Errorf(api.CodeForbidden, "a node certificate (%s) cannot %s; use a user's config", who.Node, what)
		}
		return r, nil
	case RoleAdmin:
		if !who.Admin || who.User == "" {
			return r, api.Errorf(api.CodeForbidden, "%s is an admin action; the %s is not an admin", what, who)
		}
		return r, nil
	case RoleAdminOrNode:
		if !who.IsNode() && (!who.Admin || who.User == "") {
			return r, api.Errorf(api.CodeForbidden, "only admins and nodes may %s; the %s is neither", what, who)
		}
		return r, nil
	case RoleNode:
		if !who.IsNode() {
			return r, api.Errorf(api.CodeForbidden, "%s %s: only agents (node certificates) may %s, not the %s", r.Method, r.URL.Path, what, who)
		}
		return r, nil
	case RoleJobOwner, RoleJobMover:
		gpid, err := PathGPID(r)
		if err != nil {
			return r, err
		}
		var p pidtable.Proc
		if role == RoleJobMover && who.IsNode() {
			p, err = c.admitMover(ctx, who, gpid)
		} else {
			p, err = AdmitJob(ctx, c.cfg.Store, who, gpid)
		}
		if err != nil {
			return r, err
		}
		return r.WithContext(context.WithValue(ctx, procKey{}, p)), nil
	case RoleCheckpointOwner:
		ck, rev, err := c.cfg.Lookups.Checkpoint(r)
		if err != nil {
			return r, err
		}
		if err := Authorize(who, "checkpoint "+ck.Name, ck.Proc.User); err != nil {
			return r, err
		}
		return r.WithContext(context.WithValue(ctx, checkpointKey{}, checkpointRecord{ck, rev})), nil
	case RoleServiceOwner:
		return c.cfg.Lookups.Service(r, who)
	case RoleMigrationOwner, RoleMigrationSource:
		if !who.IsNode() {
			return r, api.Errorf(api.CodeForbidden, "%s %s: only agents (node certificates) may %s, not the %s", r.Method, r.URL.Path, what, who)
		}
		gpid, err := PathGPID(r)
		if err != nil {
			return r, err
		}
		if role == RoleMigrationSource && c.cfg.Lookups.MigrationSource(gpid) == who.Node {
			return r, nil // the node that prepared it: no need to read the record
		}
		p, err := ReadJob(ctx, c.cfg.Store, gpid)
		if err != nil {
			return r, err
		}
		if p.Node != who.Node {
			step := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
			return r, api.Errorf(api.CodeForbidden, "%s of gpid %d from node %s, which does not own it (%s does)", step, gpid, who.Node, p.Node)
		}
		return r.WithContext(context.WithValue(ctx, procKey{}, p)), nil
	}
	return r, api.Errorf(api.CodeForbidden, "%s %s: the route has no role, so nobody may call it", r.Method, r.URL.Path)
}

// PathGPID is the {gpid} of r's route.
func PathGPID(r *http.Request) (uint64, error) {
	s := r.PathValue("gpid")
	gpid, err := strconv.ParseUint(s, 10, 64)
	if err != nil || gpid == 0 {
		return 0, api.Errorf(api.CodeBadRequest, "invalid gpid %q: want a positive integer", s)
	}
	return gpid, nil
}

// ProcFinder is what AdmitJob needs of the process table (*pidtable.Store).
type ProcFinder interface {
	Find(ctx context.Context, gpid uint64) (pidtable.Proc, int64, error)
}

// ReadJob reads gpid's record, live or archived (an ended job after the
// retention: its routes answer as for an ended job); an unknown gpid is a
// 404 that says so.
func ReadJob(ctx context.Context, st ProcFinder, gpid uint64) (pidtable.Proc, error) {
	p, _, err := st.Find(ctx, gpid)
	if errors.Is(err, pidtable.ErrNotFound) {
		return p, api.Errorf(api.CodeNotFound, "no such process: gpid %d (see ssi ps -A)", gpid)
	}
	if err != nil {
		return p, fmt.Errorf("read the record of gpid %d: %w", gpid, err)
	}
	return p, nil
}

// AdmitJob reads gpid's record and admits who to it. It fails closed: if the
// record cannot be read (etcd unreachable, a timeout) it returns that error,
// so that no transient error lets a user wait for, or read, another's job.
func AdmitJob(ctx context.Context, st ProcFinder, who Caller, gpid uint64) (pidtable.Proc, error) {
	p, err := ReadJob(ctx, st, gpid)
	if err != nil {
		return pidtable.Proc{}, err
	}
	if err := Authorize(who, fmt.Sprintf("gpid %d", gpid), p.User); err != nil {
		return pidtable.Proc{}, err
	}
	return p, nil
}

// admitMover admits a migrate request from a node certificate: only the
// balancer's elected leader may move jobs as itself, and only jobs that are
// not pinned; or the drain controller's leader, the jobs its drain decided
// to move (Lookups.DrainMover).
func (c *Control) admitMover(ctx context.Context, who Caller, gpid uint64) (pidtable.Proc, error) {
	// The drain controller's leader moves the jobs its drain decided to
	// move, pinned ones included.
	p, notDrain, err := c.cfg.Lookups.DrainMover(ctx, who, gpid)
	if err != nil || notDrain == "" {
		return p, err
	}
	_, _, _, leader, err := c.cfg.Store.BalancerState(ctx)
	if err != nil {
		return pidtable.Proc{}, err
	}
	if leader != who.Node {
		return pidtable.Proc{}, api.Errorf(api.CodeForbidden, "node %s may not move jobs: only the balancer's leader (%q) moves jobs as itself, and the drain controller's leader those its drain moves (%s)", who.Node, leader, notDrain)
	}
	p, err = ReadJob(ctx, c.cfg.Store, gpid)
	if err != nil {
		return pidtable.Proc{}, err
	}
	if p.Pinned {
		return pidtable.Proc{}, api.Errorf(api.CodeForbidden, "gpid %d is pinned (ssi run --pin): the balancer does not move it", gpid)
	}
	return p, nil
}

type procKey struct{}

// ProcOf returns the job's record Admit admitted the request on (routes
// with a job role, and a prepare).
func ProcOf(r *http.Request) (pidtable.Proc, bool) {
	p, ok := r.Context().Value(procKey{}).(pidtable.Proc)
	return p, ok
}

type checkpointKey struct{}

type checkpointRecord struct {
	c   pidtable.Checkpoint
	rev int64
}

// CheckpointOf returns the checkpoint's record (and its revision) Admit
// admitted the request on (routes with RoleCheckpointOwner).
func CheckpointOf(r *http.Request) (pidtable.Checkpoint, int64, error) {
	cr, ok := r.Context().Value(checkpointKey{}).(checkpointRecord)
	if !ok {
		return pidtable.Checkpoint{}, 0, fmt.Errorf("%s %s: no checkpoint record admitted (route without roleCheckpointOwner)", r.Method, r.URL.Path)
	}
	return cr.c, cr.rev, nil
}

// CheckPrepare checks a prepare request against the process table, not the
// sender's word: Admit has admitted the sender as the job's owner on the
// record p; the record must also name this very migration (id) and this
// node (node) as its target, and the epoch must be current, so a replayed
// or forged prepare is refused. The record's account is used, never one the
// request names.
func CheckPrepare(p pidtable.Proc, req *api.PrepareRequest, node string) error {
	gpid := p.GPID
	switch {
	case p.Migration == nil || p.Migration.ID != req.ID || p.Migration.Target != node:
		return api.Errorf(api.CodeConflict, "prepare of gpid %d: the record names no migration %s to %s (replayed or stale request)", gpid, req.ID, node)
	case p.Epoch != req.Proc.Epoch:
		return api.Errorf(api.CodeConflict, "prepare of gpid %d at epoch %d, but the record is at epoch %d (replayed or stale request)", gpid, req.Proc.Epoch, p.Epoch)
	case req.Spec.UID != p.UID || req.Spec.GID != p.GID:
		return api.Errorf(api.CodeForbidden, "prepare of gpid %d asks for uid %d gid %d, but the job runs as %d:%d", gpid, req.Spec.UID, req.Spec.GID, p.UID, p.GID)
	}
	req.Proc = p
	return nil
}

// jobAlive admits a job's credential only while its job runs: a job's
// certificate dies with the job, whatever its validity says.
func (c *Control) jobAlive(ctx context.Context, who Caller) error {
	return c.JobAlive(ctx, who.Job, who.User)
}

// JobAlive is nil when gpid runs as user's job, else why a credential of
// it is refused (the API's, the message broker's).
func (c *Control) JobAlive(ctx context.Context, gpid uint64, user string) error {
	p, _, err := c.cfg.Store.Get(ctx, gpid)
	switch {
	case errors.Is(err, pidtable.ErrNotFound):
		return api.Errorf(api.CodeUnauthenticated, "the credential of gpid %d: that job is gone; a job's credential works only while it runs", gpid)
	case err != nil:
		return err
	case p.User != user:
		return api.Errorf(api.CodeUnauthenticated, "the credential of gpid %d names user %s, but the job is %s's", gpid, user, p.User)
	case p.State.Ended():
		return api.Errorf(api.CodeUnauthenticated, "the credential of gpid %d: that job has %s; a job's credential works only while it runs", gpid, p.DescribeEnd())
	}
	return nil
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// caller is who sent a request, as established by authenticate.
type caller struct {
	// user is the ssi user the request acts for (the unix account of that
	// name on the node that runs a job); "" when a node acts for itself.
	user  string
	admin bool
	// node is the peer agent's node name when the request comes from an agent
	// (a node certificate), which acts for itself only (a migration step, a
	// checkpoint's images, the balancer's leader moving a job).
	node string
	// uid is what an --insecure client asserted; unused with TLS.
	uid int
}

func (c caller) String() string {
	switch {
	case c.anonymous():
		return "anonymous client"
	case c.user == "":
		return "node " + c.node
	case c.admin:
		return "admin " + c.user
	}
	return "user " + c.user
}

// anonymous reports whether the caller presented no identity: no client
// certificate (or, with --insecure, no identity headers).
func (c caller) anonymous() bool { return c.user == "" && c.node == "" }

// isNode reports whether the caller is an agent acting for itself.
func (c caller) isNode() bool { return c.node != "" && c.user == "" }

type callerKey struct{}

// callerOf returns the identity authenticate attached to r.
func callerOf(r *http.Request) caller {
	c, _ := r.Context().Value(callerKey{}).(caller)
	return c
}

// authenticate establishes the caller of every request; it decides nothing
// about what the caller may do (guard does, by the route table). With TLS the
// identity is the verified client certificate: a user's, or a node's, which
// acts for itself only (migration steps, checkpoint images); a request without
// one is anonymous. With --insecure the identity headers are believed, as the
// warning at start says.
func (a *Agent) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var who caller
		if a.node == nil {
			who = insecureCaller(r)
		} else if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			id, err := pki.IdentityOf(r.TLS.VerifiedChains[0][0])
			if err != nil {
				a.writeError(w, r, api.Errorf(api.CodeUnauthenticated, "client certificate: %v", err))
				return
			}
			if who, err = callerFromIdentity(id, r.Header); err != nil {
				a.writeError(w, r, err)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, who)))
	})
}

// callerFromIdentity derives the caller of a request from its certificate's
// identity. A node acts only for itself: an agent that cannot serve a user's
// request redirects the client to the agent that can, so no agent ever
// asserts a user (and a stolen node key does not make its holder any user).
func callerFromIdentity(id pki.Identity, h http.Header) (caller, error) {
	if !id.Node {
		for _, k := range []string{api.HeaderOnBehalfOf, api.HeaderAdmin, api.HeaderForwarded} {
			if h.Get(k) != "" {
				return caller{}, api.Errorf(api.CodeForbidden, "header %s is set by agents only: the %s may not assert it", k, id)
			}
		}
		return caller{user: id.Name, admin: id.Admin}, nil
	}
	for _, k := range []string{api.HeaderOnBehalfOf, api.HeaderAdmin} {
		if h.Get(k) != "" {
			return caller{}, api.Errorf(api.CodeForbidden, "header %s: a node certificate (%s) cannot act for a user", k, id.Name)
		}
	}
	return caller{node: id.Name}, nil
}

// insecureCaller is the --insecure identity: whatever the headers say; uid 0
// is an admin; a request an agent sent for itself has no user.
func insecureCaller(r *http.Request) caller {
	uid, err := strconv.Atoi(r.Header.Get(api.HeaderUID))
	if err != nil {
		uid = -1
	}
	u := r.Header.Get(api.HeaderUser)
	return caller{user: u, uid: uid, admin: u != "" && uid == 0, node: r.Header.Get(api.HeaderForwarded)}
}

// forwarded reports whether r was forwarded by another agent (only a node may
// say so; authenticate refuses the header from anyone else).
func forwarded(r *http.Request) bool { return r.Header.Get(api.HeaderForwarded) != "" }

// visible is the one visibility rule: a user sees (and acts on) only their
// own jobs, and what is about them (events, checkpoints, moves); an admin
// sees everything; a node, acting for itself, sees no user's job. Every
// listing filters by it and every per-job check (authorize) applies it.
func visible(who caller, owner string) bool {
	return who.admin || (who.user != "" && who.user == owner)
}

// authorize says whether who may see or act on subject ("gpid 12",
// "checkpoint nightly"), a job of owner or what it left: visible says, and a
// refusal says why.
func authorize(who caller, subject, owner string) error {
	switch {
	case visible(who, owner):
		return nil
	case who.user == "":
		return api.Errorf(api.CodeForbidden, "%s: a node certificate (%s) cannot act on jobs; use a user's config", subject, who.node)
	}
	return api.Errorf(api.CodeForbidden, "%s is not yours: %s may see and act on its own jobs only", subject, who)
}

// admit decides, before any handler runs, whether r's caller has the role
// rt needs. For the roles decided on a record (a job's, a checkpoint's) it
// returns r carrying that record (procOf, checkpointOf), so the handler does
// not read it again.
func (a *Agent) admit(r *http.Request, rt route) (*http.Request, error) {
	who := callerOf(r)
	if rt.role == roleAnyone {
		return r, nil
	}
	if who.anonymous() {
		if a.node == nil {
			return r, api.Errorf(api.CodeUnauthenticated, "request carries no caller identity (%s, %s headers)", api.HeaderUser, api.HeaderUID)
		}
		return r, api.Errorf(api.CodeUnauthenticated, "no client certificate: this cluster requires mutual TLS; ask an admin for a config ('ssi user add NAME --out FILE') and point SSI_CONFIG at it")
	}
	ctx := r.Context()
	switch rt.role {
	case roleAuthenticated:
		return r, nil
	case roleUser:
		if who.user == "" {
			return r, api.Errorf(api.CodeForbidden, "a node certificate (%s) cannot %s; use a user's config", who.node, rt.what)
		}
		return r, nil
	case roleAdmin:
		if !who.admin || who.user == "" {
			return r, api.Errorf(api.CodeForbidden, "%s is an admin action; the %s is not an admin", rt.what, who)
		}
		return r, nil
	case roleNode:
		if !who.isNode() {
			return r, api.Errorf(api.CodeForbidden, "%s %s: only agents (node certificates) may %s, not the %s", r.Method, r.URL.Path, rt.what, who)
		}
		return r, nil
	case roleJobOwner, roleJobMover:
		gpid, err := pathGPID(r)
		if err != nil {
			return r, err
		}
		var p pidtable.Proc
		if rt.role == roleJobMover && who.isNode() {
			p, err = a.admitMover(ctx, who, gpid)
		} else {
			p, err = admitJob(ctx, a.store, who, gpid)
		}
		if err != nil {
			return r, err
		}
		return r.WithContext(context.WithValue(ctx, procKey{}, p)), nil
	case roleCheckpointOwner:
		c, rev, err := a.readCheckpoint(r)
		if err != nil {
			return r, err
		}
		if err := authorize(who, "checkpoint "+c.Name, c.Proc.User); err != nil {
			return r, err
		}
		return r.WithContext(context.WithValue(ctx, checkpointKey{}, checkpointRecord{c, rev})), nil
	case roleServiceOwner:
		return a.admitService(r, who)
	case roleMigrationOwner, roleMigrationSource:
		if !who.isNode() {
			return r, api.Errorf(api.CodeForbidden, "%s %s: only agents (node certificates) may %s, not the %s", r.Method, r.URL.Path, rt.what, who)
		}
		gpid, err := pathGPID(r)
		if err != nil {
			return r, err
		}
		if rt.role == roleMigrationSource && a.migrationSourceHere(gpid) == who.node {
			return r, nil // the node that prepared it: no need to read the record
		}
		p, err := readJob(ctx, a.store, gpid)
		if err != nil {
			return r, err
		}
		if p.Node != who.node {
			step := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
			return r, api.Errorf(api.CodeForbidden, "%s of gpid %d from node %s, which does not own it (%s does)", step, gpid, who.node, p.Node)
		}
		return r.WithContext(context.WithValue(ctx, procKey{}, p)), nil
	}
	return r, api.Errorf(api.CodeForbidden, "%s %s: the route has no role, so nobody may call it", r.Method, r.URL.Path)
}

// procGetter is what admitJob needs of the process table (*pidtable.Store).
type procGetter interface {
	Get(ctx context.Context, gpid uint64) (pidtable.Proc, int64, error)
}

// readJob reads gpid's record; an unknown gpid is a 404 that says so.
func readJob(ctx context.Context, st procGetter, gpid uint64) (pidtable.Proc, error) {
	p, _, err := st.Get(ctx, gpid)
	if errors.Is(err, pidtable.ErrNotFound) {
		return p, api.Errorf(api.CodeNotFound, "no such process: gpid %d (see ssi ps -A)", gpid)
	}
	if err != nil {
		return p, fmt.Errorf("read the record of gpid %d: %w", gpid, err)
	}
	return p, nil
}

// admitJob reads gpid's record and admits who to it. It fails closed: if the
// record cannot be read (etcd unreachable, a timeout) it returns that error,
// so that no transient error lets a user wait for, or read, another's job.
func admitJob(ctx context.Context, st procGetter, who caller, gpid uint64) (pidtable.Proc, error) {
	p, err := readJob(ctx, st, gpid)
	if err != nil {
		return pidtable.Proc{}, err
	}
	if err := authorize(who, fmt.Sprintf("gpid %d", gpid), p.User); err != nil {
		return pidtable.Proc{}, err
	}
	return p, nil
}

// admitMover admits a migrate request from a node certificate: only the
// balancer's elected leader may move jobs as itself, and only jobs that are
// not pinned.
func (a *Agent) admitMover(ctx context.Context, who caller, gpid uint64) (pidtable.Proc, error) {
	_, _, _, leader, err := a.store.BalancerState(ctx)
	if err != nil {
		return pidtable.Proc{}, err
	}
	if leader != who.node {
		return pidtable.Proc{}, api.Errorf(api.CodeForbidden, "node %s may not move jobs: only the balancer's leader (%q) moves jobs as itself", who.node, leader)
	}
	p, err := readJob(ctx, a.store, gpid)
	if err != nil {
		return pidtable.Proc{}, err
	}
	if p.Pinned {
		return pidtable.Proc{}, api.Errorf(api.CodeForbidden, "gpid %d is pinned (ssi run --pin): the balancer does not move it", gpid)
	}
	return p, nil
}

// migrationSourceHere is the node that drives the migration of gpid to this
// node: the one that prepared it, or, once the job runs here, the one it
// arrived from (its resume may come after watchIncoming resumed it); "" if
// none.
func (a *Agent) migrationSourceHere(gpid uint64) string {
	if from, ok := a.mig.IncomingSource(gpid); ok {
		return from
	}
	if j := a.sup.Job(gpid); j != nil {
		return j.ArrivedFrom()
	}
	return ""
}

type procKey struct{}

// procOf returns the job's record guard admitted the request on (routes
// with a job role, and a prepare).
func procOf(r *http.Request) (pidtable.Proc, bool) {
	p, ok := r.Context().Value(procKey{}).(pidtable.Proc)
	return p, ok
}

// admittedJob is procOf for a handler: without a record (a route whose role
// reads none, a bug) it answers an internal error and returns ok=false.
func (a *Agent) admittedJob(w http.ResponseWriter, r *http.Request) (pidtable.Proc, bool) {
	p, ok := procOf(r)
	if !ok {
		a.writeError(w, r, fmt.Errorf("%s %s: no job record admitted (the route has no job role)", r.Method, r.URL.Path))
	}
	return p, ok
}

type checkpointKey struct{}

type checkpointRecord struct {
	c   pidtable.Checkpoint
	rev int64
}

// checkpointOf returns the checkpoint's record (and its revision) guard
// admitted the request on (routes with roleCheckpointOwner).
func checkpointOf(r *http.Request) (pidtable.Checkpoint, int64, error) {
	cr, ok := r.Context().Value(checkpointKey{}).(checkpointRecord)
	if !ok {
		return pidtable.Checkpoint{}, 0, fmt.Errorf("%s %s: no checkpoint record admitted (route without roleCheckpointOwner)", r.Method, r.URL.Path)
	}
	return cr.c, cr.rev, nil
}

// checkPrepare checks a prepare request against the process table, not the
// sender's word: guard has admitted the sender as the job's owner on the
// record p; the record must also name this very migration (id) and this node
// as its target, and the epoch must be current, so a replayed or forged
// prepare is refused. The record's account is used, never one the request
// names.
func (a *Agent) checkPrepare(p pidtable.Proc, req *api.PrepareRequest) error {
	gpid := p.GPID
	switch {
	case p.Migration == nil || p.Migration.ID != req.ID || p.Migration.Target != a.cfg.Name:
		return api.Errorf(api.CodeConflict, "prepare of gpid %d: the record names no migration %s to %s (replayed or stale request)", gpid, req.ID, a.cfg.Name)
	case p.Epoch != req.Proc.Epoch:
		return api.Errorf(api.CodeConflict, "prepare of gpid %d at epoch %d, but the record is at epoch %d (replayed or stale request)", gpid, req.Proc.Epoch, p.Epoch)
	case req.Spec.UID != p.UID || req.Spec.GID != p.GID:
		return api.Errorf(api.CodeForbidden, "prepare of gpid %d asks for uid %d gid %d, but the job runs as %d:%d", gpid, req.Spec.UID, req.Spec.GID, p.UID, p.GID)
	}
	req.Proc = p
	return nil
}

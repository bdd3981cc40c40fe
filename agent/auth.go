package agent

import (
	"context"
	"net/http"
	"strconv"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pki"
)

// caller is who sent a request, as established by authenticate.
type caller struct {
	// user is the ssi user the request acts for (the unix account of that
	// name on the node that runs a job); "" when a node acts for itself.
	user  string
	admin bool
	// node is the peer agent's node name when the request comes from an agent
	// (a node certificate): a forwarded request (user set) or a migration step.
	node string
	// uid is what an --insecure client asserted; unused with TLS.
	uid int
	// mover: a node, the balancer's elected leader, moving a job that is not
	// pinned (balancerMover); set only for a migrate request.
	mover bool
}

func (c caller) String() string {
	switch {
	case c.user == "":
		return "node " + c.node
	case c.admin:
		return "admin " + c.user
	}
	return "user " + c.user
}

type callerKey struct{}

// callerOf returns the identity authenticate attached to r.
func callerOf(r *http.Request) caller {
	c, _ := r.Context().Value(callerKey{}).(caller)
	return c
}

// unauthenticated lists the requests that need no client certificate: joining
// is authenticated by its token.
func unauthenticated(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/v1/join"
}

// authenticate establishes the caller of every request. With TLS the identity
// is the verified client certificate: a user's, or a node's, which acts for
// itself only (migration steps, checkpoint images). With --insecure the
// identity headers are believed, as the warning at start says.
func (a *Agent) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var who caller
		if a.node == nil {
			who = insecureCaller(r)
		} else if !unauthenticated(r) {
			if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
				a.writeError(w, r, api.Errorf(api.CodeUnauthenticated, "no client certificate: this cluster requires mutual TLS; ask an admin for a config ('ssi user add NAME --out FILE') and point SSI_CONFIG at it"))
				return
			}
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

// authorize says whether who may see or act on the job p: its own user and
// admins may; nodes acting for themselves may not (their endpoints are the
// migration steps).
func authorize(who caller, gpid uint64, owner string) error {
	if who.admin || who.mover || (who.user != "" && who.user == owner) {
		return nil
	}
	if who.user == "" {
		return api.Errorf(api.CodeForbidden, "gpid %d: a node certificate (%s) cannot act on jobs; use a user's config", gpid, who.node)
	}
	return api.Errorf(api.CodeForbidden, "gpid %d is not yours: %s may see and act on its own jobs only", gpid, who)
}

// requireNode answers 403 unless the caller is an agent acting for itself.
func (a *Agent) requireNode(w http.ResponseWriter, r *http.Request) (string, bool) {
	who := callerOf(r)
	if who.node == "" || who.user != "" {
		a.writeError(w, r, api.Errorf(api.CodeForbidden, "%s %s: only agents (node certificates) may call migration steps, not the %s", r.Method, r.URL.Path, who))
		return "", false
	}
	return who.node, true
}

// requireAdmin answers 403 unless the caller is an admin user.
func (a *Agent) requireAdmin(w http.ResponseWriter, r *http.Request, what string) bool {
	who := callerOf(r)
	if !who.admin || who.user == "" {
		a.writeError(w, r, api.Errorf(api.CodeForbidden, "%s is an admin action; the %s is not an admin", what, who))
		return false
	}
	return true
}

// checkPrepare checks a prepare request against the process table, not the
// sender's word: the sender must own the job, the record must name this very
// migration (id) and this node as its target, and the epoch must be current,
// so a replayed or forged prepare is refused. The record's account is used,
// never one the request names.
func (a *Agent) checkPrepare(ctx context.Context, from string, gpid uint64, req *api.PrepareRequest) error {
	p, _, err := a.store.Get(ctx, gpid)
	if err != nil {
		return err
	}
	switch {
	case p.Node != from:
		return api.Errorf(api.CodeForbidden, "prepare of gpid %d from node %s, which does not own it (%s does)", gpid, from, p.Node)
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

// acquireStream takes one of the image-stream slots of peer; release gives it back.
func (a *Agent) acquireStream(peer string) (release func(), err error) {
	a.streamsMu.Lock()
	defer a.streamsMu.Unlock()
	if a.streams[peer] >= maxStreamsPerPeer {
		return nil, api.Errorf(api.CodeConflict, "node %s already has %d image streams in flight to %s: at most %d; retry later", peer, a.streams[peer], a.cfg.Name, maxStreamsPerPeer)
	}
	a.streams[peer]++
	return func() {
		a.streamsMu.Lock()
		a.streams[peer]--
		if a.streams[peer] == 0 {
			delete(a.streams, peer)
		}
		a.streamsMu.Unlock()
	}, nil
}

package agent

// The agent's side of access control, which is package access's: the node's
// credentials made at start (setupPKI), the access.Control wired to what the
// agent owns (newAccess), and the certificate routes' handlers, thin adapters
// that decode, call and encode, and send to the node holding the CA key what
// only it can answer (forwardToCA).

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// ErrJoin is returned by Run when the node cannot join the cluster.
var ErrJoin = access.ErrJoin

func (a *Agent) pkiDir() string { return filepath.Join(a.cfg.DataDir, "pki") }

// scheme is the agent API's URL scheme.
func (a *Agent) scheme() string {
	if a.node == nil {
		return "http"
	}
	return "https"
}

// setupPKI loads this node's credentials, or makes them (access.Setup), and
// the etcd endpoints a joined node was given.
func (a *Agent) setupPKI(ctx context.Context) error {
	n, eps, err := access.Setup(ctx, access.SetupConfig{
		Name: a.cfg.Name, Dir: a.pkiDir(), Insecure: a.cfg.Insecure, Join: a.cfg.Join, Token: a.cfg.Token,
		Advertise: a.cfg.Advertise, AdminUser: a.cfg.AdminUser, InitCA: a.cfg.InitCA,
		ExternalEtcd: len(a.cfg.EtcdEndpoints) > 0, NodeCertLifetime: a.cfg.NodeCertLifetime, Log: a.log,
	})
	if err != nil || n == nil {
		return err
	}
	a.node = n
	if eps != nil {
		a.cfg.EtcdEndpoints = eps
	}
	a.peer.TLSClientConfig = n.ClientTLS()
	return nil
}

// newAccess is this node's access control, wired to the agent; the store
// must be set up.
func (a *Agent) newAccess() *access.Control {
	return access.New(access.Config{
		Name: a.cfg.Name, Dir: a.pkiDir(), Node: a.node, Store: a.store, Log: a.log,
		Events: a.events.add, Peer: a.peer, NodeCertLifetime: a.cfg.NodeCertLifetime,
		EtcdEndpoints: a.etcdEndpoints,
		Lookups: access.Lookups{
			DrainMover:      a.nodeCtl.AdmitDrainMover,
			Checkpoint:      a.readCheckpoint, // checkpoint.go
			Service:         a.admitService,   // services.go
			MigrationSource: a.migrationSourceHere,
		},
	})
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

// admittedJob is access.ProcOf for a handler: without a record (a route
// whose role reads none, a bug) it answers an internal error and returns
// ok=false.
func (a *Agent) admittedJob(w http.ResponseWriter, r *http.Request) (pidtable.Proc, bool) {
	p, ok := access.ProcOf(r)
	if !ok {
		a.writeError(w, r, fmt.Errorf("%s %s: no job record admitted (the route has no job role)", r.Method, r.URL.Path))
	}
	return p, ok
}

// forwardToCA sends r to the node holding the CA key when this one does not;
// it returns false when this node must answer itself.
func (a *Agent) forwardToCA(w http.ResponseWriter, r *http.Request) bool {
	if a.node == nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "node %s runs with --insecure: it has no CA, tokens or certificates", a.cfg.Name))
		return true
	}
	if a.access.HoldsCAKey() {
		return false
	}
	if access.Forwarded(r) {
		a.writeError(w, r, api.Errorf(api.CodeConflict, "node %s does not hold the cluster CA key", a.cfg.Name))
		return true
	}
	node, err := a.store.CANode(r.Context())
	if err != nil {
		a.writeError(w, r, fmt.Errorf("find the node holding the cluster CA: %w", err))
		return true
	}
	a.forward(w, r, node)
	return true
}

// handleCreateToken is POST /v1/tokens (admin): any node with credentials
// makes a join token.
func (a *Agent) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	if a.node == nil {
		a.forwardToCA(w, r)
		return
	}
	var req api.TokenRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	resp, err := a.access.CreateToken(r.Context(), access.CallerOf(r).User, req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleAddUser is POST /v1/users (admin), answered by the CA node.
func (a *Agent) handleAddUser(w http.ResponseWriter, r *http.Request) {
	if a.forwardToCA(w, r) {
		return
	}
	var req api.UserRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	resp, err := a.access.AddUser(r.Context(), access.CallerOf(r).User, req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleJoin is POST /v1/join: a new node, authenticated by a join token,
// gets a node certificate for its key from the CA node.
func (a *Agent) handleJoin(w http.ResponseWriter, r *http.Request) {
	if a.forwardToCA(w, r) {
		return
	}
	var req api.JoinRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	resp, err := a.access.Join(r.Context(), r.RemoteAddr, req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleRenew is POST /v1/renew: a node, authenticated by its current (valid,
// unrevoked) certificate, gets a new one from the CA node.
func (a *Agent) handleRenew(w http.ResponseWriter, r *http.Request) {
	who := access.CallerOf(r) // a node: the route's role (routes.go)
	if a.forwardToCA(w, r) {
		return
	}
	var req api.RenewRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	resp, err := a.access.Renew(who.Node, r.TLS.VerifiedChains[0][0], req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleRevoke is POST /v1/revocations (admin): revoke a user's current
// certificate by name, or any certificate by serial.
func (a *Agent) handleRevoke(w http.ResponseWriter, r *http.Request) {
	var req api.RevokeRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	resp, err := a.access.Revoke(r.Context(), access.CallerOf(r).User, req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleListUsers is GET /v1/users (admin): the users' current certificates.
func (a *Agent) handleListUsers(w http.ResponseWriter, r *http.Request) {
	out, err := a.access.Users(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// handleListTokens is GET /v1/tokens (admin): join tokens not yet expired.
func (a *Agent) handleListTokens(w http.ResponseWriter, r *http.Request) {
	out, err := a.access.Tokens(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// handleRevokeToken is DELETE /v1/tokens/{id} (admin).
func (a *Agent) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	if err := a.access.RevokeToken(r.Context(), access.CallerOf(r).User, r.PathValue("id")); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

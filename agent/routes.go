package agent

// The API's routes and who may call each: one table, read by routes() to
// build the mux and by guard() to admit a request before its handler runs.
// A handler never checks its caller's role; what it needs of the decision (the
// job's or the checkpoint's record the decision was made on) it finds in the
// request's context.

import (
	"io"
	"net/http"
)

// role is what a caller must be to call a route.
type role int

// Roles, from the most open to the narrowest. The zero role is none: a route
// without one is refused to everyone (and fails TestEveryRouteHasARole).
const (
	// roleAnyone: no certificate needed (health, and joining, which its
	// token authenticates).
	roleAnyone role = iota + 1
	// roleAuthenticated: any certificate of the cluster, a user's, an
	// admin's or a node's. What such a route lists is filtered by visible.
	roleAuthenticated
	// roleUser: a user's certificate (admins included), not a node's.
	roleUser
	// roleAdmin: an admin user.
	roleAdmin
	// roleJobOwner: the user who owns the job named by {gpid}, or an admin.
	roleJobOwner
	// roleJobMover: roleJobOwner, or the balancer's elected leader (a node
	// acting for itself) for a job that is not pinned.
	roleJobMover
	// roleCheckpointOwner: the user whose job the checkpoint named by
	// {name} saved, or an admin.
	roleCheckpointOwner
	// roleNode: a node certificate (another agent), acting for itself.
	roleNode
	// roleMigrationOwner: the node the record of {gpid} names as its owner,
	// i.e. the source of its migration (a prepare starts one).
	roleMigrationOwner
	// roleMigrationSource: the node that prepared the migration of {gpid}
	// here (for a resume that comes after this node resumed the job by
	// itself: the node the job arrived from); with none here, the node the
	// record names as owner.
	roleMigrationSource
	// roleServiceOwner: the user who owns the service named by {name}, or an
	// admin.
	roleServiceOwner
)

func (r role) String() string {
	switch r {
	case roleAnyone:
		return "anyone"
	case roleAuthenticated:
		return "any certificate (user, admin, node)"
	case roleUser:
		return "a user (or admin)"
	case roleAdmin:
		return "an admin"
	case roleJobOwner:
		return "the job's owner, or an admin"
	case roleJobMover:
		return "the job's owner, an admin, or the balancer's leader node (job not pinned)"
	case roleCheckpointOwner:
		return "the checkpoint's owner, or an admin"
	case roleNode:
		return "a node"
	case roleMigrationOwner:
		return "the node the job's record names as owner"
	case roleMigrationSource:
		return "the node that prepared the migration here"
	case roleServiceOwner:
		return "the service's owner, or an admin"
	}
	return "nobody"
}

// route is one entry of the API: a ServeMux pattern, who may call it, what
// refusals call the action, and its handler.
type route struct {
	pattern string
	role    role
	// what names the action in a refusal: "ssi token create is an admin
	// action", "a node certificate (node2) cannot run jobs".
	what    string
	handler http.HandlerFunc
}

// routeTable is every route the agent serves, with the role it needs.
func (a *Agent) routeTable() []route {
	return []route{
		{"GET /v1/healthz", roleAnyone, "check health", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }},
		// A new node, authenticated by its join token (pki.go).
		{"POST /v1/join", roleAnyone, "join", a.handleJoin},

		{"GET /v1/nodes", roleAuthenticated, "list nodes", a.handleNodes},
		{"GET /v1/procs", roleAuthenticated, "list jobs", a.handlePS},
		{"GET /v1/checkpoints", roleAuthenticated, "list checkpoints", a.handleCheckpoints},
		{"GET /v1/events", roleAuthenticated, "read events", a.handleEvents},
		{"GET /v1/balancer", roleAuthenticated, "read the balancer's status", a.handleBalance},

		{"POST /v1/procs", roleUser, "run jobs", a.handleRun},
		// Services (services.go); listings filtered by visible.
		{"GET /v1/services", roleAuthenticated, "list services", a.handleServices},
		{"PUT /v1/services/{name}", roleUser, "apply services", a.handleApply},
		{"GET /v1/services/{name}", roleServiceOwner, "see services", a.handleService},
		{"POST /v1/services/{name}/scale", roleServiceOwner, "scale services", a.handleScale},
		{"DELETE /v1/services/{name}", roleServiceOwner, "remove services", a.handleRemoveService},
		// Agent to agent: the service controller starts and stops replicas.
		{"POST /v1/services/{name}/replicas", roleNode, "start service replicas", a.handleStartReplica},
		{"POST /v1/services/{name}/replicas/{gpid}/stop", roleNode, "stop service replicas", a.handleStopReplica},

		{"GET /v1/procs/{gpid}", roleJobOwner, "see jobs", a.handleProc},
		{"POST /v1/procs/{gpid}/signal", roleJobOwner, "signal jobs", a.handleSignal},
		{"GET /v1/procs/{gpid}/logs", roleJobOwner, "read jobs' output", a.handleLogs},
		{"POST /v1/procs/{gpid}/stdin", roleJobOwner, "write to jobs' input", a.handleStdin},
		{"POST /v1/procs/{gpid}/resize", roleJobOwner, "resize jobs' terminals", a.handleResize},
		{"GET /v1/procs/{gpid}/wait", roleJobOwner, "wait for jobs", a.handleWait},
		{"POST /v1/procs/{gpid}/checkpoint", roleJobOwner, "checkpoint jobs", a.handleCheckpoint},
		{"POST /v1/procs/{gpid}/migrate", roleJobMover, "migrate jobs", a.handleMigrate},

		{"POST /v1/checkpoints/{name}/restore", roleCheckpointOwner, "restore checkpoints", a.handleCheckpointRestore},
		{"DELETE /v1/checkpoints/{name}", roleCheckpointOwner, "remove checkpoints", a.handleDeleteCheckpoint},

		{"PUT /v1/balancer", roleAdmin, "ssi balance on|off", a.handleSetBalance},
		{"POST /v1/tokens", roleAdmin, "ssi token create", a.handleCreateToken},
		{"POST /v1/users", roleAdmin, "ssi user add", a.handleAddUser},
		// Revocation and rotation (revoke.go).
		{"GET /v1/tokens", roleAdmin, "ssi token list", a.handleListTokens},
		{"DELETE /v1/tokens/{id}", roleAdmin, "ssi token revoke", a.handleRevokeToken},
		{"GET /v1/users", roleAdmin, "ssi user list", a.handleListUsers},
		{"POST /v1/revocations", roleAdmin, "ssi user revoke", a.handleRevoke},
		// A node renews its own certificate (renew.go).
		{"POST /v1/renew", roleNode, "renew node certificates", a.handleRenew},

		// Agent to agent: a checkpoint's images, for a restore on another node.
		{"GET /v1/checkpoints/{name}/images", roleNode, "fetch checkpoint images", a.handleCheckpointImages},
		// Agent to agent: the target side of a migration.
		{"POST /v1/migrations/{gpid}/prepare", roleMigrationOwner, "call migration steps", a.handlePrepare},
		{"PUT /v1/migrations/{gpid}/images", roleMigrationSource, "call migration steps", a.handleImages},
		{"POST /v1/migrations/{gpid}/check", roleMigrationSource, "call migration steps", a.handleCheck},
		{"POST /v1/migrations/{gpid}/restore", roleMigrationSource, "call migration steps", a.handleRestore},
		{"POST /v1/migrations/{gpid}/abort", roleMigrationSource, "call migration steps", a.handleAbort},
		{"POST /v1/migrations/{gpid}/resume", roleMigrationSource, "call migration steps", a.handleResume},
	}
}

// routes is the agent's HTTP handler: every route of the table behind its
// guard, behind authentication, behind the audit of refusals and revoked
// certificates (audit.go).
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range a.routeTable() {
		mux.Handle(rt.pattern, a.guard(rt))
	}
	return a.audit(a.authenticate(mux))
}

// guard admits a request to rt's handler only if its caller has rt's role.
func (a *Agent) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, err := a.admit(r, rt)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		rt.handler(w, r)
	})
}

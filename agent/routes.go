package agent

// The API's routes and who may call each: one table, read by routes() to
// build the mux and by guard() to admit a request (access.Control.Admit, by
// the route's access.Role) before its handler runs.
// A handler never checks its caller's role; what it needs of the decision (the
// job's or the checkpoint's record the decision was made on) it finds in the
// request's context.

import (
	"io"
	"net/http"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/dashboard"
)

// route is one entry of the API: a ServeMux pattern, who may call it, what
// refusals call the action, and its handler.
type route struct {
	pattern string
	role    access.Role
	// what names the action in a refusal: "ssi token create is an admin
	// action", "a node certificate (node2) cannot run jobs".
	what    string
	handler http.HandlerFunc
}

// routeTable is every route the agent serves, with the role it needs.
func (a *Agent) routeTable() []route {
	return []route{
		{"GET /v1/healthz", access.RoleAnyone, "check health", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }},
		// A new node, authenticated by its join token (access.go).
		{"POST /v1/join", access.RoleAnyone, "join", a.handleJoin},

		{"GET /v1/nodes", access.RoleAuthenticated, "list nodes", a.handleNodes},
		{"GET /v1/procs", access.RoleAuthenticated, "list jobs", a.handlePS},
		{"GET /v1/checkpoints", access.RoleAuthenticated, "list checkpoints", a.handleCheckpoints},
		{"GET /v1/events", access.RoleAuthenticated, "read events", a.handleEvents},
		{"GET /v1/balancer", access.RoleAuthenticated, "read the balancer's status", a.handleBalance},
		// Prometheus metrics (package metrics); also plain HTTP on --metrics-listen.
		{"GET /v1/metrics", access.RoleAdminOrNode, "read the agent's metrics", a.handleMetrics},

		{"POST /v1/procs", access.RoleUser, "run jobs", a.handleRun},
		// The web dashboard's login links (dashboard.go; package dashboard).
		{"POST /v1/dashboard/logins", access.RoleUser, "open the dashboard", a.handleDashboardLogin},
		// Services (services.go); listings filtered by visible.
		{"GET /v1/services", access.RoleAuthenticated, "list services", a.handleServices},
		{"PUT /v1/services/{name}", access.RoleUser, "apply services", a.handleApply},
		{"GET /v1/services/{name}", access.RoleServiceOwner, "see services", a.handleService},
		{"POST /v1/services/{name}/scale", access.RoleServiceOwner, "scale services", a.handleScale},
		{"DELETE /v1/services/{name}", access.RoleServiceOwner, "remove services", a.handleRemoveService},
		// Agent to agent: the service controller starts and stops replicas.
		{"POST /v1/services/{name}/replicas", access.RoleNode, "start service replicas", a.handleStartReplica},
		{"POST /v1/services/{name}/replicas/{gpid}/stop", access.RoleNode, "stop service replicas", a.handleStopReplica},
		// Timers (timers.go); ownership checked by timer.Requests.Admit.
		{"GET /v1/timers", access.RoleAuthenticated, "list timers", a.handleTimers},
		{"PUT /v1/timers/{name}", access.RoleUser, "apply timers", a.handleApplyTimer},
		{"GET /v1/timers/{name}", access.RoleUser, "see timers", a.handleTimer},
		{"POST /v1/timers/{name}/run", access.RoleUser, "run timers", a.handleRunTimer},
		{"DELETE /v1/timers/{name}", access.RoleUser, "remove timers", a.handleRemoveTimer},
		{"POST /v1/timers/{name}/ticks/{scheduled}/{gpid}/start", access.RoleNode, "start timer runs", a.handleStartTimerRun},
		{"POST /v1/timers/{name}/runs/{gpid}/stop", access.RoleNode, "stop timer runs", a.handleStopTimerRun},

		{"GET /v1/procs/{gpid}", access.RoleJobOwner, "see jobs", a.handleProc},
		{"POST /v1/procs/{gpid}/signal", access.RoleJobOwner, "signal jobs", a.handleSignal},
		{"GET /v1/procs/{gpid}/logs", access.RoleJobOwner, "read jobs' output", a.handleLogs},
		{"POST /v1/procs/{gpid}/stdin", access.RoleJobOwner, "write to jobs' input", a.handleStdin},
		{"POST /v1/procs/{gpid}/resize", access.RoleJobOwner, "resize jobs' terminals", a.handleResize},
		{"GET /v1/procs/{gpid}/wait", access.RoleJobOwner, "wait for jobs", a.handleWait},
		{"POST /v1/procs/{gpid}/checkpoint", access.RoleJobOwner, "checkpoint jobs", a.handleCheckpoint},
		{"POST /v1/procs/{gpid}/migrate", access.RoleJobMover, "migrate jobs", a.handleMigrate},

		{"POST /v1/checkpoints/{name}/restore", access.RoleCheckpointOwner, "restore checkpoints", a.handleCheckpointRestore},
		{"DELETE /v1/checkpoints/{name}", access.RoleCheckpointOwner, "remove checkpoints", a.handleDeleteCheckpoint},

		{"PUT /v1/balancer", access.RoleAdmin, "ssi balance on|off", a.handleSetBalance},
		{"POST /v1/tokens", access.RoleAdmin, "ssi token create", a.handleCreateToken},
		{"POST /v1/users", access.RoleAdmin, "ssi user add", a.handleAddUser},
		// Revocation and rotation (access.go; package access).
		{"GET /v1/tokens", access.RoleAdmin, "ssi token list", a.handleListTokens},
		{"DELETE /v1/tokens/{id}", access.RoleAdmin, "ssi token revoke", a.handleRevokeToken},
		{"GET /v1/users", access.RoleAdmin, "ssi user list", a.handleListUsers},
		{"POST /v1/revocations", access.RoleAdmin, "ssi user revoke", a.handleRevoke},
		// A node renews its own certificate (access.go; package access).
		{"POST /v1/renew", access.RoleNode, "renew node certificates", a.handleRenew},
		{"POST /v1/jobcreds", access.RoleNode, "issue jobs' credentials", a.handleJobCred},
		// Node lifecycle (nodes.go).
		{"POST /v1/nodes/{name}/cordon", access.RoleAdmin, "ssi node cordon", a.handleCordon},
		{"POST /v1/nodes/{name}/uncordon", access.RoleAdmin, "ssi node uncordon", a.handleUncordon},
		{"PUT /v1/nodes/{name}/labels", access.RoleAdmin, "ssi node label", a.handleLabel},
		{"POST /v1/nodes/{name}/drain", access.RoleAdmin, "ssi node drain", a.handleDrain},
		{"GET /v1/nodes/{name}/drain", access.RoleAdmin, "ssi node drain --wait", a.handleDrainStatus},
		{"DELETE /v1/nodes/{name}/drain", access.RoleAdmin, "ssi node drain --cancel", a.handleCancelDrain},
		{"DELETE /v1/nodes/{name}", access.RoleAdmin, "ssi node rm", a.handleRemoveNode},
		// Agent to agent: the drain controller's leader has a forced drain's
		// node kill a job at the deadline.
		{"POST /v1/drains/{name}/kill/{gpid}", access.RoleNode, "kill drained jobs", a.handleDrainKill},

		// Agent to agent: a checkpoint's images, for a restore on another node.
		{"GET /v1/checkpoints/{name}/images", access.RoleNode, "fetch checkpoint images", a.handleCheckpointImages},
		{"POST /v1/checkpoints/{name}/copy", access.RoleNode, "copy checkpoints", a.handleCopyCheckpoint},
		{"POST /v1/failover/{gpid}", access.RoleNode, "restore jobs of dead nodes", a.handleFailover},
		{"POST /v1/handover/{gpid}", access.RoleNode, "restore jobs handed over by their node", a.handleTakeOver},
		// Agent to agent: the target side of a migration.
		{"POST /v1/migrations/{gpid}/prepare", access.RoleMigrationOwner, "call migration steps", a.handlePrepare},
		{"PUT /v1/migrations/{gpid}/images", access.RoleMigrationSource, "call migration steps", a.handleImages},
		{"POST /v1/migrations/{gpid}/check", access.RoleMigrationSource, "call migration steps", a.handleCheck},
		{"POST /v1/migrations/{gpid}/restore", access.RoleMigrationSource, "call migration steps", a.handleRestore},
		{"POST /v1/migrations/{gpid}/abort", access.RoleMigrationSource, "call migration steps", a.handleAbort},
		{"POST /v1/migrations/{gpid}/resume", access.RoleMigrationSource, "call migration steps", a.handleResume},
	}
}

// routes is the agent's HTTP handler: every route of the table behind its
// guard, behind authentication, behind the audit of refusals and revoked
// certificates (package access); and the web dashboard under /ui/, which
// authenticates browsers by a session cookie and calls a few of the same
// guarded routes as the session's user (package dashboard).
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range a.routeTable() {
		mux.Handle(rt.pattern, a.guard(rt))
	}
	a.dash = a.newDashboard()
	root := http.NewServeMux()
	root.Handle(dashboard.Prefix, a.dash.Handler(mux))
	root.Handle("/", a.access.Audit(access.Authenticate(mux, a.node != nil)))
	return root
}

// guard admits a request to rt's handler only if its caller has rt's role.
func (a *Agent) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, err := a.access.Admit(r, rt.role, rt.what)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		rt.handler(w, r)
	})
}

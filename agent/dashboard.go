package agent

// The web dashboard (package dashboard): served under /ui/ beside the API,
// and the API route that makes its login links.

import (
	"net/http"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/dashboard"
)

// newDashboard is this agent's dashboard: its sessions in the cluster's
// etcd, its redirects relayed over the peer transport.
func (a *Agent) newDashboard() *dashboard.Server {
	revoked := func(string) error { return nil }
	if a.access != nil {
		revoked = a.access.RevokedSerial
	}
	return dashboard.New(dashboard.Config{
		Node: a.cfg.Name, Etcd: a.etcd, Log: a.log, TLS: a.node != nil,
		Relay: a.peer, Revoked: revoked,
	})
}

// handleDashboardLogin is POST /v1/dashboard/logins: a one-time link to
// this agent's dashboard for the caller, a user (ssi dashboard).
func (a *Agent) handleDashboardLogin(w http.ResponseWriter, r *http.Request) {
	tok, exp, err := a.dash.NewLogin(r.Context(), access.CallerOf(r), access.CertSerial(r))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	u := a.scheme() + "://" + r.Host + dashboard.Prefix + "login?t=" + tok
	writeJSON(w, http.StatusCreated, api.DashboardLogin{URL: u, Expires: exp, SessionTTL: dashboard.SessionTTL})
}

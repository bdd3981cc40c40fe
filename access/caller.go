package access

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pki"
)

// Caller is who sent a request, as established by Authenticate.
type Caller struct {
	// User is the ssi user the request acts for (the unix account of that
	// name on the node that runs a job); "" when a node acts for itself.
	User  string
	Admin bool
	// Node is the peer agent's node name when the request comes from an
	// agent (a node certificate), which acts for itself only (a migration
	// step, a checkpoint's images, the balancer's leader moving a job).
	Node string
	// UID is what an --insecure client asserted; unused with TLS.
	UID int
	// Job is the gpid whose credential the request came with (a job's
	// certificate, pki.IssueJob): User's rights while that job runs.
	Job uint64
}

func (c Caller) String() string {
	switch {
	case c.Anonymous():
		return "anonymous client"
	case c.User == "":
		return "node " + c.Node
	case c.Admin:
		return "admin " + c.User
	case c.Job != 0:
		return "user " + c.User + " (job " + strconv.FormatUint(c.Job, 10) + ")"
	}
	return "user " + c.User
}

// Anonymous reports whether the caller presented no identity: no client
// certificate (or, with --insecure, no identity headers).
func (c Caller) Anonymous() bool { return c.User == "" && c.Node == "" }

// IsNode reports whether the caller is an agent acting for itself.
func (c Caller) IsNode() bool { return c.Node != "" && c.User == "" }

type callerKey struct{}

// CallerOf returns the identity Authenticate attached to r.
func CallerOf(r *http.Request) Caller {
	c, _ := r.Context().Value(callerKey{}).(Caller)
	return c
}

// Authenticate establishes the caller of every request; it decides nothing
// about what the caller may do (Admit does, by the route's role). With TLS
// (mTLS: the node has credentials) the identity is the verified client
// certificate: a user's, or a node's, which acts for itself only (migration
// steps, checkpoint images); a request without one is anonymous. With
// --insecure (!mTLS) the identity headers are believed, as the warning at
// start says.
func Authenticate(next http.Handler, mTLS bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var who Caller
		if !mTLS {
			who = insecureCaller(r)
		} else if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			id, err := pki.IdentityOf(r.TLS.VerifiedChains[0][0])
			if err != nil {
				writeAPIError(w, api.Errorf(api.CodeUnauthenticated, "client certificate: %v", err))
				return
			}
			if who, err = callerFromIdentity(id, r.Header); err != nil {
				writeAPIError(w, err)
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
func callerFromIdentity(id pki.Identity, h http.Header) (Caller, error) {
	if !id.Node {
		for _, k := range []string{api.HeaderOnBehalfOf, api.HeaderAdmin, api.HeaderForwarded} {
			if h.Get(k) != "" {
				return Caller{}, api.Errorf(api.CodeForbidden, "header %s is set by agents only: the %s may not assert it", k, id)
			}
		}
		return Caller{User: id.Name, Admin: id.Admin, Job: id.Job}, nil
	}
	for _, k := range []string{api.HeaderOnBehalfOf, api.HeaderAdmin} {
		if h.Get(k) != "" {
			return Caller{}, api.Errorf(api.CodeForbidden, "header %s: a node certificate (%s) cannot act for a user", k, id.Name)
		}
	}
	return Caller{Node: id.Name}, nil
}

// insecureCaller is the --insecure identity: whatever the headers say; uid 0
// is an admin; a request an agent sent for itself has no user.
func insecureCaller(r *http.Request) Caller {
	uid, err := strconv.Atoi(r.Header.Get(api.HeaderUID))
	if err != nil {
		uid = -1
	}
	u := r.Header.Get(api.HeaderUser)
	return Caller{User: u, UID: uid, Admin: u != "" && uid == 0, Node: r.Header.Get(api.HeaderForwarded)}
}

// Forwarded reports whether r was forwarded by another agent (only a node
// may say so; Authenticate refuses the header from anyone else).
func Forwarded(r *http.Request) bool { return r.Header.Get(api.HeaderForwarded) != "" }

// Visible is the one visibility rule: a user sees (and acts on) only their
// own jobs, and what is about them (events, checkpoints, moves); an admin
// sees everything; a node, acting for itself, sees no user's job. Every
// listing filters by it and every per-job check (Authorize) applies it.
func Visible(who Caller, owner string) bool {
	return who.Admin || (who.User != "" && who.User == owner)
}

// Authorize says whether who may see or act on subject ("gpid 12",
// "checkpoint nightly"), a job of owner or what it left: Visible says, and a
// refusal says why.
func Authorize(who Caller, subject, owner string) error {
	switch {
	case Visible(who, owner):
		return nil
	case who.User == "":
		return api.Errorf(api.CodeForbidden, "%s: a node certificate (%s) cannot act on jobs; use a user's config", subject, who.Node)
	}
	return api.Errorf(api.CodeForbidden, "%s is not yours: %s may see and act on its own jobs only", subject, who)
}

// writeAPIError answers e as the agent answers every *api.Error: its code's
// status and the error as JSON.
func writeAPIError(w http.ResponseWriter, err error) {
	e := api.FromError(err)
	writeJSON(w, e.Code.Status(), e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

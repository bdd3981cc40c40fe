package hollow

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/joblog"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// The hollow nodes' subset of the agent API, one server for every node of
// the cluster (they register the same address): what `ssi run --node
// HOLLOW` and the requests about its job reach once a real agent has
// redirected the client here. A run is placed by the real agent, which
// redirects with ?node=NAME; a request about a job finds its node by gpid.
//
//	POST /v1/procs?node=NAME          start a fake job on NAME (a user's certificate)
//	GET  /v1/procs/{gpid}/wait        its exit status, once it ended
//	GET  /v1/procs/{gpid}/logs        its output (none) and, with follow=1, its Exit record
//	POST /v1/procs/{gpid}/signal      end it now, as killed by the signal
//	POST /v1/procs/{gpid}/migrate     move it to another hollow node (migrate.go)
//
// Everything else (a checkpoint, stdin, a real job's migration...) is refused with a
// message that says the node is hollow. A fake job's command decides its
// life: `sleep N` runs N seconds, `false` exits 1 at once, `exit N` exits N,
// anything else exits 0 at once.

// APIHandler is the API subset above. The server must verify client
// certificates against the cluster CA (pki.ServerTLS); a request without one
// is refused.
func (c *Cluster) APIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("POST /v1/procs", c.handleRun)
	mux.HandleFunc("GET /v1/procs/{gpid}/wait", c.handleWait)
	mux.HandleFunc("GET /v1/procs/{gpid}/logs", c.handleLogs)
	mux.HandleFunc("POST /v1/procs/{gpid}/signal", c.handleSignal)
	mux.HandleFunc("POST /v1/procs/{gpid}/migrate", c.handleMigrate)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, api.Errorf(api.CodeBadRequest, "%s %s: this is a hollow node (ssi agent --hollow): it runs fake jobs and serves only run, wait, logs, signal and moves of its fake jobs", r.Method, r.URL.Path))
	})
	return mux
}

func apiError(w http.ResponseWriter, e *api.Error) { writeJSON(w, e.Code.Status(), e) }

// decodeBody reads a request's JSON body (64 KiB at most, no unknown
// fields) into v.
func decodeBody(w http.ResponseWriter, r *http.Request, what string, v any) *api.Error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(api.CodeBadRequest, "malformed %s request: %v", what, err)
	}
	return nil
}

// caller is who the request's verified certificate speaks for.
func caller(r *http.Request) (pki.Identity, *api.Error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return pki.Identity{}, api.Errorf(api.CodeUnauthenticated, "a hollow node needs a client certificate of the cluster")
	}
	id, err := pki.IdentityOf(r.TLS.PeerCertificates[0])
	if err != nil {
		return pki.Identity{}, api.Errorf(api.CodeUnauthenticated, "%v", err)
	}
	return id, nil
}

func (c *Cluster) handleRun(w http.ResponseWriter, r *http.Request) {
	id, e := caller(r)
	if e != nil {
		apiError(w, e)
		return
	}
	if id.Node {
		apiError(w, api.Errorf(api.CodeForbidden, "a node certificate (%s) cannot run jobs", id.Name))
		return
	}
	name := r.URL.Query().Get("node")
	n := c.names[name]
	if n == nil {
		apiError(w, api.Errorf(api.CodeNotFound, "no hollow node %q here: a run reaches a hollow node placed by a real agent (ssi run --node NAME)", name))
		return
	}
	var req api.RunRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || len(req.Argv) == 0 {
		apiError(w, api.Errorf(api.CodeBadRequest, "malformed run request (one JSON object, argv not empty): %v", err))
		return
	}
	user := id.Name
	if req.User != "" && req.User != id.Name {
		if !id.Admin {
			apiError(w, api.Errorf(api.CodeForbidden, "%s cannot run jobs as %s", id, req.User))
			return
		}
		user = req.User
	}
	life, code := fakeLife(req.Argv)
	p, err := n.startFake(r.Context(), fakeJob{argv: req.Argv, user: user, life: life, code: code, now: true, cpus: req.CPUs, memory: req.Memory, constraints: req.Constraints, pin: req.Pin})
	if err != nil {
		if errors.Is(err, pidtable.ErrNodeNotReady) {
			apiError(w, api.Errorf(api.CodeNotReady, "hollow node %s lost its etcd lease; retry in a few seconds", name))
			return
		}
		apiError(w, api.Errorf(api.CodeInternal, "hollow node %s: %v", name, err))
		return
	}
	writeJSON(w, http.StatusCreated, api.RunResponse{GPID: p, Node: name, Workdir: "/"})
}

// fakeLife is what a fake job of argv does: how long it runs, and its exit code.
func fakeLife(argv []string) (time.Duration, int) {
	switch {
	case argv[0] == "sleep" && len(argv) == 2:
		if s, err := strconv.ParseFloat(strings.TrimSuffix(argv[1], "s"), 64); err == nil && s >= 0 {
			return time.Duration(s * float64(time.Second)), 0
		}
	case argv[0] == "false":
		return 0, 1
	case argv[0] == "exit" && len(argv) == 2:
		if c, err := strconv.Atoi(argv[1]); err == nil && c >= 0 && c < 256 {
			return 0, c
		}
	}
	return 0, 0
}

// jobOf finds the request's job among the cluster's nodes and checks that
// the caller may see it: its user, or an admin.
func (c *Cluster) jobOf(r *http.Request) (*Node, uint64, *api.Error) {
	id, e := caller(r)
	if e != nil {
		return nil, 0, e
	}
	gpid, n, e := c.find(r)
	if e != nil {
		return nil, 0, e
	}
	if user, _ := n.jobUser(gpid); id.Node || (!id.Admin && user != id.Name) {
		return nil, 0, api.Errorf(api.CodeForbidden, "%s may not see gpid %d", id, gpid)
	}
	return n, gpid, nil
}

// find returns the request's {gpid} and the hollow node that runs it.
func (c *Cluster) find(r *http.Request) (uint64, *Node, *api.Error) {
	gpid, err := strconv.ParseUint(r.PathValue("gpid"), 10, 64)
	if err != nil || gpid == 0 {
		return 0, nil, api.Errorf(api.CodeBadRequest, "invalid gpid %q: want a positive integer", r.PathValue("gpid"))
	}
	for _, n := range c.nodes {
		if _, ok := n.jobUser(gpid); ok {
			return gpid, n, nil
		}
	}
	return 0, nil, api.Errorf(api.CodeNotFound, "gpid %d is not a job of a hollow node here", gpid)
}

func (c *Cluster) handleWait(w http.ResponseWriter, r *http.Request) {
	_, gpid, e := c.jobOf(r)
	if e != nil {
		apiError(w, e)
		return
	}
	p, err := c.store.WaitEnded(r.Context(), gpid)
	if err != nil {
		apiError(w, api.Errorf(api.CodeInternal, "wait for gpid %d: %v", gpid, err))
		return
	}
	writeJSON(w, http.StatusOK, api.ExitStatusOf(p))
}

// handleLogs streams a fake job's output: none; with follow=1, the Exit
// record once it ended, as the agent's stream ends.
func (c *Cluster) handleLogs(w http.ResponseWriter, r *http.Request) {
	_, gpid, e := c.jobOf(r)
	if e != nil {
		apiError(w, e)
		return
	}
	w.Header().Set("Content-Type", "application/x-ssi-joblog")
	if r.URL.Query().Get("follow") == "" {
		w.WriteHeader(http.StatusOK)
		return
	}
	p, err := c.store.WaitEnded(r.Context(), gpid)
	if err != nil {
		apiError(w, api.Errorf(api.CodeInternal, "wait for gpid %d: %v", gpid, err))
		return
	}
	b, _ := json.Marshal(api.ExitStatusOf(p))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(joblog.Append(nil, joblog.Record{Kind: joblog.Exit, Data: b}))
}

func (c *Cluster) handleSignal(w http.ResponseWriter, r *http.Request) {
	var req api.SignalRequest
	n, gpid, e := c.jobOf(r)
	if e == nil {
		e = decodeBody(w, r, "signal", &req)
	}
	if e != nil {
		apiError(w, e)
		return
	}
	sig := unix.SignalNum(strings.ToUpper(req.Signal))
	if sig == 0 {
		sig = unix.SignalNum("SIG" + strings.ToUpper(req.Signal))
	}
	if sig == 0 {
		apiError(w, api.Errorf(api.CodeBadRequest, "unknown signal %q", req.Signal))
		return
	}
	if !n.kill(r.Context(), gpid, 128+int(sig)) {
		apiError(w, api.Errorf(api.CodeConflict, "gpid %d has ended", gpid))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

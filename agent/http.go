package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/placement"
)

// maxRequestBody bounds JSON request bodies (argv and env included).
const maxRequestBody = 1 << 20

func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /v1/procs", a.handleRun)
	mux.HandleFunc("GET /v1/procs", a.handlePS)
	mux.HandleFunc("GET /v1/procs/{gpid}", a.handleProc)
	mux.HandleFunc("POST /v1/procs/{gpid}/signal", a.handleSignal)
	mux.HandleFunc("GET /v1/procs/{gpid}/logs", a.handleLogs)
	mux.HandleFunc("GET /v1/procs/{gpid}/wait", a.handleWait)
	mux.HandleFunc("GET /v1/nodes", a.handleNodes)
	mux.HandleFunc("POST /v1/procs/{gpid}/migrate", a.handleMigrate)
	mux.HandleFunc("GET /v1/balancer", a.handleBalance)
	mux.HandleFunc("PUT /v1/balancer", a.handleSetBalance)
	mux.HandleFunc("GET /v1/events", a.handleEvents)
	// Agent to agent: the target side of a migration.
	mux.HandleFunc("POST /v1/migrations/{gpid}/prepare", a.handlePrepare)
	mux.HandleFunc("PUT /v1/migrations/{gpid}/images", a.handleImages)
	mux.HandleFunc("POST /v1/migrations/{gpid}/restore", a.handleRestore)
	mux.HandleFunc("POST /v1/migrations/{gpid}/abort", a.handleAbort)
	mux.HandleFunc("POST /v1/migrations/{gpid}/resume", a.handleResume)
	return mux
}

// writeError sends err as an api.Error; errors that are not *api.Error are
// internal and also logged.
func (a *Agent) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *api.Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, pidtable.ErrNotFound):
		e = api.Errorf(api.CodeNotFound, "%v", err)
	case errors.Is(err, context.Canceled):
		return // the client went away
	default:
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = api.Errorf(api.CodeInternal, "node %s: %v", a.cfg.Name, err)
	}
	writeJSON(w, e.Code.Status(), e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func decode(r *http.Request, v any) error {
	body := io.LimitReader(r.Body, maxRequestBody+1)
	err := json.NewDecoder(body).Decode(v)
	// Read to the end: a handler that streams its answer (migrate) must not
	// leave the request half-read on a connection a proxy reuses.
	_, _ = io.Copy(io.Discard, body)
	if err != nil {
		return api.Errorf(api.CodeBadRequest, "malformed request body: %v", err)
	}
	return nil
}

func callerOf(r *http.Request) caller {
	uid, err := strconv.Atoi(r.Header.Get(api.HeaderUID))
	if err != nil {
		uid = -1
	}
	return caller{user: r.Header.Get(api.HeaderUser), uid: uid}
}

func pathGPID(r *http.Request) (uint64, error) {
	s := r.PathValue("gpid")
	gpid, err := strconv.ParseUint(s, 10, 64)
	if err != nil || gpid == 0 {
		return 0, api.Errorf(api.CodeBadRequest, "invalid gpid %q: want a positive integer", s)
	}
	return gpid, nil
}

func (a *Agent) handleRun(w http.ResponseWriter, r *http.Request) {
	var req api.RunRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := validateRun(req); err != nil {
		a.writeError(w, r, err)
		return
	}
	who := callerOf(r)
	if who.user == "" || who.uid < 0 {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "request carries no caller identity (%s, %s headers)", api.HeaderUser, api.HeaderUID))
		return
	}
	target := req.Node
	if r.Header.Get(api.HeaderForwarded) == "" || target == "" {
		var err error
		if target, err = a.place(r.Context(), req); err != nil {
			a.writeError(w, r, err)
			return
		}
	}
	if target != a.cfg.Name {
		if r.Header.Get(api.HeaderForwarded) != "" {
			a.writeError(w, r, api.Errorf(api.CodeConflict, "job forwarded to %s arrived at %s", target, a.cfg.Name))
			return
		}
		req.Node = target
		a.forwardRun(w, r, req)
		return
	}
	resp, err := a.spawn(r.Context(), req, who)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

// place runs the placement policy over a fresh snapshot.
func (a *Agent) place(ctx context.Context, req api.RunRequest) (string, error) {
	snap, err := a.store.NodesSnapshot(ctx)
	if err != nil {
		return "", err
	}
	nodes := make([]placement.Node, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		pn := placement.Node{Name: n.Name, CPUs: n.CPUs, Memory: n.Memory, Labels: n.Labels}
		if st, ok := snap.Status[n.Name]; ok {
			pn.Ready, pn.Load, pn.Jobs, pn.ReservedCPUs, pn.ReservedMemory = true, st.Load, st.Jobs, st.ReservedCPUs, st.ReservedMemory
		}
		nodes = append(nodes, pn)
	}
	policy := placement.Policy(req.Placement)
	if policy == "" {
		policy = a.cfg.Placement
	}
	a.rndMu.Lock()
	name, err := placement.Place(nodes, placement.Request{Node: req.Node, CPUs: req.CPUs, Memory: req.Memory, Constraints: req.Constraints, Policy: policy}, a.rnd)
	a.rndMu.Unlock()
	switch {
	case err == nil:
		return name, nil
	case errors.Is(err, placement.ErrUnknownNode):
		return "", api.Errorf(api.CodeNotFound, "%v", err)
	case errors.Is(err, placement.ErrNotReady):
		return "", api.Errorf(api.CodeNotReady, "%v", err)
	case errors.Is(err, placement.ErrUnknownPolicy):
		return "", api.Errorf(api.CodeBadRequest, "--placement: %v", err)
	default:
		return "", api.Errorf(api.CodeConflict, "%v", err)
	}
}

// forwardRun sends a placed run request to the target node's agent.
func (a *Agent) forwardRun(w http.ResponseWriter, r *http.Request, req api.RunRequest) {
	body, err := json.Marshal(req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	r.ContentLength = int64(len(body))
	a.forward(w, r, req.Node)
}

// forward proxies r to node's agent, streaming the response.
func (a *Agent) forward(w http.ResponseWriter, r *http.Request, node string) {
	snap, err := a.store.NodesSnapshot(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	n, ok := snap.Node(node)
	if !ok {
		a.writeError(w, r, api.Errorf(api.CodeNotFound, "unknown node %q", node))
		return
	}
	if !snap.Ready(node) {
		a.writeError(w, r, api.Errorf(api.CodeNotReady, "node %s is NotReady (its agent is not running); try again when it is back", node))
		return
	}
	target := &url.URL{Scheme: "http", Host: n.Addr}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(api.HeaderForwarded, a.cfg.Name)
		},
		Transport:     a.fwd,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			a.writeError(w, r, api.Errorf(api.CodeNotReady, "node %s at %s did not answer: %v", node, n.Addr, err))
		},
	}
	proxy.ServeHTTP(w, r)
}

// owned returns gpid's record when this node owns it; otherwise it forwards the
// request to the owner (or answers with an error) and returns ok=false.
func (a *Agent) owned(w http.ResponseWriter, r *http.Request) (p pidtable.Proc, ok bool) {
	gpid, err := pathGPID(r)
	if err != nil {
		a.writeError(w, r, err)
		return p, false
	}
	p, _, err = a.store.Get(r.Context(), gpid)
	if err != nil {
		if errors.Is(err, pidtable.ErrNotFound) {
			err = api.Errorf(api.CodeNotFound, "no such process: gpid %d (see ssi ps -A)", gpid)
		}
		a.writeError(w, r, err)
		return p, false
	}
	if p.Node == a.cfg.Name {
		return p, true
	}
	if r.Header.Get(api.HeaderForwarded) != "" {
		a.writeError(w, r, api.Errorf(api.CodeConflict, "gpid %d is owned by %s, not %s; retry", gpid, p.Node, a.cfg.Name))
		return p, false
	}
	a.forward(w, r, p.Node)
	return p, false
}

func (a *Agent) handleSignal(w http.ResponseWriter, r *http.Request) {
	// Resolve the owner first: a forwarded request must keep its body unread.
	p, ok := a.owned(w, r)
	if !ok {
		return
	}
	var req api.SignalRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	sig, err := api.ParseSignal(req.Signal)
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "%v", err))
		return
	}
	if p.State.Ended() {
		a.writeError(w, r, api.Errorf(api.CodeConflict, "gpid %d has already %s", p.GPID, describeEnd(p)))
		return
	}
	if err := a.signal(p.GPID, sig); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func describeEnd(p pidtable.Proc) string {
	if p.State == pidtable.Lost {
		return "been lost: " + p.Error
	}
	return fmt.Sprintf("exited with status %d", *p.ExitCode)
}

func (a *Agent) handleWait(w http.ResponseWriter, r *http.Request) {
	gpid, err := pathGPID(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	p, err := a.store.WaitEnded(r.Context(), gpid)
	if err != nil {
		if errors.Is(err, pidtable.ErrNotFound) {
			err = api.Errorf(api.CodeNotFound, "no such process: gpid %d (see ssi ps -A)", gpid)
		}
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ExitStatusOf(p))
}

func (a *Agent) handlePS(w http.ResponseWriter, r *http.Request) {
	snap, err := a.store.Snapshot(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	user, exited := r.URL.Query().Get("user"), r.URL.Query().Get("exited") != ""
	out := make([]api.ProcInfo, 0, len(snap.Procs))
	for _, p := range snap.Procs {
		if (user != "" && p.User != user) || (!exited && p.State.Ended()) {
			continue
		}
		out = append(out, procInfo(snap, p))
	}
	writeJSON(w, http.StatusOK, out)
}

func procInfo(snap *pidtable.Snapshot, p pidtable.Proc) api.ProcInfo {
	pi := api.ProcInfo{Proc: p}
	st, ready := snap.Status[p.Node]
	pi.NodeReady = ready
	if ps, ok := st.Procs[p.GPID]; ready && ok && !p.State.Ended() {
		pi.Stats = &ps
	}
	return pi
}

func (a *Agent) handleProc(w http.ResponseWriter, r *http.Request) {
	gpid, err := pathGPID(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	p, _, err := a.store.Get(r.Context(), gpid)
	if err != nil {
		if errors.Is(err, pidtable.ErrNotFound) {
			err = api.Errorf(api.CodeNotFound, "no such process: gpid %d (see ssi ps -A)", gpid)
		}
		a.writeError(w, r, err)
		return
	}
	snap, err := a.store.NodesSnapshot(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, procInfo(snap, p))
}

func (a *Agent) handleNodes(w http.ResponseWriter, r *http.Request) {
	snap, err := a.store.NodesSnapshot(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := make([]api.NodeInfo, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		ni := api.NodeInfo{Node: n}
		if st, ok := snap.Status[n.Name]; ok {
			ni.Ready, ni.Load, ni.Demand, ni.Jobs, ni.ReservedCPUs, ni.ReservedMemory = true, st.Load, st.Demand, st.Jobs, st.ReservedCPUs, st.ReservedMemory
		}
		out = append(out, ni)
	}
	writeJSON(w, http.StatusOK, out)
}

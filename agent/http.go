package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/placement"
	"github.com/ssi-cluster/ssi/supervisor"
)

// maxRequestBody bounds JSON request bodies (argv and env included).
const maxRequestBody = 1 << 20

// maxHeaderBytes bounds request headers.
const maxHeaderBytes = 64 << 10

// writeError sends err as an api.Error; errors without a kind are internal
// and also logged.
func (a *Agent) writeError(w http.ResponseWriter, r *http.Request, err error) {
	// The one place where errors become the API's codes: by their errdefs
	// kind (api.FromError), and pidtable's not-found.
	e := api.FromError(err)
	switch {
	case e != nil:
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

// writeResult answers v with status, or err when there is one.
func (a *Agent) writeResult(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, status, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func decode(r *http.Request, v any) error {
	if r.ContentLength > maxRequestBody {
		return api.Errorf(api.CodeBadRequest, "request body of %d bytes: at most %d (argv and env included)", r.ContentLength, maxRequestBody)
	}
	body := io.LimitReader(r.Body, maxRequestBody+1)
	err := decodeJSON(body, v)
	// Read to the end: a handler that streams its answer (migrate) must not
	// leave the request half-read on a connection a proxy reuses.
	rest, _ := io.ReadAll(body)
	if err == nil && len(bytes.TrimSpace(rest)) > 0 {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		return api.Errorf(api.CodeBadRequest, "malformed request body (at most %d bytes of one JSON object with known fields): %v", maxRequestBody, err)
	}
	return nil
}

// decodeJSON decodes one JSON object, refusing fields the API does not have.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// pathGPID is the {gpid} of r's route (access.PathGPID: admission reads it first).
func pathGPID(r *http.Request) (uint64, error) { return access.PathGPID(r) }

func (a *Agent) handleRun(w http.ResponseWriter, r *http.Request) {
	var req api.RunRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := supervisor.ValidateRun(req); err != nil {
		a.writeError(w, r, err)
		return
	}
	who := access.CallerOf(r) // a user: guard admitted access.RoleUser only
	token, ok := a.servesHere(w, r, req)
	if !ok {
		return
	}
	resp, err := a.spawn(r.Context(), req, who, token)
	a.served.add(placedJob{token: token, at: time.Now()}) // the job is counted here now, or gone
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

// servesHere routes a request that starts a job somewhere (a run, a restore):
// the agent the client reached places it (pr carries the node, policy and
// resources) and redirects the client to the chosen node with ?node=NODE and
// the placement's token (?placement=, see recent.go), which then serves it
// (placement there only checks that it may). It returns the token and true
// when this node is the one to serve it; otherwise the response has been
// written.
func (a *Agent) servesHere(w http.ResponseWriter, r *http.Request, pr api.RunRequest) (string, bool) {
	q := r.URL.Query()
	placed, token := q.Get("node"), q.Get("placement")
	if placed != "" {
		pr.Node = placed // by the agent that redirected the client here
	}
	if !validPlacementToken(token) {
		token = "" // only for accounting: an odd one is dropped, not refused
	}
	target, instance, err := a.place(r.Context(), pr)
	if err != nil {
		a.writeError(w, r, err)
		return "", false
	}
	if placed == "" {
		token = newPlacementToken()
		a.recent.add(placedJob{token: token, node: target, instance: instance, at: time.Now(), cpus: pr.CPUs, memory: pr.Memory})
	}
	if target == a.cfg.Name {
		return token, true
	}
	if placed != "" {
		a.writeError(w, r, api.Errorf(api.CodeConflict, "request placed on %s arrived at %s", target, a.cfg.Name))
		return "", false
	}
	a.forward(w, r, target, "node", target, "placement", token)
	return "", false
}

// place runs the placement policy over a fresh snapshot. It returns the
// chosen node and the instance of its agent that published the figures used.
func (a *Agent) place(ctx context.Context, req api.RunRequest) (string, string, error) {
	snap, err := a.nodes(ctx)
	if err != nil {
		return "", "", err
	}
	nodes := make([]placement.Node, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		pn := placement.Node{Name: n.Name, CPUs: n.CPUs, Memory: n.Memory, Labels: n.Labels, Cordoned: n.Cordoned, Protocol: n.Protocol}
		if st, ok := snap.Status[n.Name]; ok {
			pn.Ready, pn.Load, pn.Jobs, pn.ReservedCPUs, pn.ReservedMemory = true, st.Load+st.Expected, st.Jobs, st.ReservedCPUs, st.ReservedMemory
		}
		nodes = append(nodes, pn)
	}
	a.recent.adjust(nodes, snap.Status, time.Now())
	policy := placement.Policy(req.Placement)
	if policy == "" {
		policy = a.cfg.Placement
	}
	a.rndMu.Lock()
	name, err := placement.Place(nodes, placement.Request{Node: req.Node, CPUs: req.CPUs, Memory: req.Memory, Constraints: req.Constraints, Policy: policy}, a.rnd)
	a.rndMu.Unlock()
	switch {
	case err == nil:
		if req.Node == "" {
			// What each placement saw: the one record that explains why a
			// job landed where it did.
			a.log.Info("placed", "on", name, "policy", policy, "nodes", describeNodes(nodes))
		}
		return name, snap.Status[name].Instance, nil
	case errors.Is(err, placement.ErrUnknownNode):
		return "", "", api.Errorf(api.CodeNotFound, "%v", err)
	case errors.Is(err, placement.ErrNotReady):
		return "", "", api.Errorf(api.CodeNotReady, "%v", err)
	case errors.Is(err, placement.ErrUnknownPolicy):
		return "", "", api.Errorf(api.CodeBadRequest, "--placement: %v", err)
	default:
		return "", "", api.Errorf(api.CodeConflict, "%v", err)
	}
}

// describeNodes formats placement inputs: name, Ready, load per core, jobs.
func describeNodes(nodes []placement.Node) string {
	var b strings.Builder
	for i, n := range nodes {
		if i > 0 {
			b.WriteByte(' ')
		}
		if !n.Ready {
			fmt.Fprintf(&b, "%s=notready", n.Name)
			continue
		}
		fmt.Fprintf(&b, "%s=%.3f/%gcpu,%djobs", n.Name, n.Load, n.CPUs, n.Jobs)
	}
	return b.String()
}

// forward sends the client to node's agent: a 307 redirect to the same
// request there, which the client repeats (same method, body and its own
// certificate) directly to that agent. An agent never relays a user's request
// under its own identity, so a node certificate never acts for a user; and
// streams (logs -f, a migration's progress) run straight from the node that
// serves them. query, if set, is added to the request's query.
func (a *Agent) forward(w http.ResponseWriter, r *http.Request, node string, query ...string) {
	snap, err := a.nodes(r.Context())
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
	q := r.URL.Query()
	for i := 0; i+1 < len(query); i += 2 {
		q.Set(query[i], query[i+1])
	}
	u := url.URL{Scheme: a.scheme(), Host: n.Addr, Path: r.URL.Path, RawQuery: q.Encode()}
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusTemporaryRedirect)
}

// owned returns the job's record (read and authorized by guard) when this
// node owns the job; otherwise it forwards the request to the owner (or
// answers with an error) and returns ok=false.
func (a *Agent) owned(w http.ResponseWriter, r *http.Request) (p pidtable.Proc, ok bool) {
	if p, ok = a.admittedJob(w, r); !ok {
		return p, false
	}
	if p.Node == a.cfg.Name {
		return p, true
	}
	if access.Forwarded(r) {
		a.writeError(w, r, api.Errorf(api.CodeConflict, "gpid %d is owned by %s, not %s; retry", p.GPID, p.Node, a.cfg.Name))
		return p, false
	}
	a.forward(w, r, p.Node)
	return p, false
}

func (a *Agent) handleSignal(w http.ResponseWriter, r *http.Request) {
	// Resolve the owner first: a request redirected to the owner has no use for its body here.
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
		a.writeError(w, r, api.Errorf(api.CodeConflict, "gpid %d has already %s", p.GPID, p.DescribeEnd()))
		return
	}
	a.events.killed(r.Context(), p, sig, access.CallerOf(r).String()) // before: the exit it causes comes after it
	if err := a.sup.Signal(p.GPID, sig); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleWait answers once the job has ended; guard has admitted the caller
// on its record, failing closed (admitJob).
func (a *Agent) handleWait(w http.ResponseWriter, r *http.Request) {
	cur, ok := a.admittedJob(w, r)
	if !ok {
		return
	}
	p, err := a.store.WaitEnded(r.Context(), cur.GPID)
	if err != nil {
		if errors.Is(err, pidtable.ErrNotFound) {
			err = api.Errorf(api.CodeNotFound, "no such process: gpid %d (see ssi ps -A)", cur.GPID)
		}
		a.writeError(w, r, fmt.Errorf("wait for gpid %d: %w", cur.GPID, err))
		return
	}
	writeJSON(w, http.StatusOK, api.ExitStatusOf(p))
}

func (a *Agent) handleProc(w http.ResponseWriter, r *http.Request) {
	p, ok := a.admittedJob(w, r)
	if !ok {
		return
	}
	snap, err := a.nodes(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.NewProcInfo(snap, p))
}

func (a *Agent) handleNodes(w http.ResponseWriter, r *http.Request) {
	snap, err := a.nodes(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := make([]api.NodeInfo, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		ni := api.NodeInfo{Node: n}
		if st, ok := snap.Status[n.Name]; ok {
			ni.Ready, ni.Load, ni.Demand, ni.Jobs, ni.ReservedCPUs, ni.ReservedMemory, ni.Updated = true, st.Load, st.Demand, st.Jobs, st.ReservedCPUs, st.ReservedMemory, st.Updated
		}
		out = append(out, ni)
	}
	writeJSON(w, http.StatusOK, out)
}

// peerCall POSTs to another agent as this node.
func (a *Agent) peerCall(ctx context.Context, node, path string, out any) error {
	snap, err := a.nodes(ctx)
	if err != nil {
		return err
	}
	n, ok := snap.Node(node)
	if !ok {
		return fmt.Errorf("node %s is not registered", node)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s://%s%s", a.scheme(), n.Addr, path), nil)
	if err != nil {
		return err
	}
	req.Header.Set(api.HeaderForwarded, a.cfg.Name)
	resp, err := (&http.Client{Transport: a.peer}).Do(req)
	if err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return &e
		}
		return fmt.Errorf("node %s: %s: HTTP %d", node, path, resp.StatusCode)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// logPanics logs a handler's panic (a bug) at error level with its stack,
// then aborts the request as net/http does: the server's own log of it
// goes to the debug level, with the TLS handshakes' noise. A failed
// migration's handler once panicked unseen; the CLI said only "progress
// stream lost".
func (a *Agent) logPanics(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					a.log.Error("panic in a request's handler (a bug): the request is aborted", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				}
				panic(http.ErrAbortHandler)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

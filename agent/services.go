package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/service"
)

// Services (ssi apply). The HTTP edge of the service package: users' routes
// are thin handlers over service.Requests, which writes a service's desired
// state (pidtable.Service, compare-and-swap); the
// elected agent runs the service controller (service.Controller) on watched
// caches of the replicas and services; it starts and stops replicas through
// the chosen node's agent (startReplica, stopReplica, here or over the peer
// routes), which spawns a replica the way ssi run does, as the service's
// owner: the authority is the service record, checked when it was applied.

// newServiceRequests is this node's service.Requests, wired to the agent;
// the store must be set up.
func (a *Agent) newServiceRequests() *service.Requests {
	return service.NewRequests(service.RequestsConfig{Node: a.cfg.Name, Store: a.store, Events: a.events.add})
}

// serviceLoop campaigns for the service controller's leadership on the
// agent's session, and leads while elected; the leader also archives the
// ended jobs of nodes that are gone (archive.go).
func (a *Agent) serviceLoop(ctx context.Context) {
	pidtable.Elect(ctx, a.session.Load, pidtable.ServiceLeaderPrefix, a.cfg.Name, nil, func(term context.Context, _ *concurrency.Session, el *concurrency.Election) {
		a.log.Info("service controller: elected leader")
		go a.archiveOrphansLoop(term) // housekeeping of the elected agent (archive.go)
		go a.leftNodesLoop(term)
		go a.eventsHousekeeping(term) // the event log's trim, node and leader events (eventpoints.go)
		a.leadServices(term, clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev()))
	})
}

// leadServices runs the controller for one leadership term, on caches
// listed afresh for the term.
func (a *Agent) leadServices(ctx context.Context, guard clientv3.Cmp) {
	procs := a.store.NewProcCache(func(p pidtable.Proc) bool { return p.Service != "" }, a.log)
	svcs := a.store.NewServiceCache(a.log)
	go procs.Run(ctx)
	go svcs.Run(ctx)
	ctrl := service.New(service.Config{
		Store: a.store, Procs: procs, Services: svcs, Runner: replicaRunner{a}, Log: a.log,
		Nodes: a.serviceNodes,
		Event: func(ctx context.Context, svc pidtable.Service, gpid uint64, node, msg string) {
			a.events.add(ctx, pidtable.Event{Kind: "service", GPID: gpid, User: svc.Owner, To: node, Reason: "service " + svc.Name + ": " + msg})
		},
	})
	if err := ctrl.Lead(ctx, guard); err != nil && ctx.Err() == nil {
		a.log.Warn("service controller: stopped leading", "err", err)
	}
}

// serviceNodes is the planner's view of the nodes (the watched view).
func (a *Agent) serviceNodes(ctx context.Context) ([]service.Node, error) {
	snap, err := a.nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]service.Node, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		st, ready := snap.Status[n.Name]
		out = append(out, service.Node{Name: n.Name, Ready: ready, Labels: n.Labels, Load: st.Load + st.Expected, Cordoned: n.Cordoned, Replacing: n.Replacing})
	}
	return out, nil
}

// replicaRunner is the controller's Runner: the node's agent starts and
// stops replicas, this one directly, another over its peer routes.
type replicaRunner struct{ a *Agent }

func (rr replicaRunner) Start(ctx context.Context, svc pidtable.Service, node string) (uint64, error) {
	if node == rr.a.cfg.Name {
		resp, err := rr.a.startReplica(ctx, svc.Name)
		return resp.GPID, err
	}
	var resp api.RunResponse
	err := rr.a.peerCall(ctx, node, "/v1/services/"+url.PathEscape(svc.Name)+"/replicas", &resp)
	return resp.GPID, err
}

func (rr replicaRunner) Stop(ctx context.Context, svc pidtable.Service, p pidtable.Proc) error {
	if p.Node == rr.a.cfg.Name {
		return rr.a.stopReplica(ctx, svc.Name, p.GPID)
	}
	return rr.a.peerCall(ctx, p.Node, fmt.Sprintf("/v1/services/%s/replicas/%d/stop", url.PathEscape(svc.Name), p.GPID), nil)
}

// startReplica starts a replica of the named service on this node, from the
// service's record, as its owner.
func (a *Agent) startReplica(ctx context.Context, name string) (api.RunResponse, error) {
	svc, _, err := a.store.GetService(ctx, name)
	if err != nil {
		return api.RunResponse{}, api.Errorf(api.CodeNotFound, "%v", err)
	}
	if svc.Removing {
		return api.RunResponse{}, api.Errorf(api.CodeConflict, "service %s is being removed", name)
	}
	token := newPlacementToken()
	resp, err := a.spawn(ctx, service.ReplicaRequest(svc), access.Caller{User: svc.Owner, Admin: svc.OwnerAdmin}, token)
	a.served.add(placedJob{token: token, at: time.Now()})
	return resp, err
}

// stopReplica stops a replica of the named service on this node: its
// KillSignal, then SIGKILL after its TimeoutStopSec.
func (a *Agent) stopReplica(ctx context.Context, name string, gpid uint64) error {
	p, _, err := a.store.Get(ctx, gpid)
	if err != nil {
		return err
	}
	if p.Service != name || p.Node != a.cfg.Name {
		return api.Errorf(api.CodeConflict, "gpid %d is not a replica of service %s on %s", gpid, name, a.cfg.Name)
	}
	var svc *pidtable.Service
	if rec, _, err := a.store.GetService(ctx, name); err == nil {
		svc = &rec
	}
	sig, timeout := service.StopSignal(svc)
	j := a.sup.Job(gpid)
	if j == nil {
		return nil // ended already
	}
	if err := a.sup.Signal(gpid, sig); err != nil {
		return err
	}
	select {
	case <-j.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
	}
	a.log.Warn("service replica did not stop in time; killing it", "gpid", gpid, "service", name, "timeout", timeout)
	return a.sup.Signal(gpid, syscall.SIGKILL)
}

// handleStartReplica is POST /v1/services/{name}/replicas (a node).
func (a *Agent) handleStartReplica(w http.ResponseWriter, r *http.Request) {
	resp, err := a.startReplica(r.Context(), r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

// handleStopReplica is POST /v1/services/{name}/replicas/{gpid}/stop (a
// node).
func (a *Agent) handleStopReplica(w http.ResponseWriter, r *http.Request) {
	gpid, err := pathGPID(r)
	if err == nil {
		err = a.stopReplica(r.Context(), r.PathValue("name"), gpid)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleApply is PUT /v1/services/{name}: create or update a service
// (ssi apply).
func (a *Agent) handleApply(w http.ResponseWriter, r *http.Request) {
	var req api.ApplyRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	resp, err := a.services.Apply(r.Context(), access.CallerOf(r), r.PathValue("name"), req)
	a.writeResult(w, r, http.StatusOK, resp, err)
}

// handleServices is GET /v1/services: those the caller may see.
func (a *Agent) handleServices(w http.ResponseWriter, r *http.Request) {
	out, err := a.services.List(r.Context(), access.CallerOf(r))
	a.writeResult(w, r, http.StatusOK, out, err)
}

// handleService is GET /v1/services/{name} (ssi service status).
func (a *Agent) handleService(w http.ResponseWriter, r *http.Request) {
	info, err := a.services.Status(r.Context(), serviceOf(r).Service)
	a.writeResult(w, r, http.StatusOK, info, err)
}

// handleScale is POST /v1/services/{name}/scale.
func (a *Agent) handleScale(w http.ResponseWriter, r *http.Request) {
	var req api.ScaleRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	resp, err := a.services.Scale(r.Context(), access.CallerOf(r), serviceOf(r), r.Method+" "+r.URL.Path, req.Replicas)
	a.writeResult(w, r, http.StatusOK, resp, err)
}

// handleRemoveService is DELETE /v1/services/{name}.
func (a *Agent) handleRemoveService(w http.ResponseWriter, r *http.Request) {
	if err := a.services.Remove(r.Context(), access.CallerOf(r), serviceOf(r), r.Method+" "+r.URL.Path); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type serviceKey struct{}

// serviceOf returns the service record admitService admitted the request on.
func serviceOf(r *http.Request) service.Record {
	rec, _ := r.Context().Value(serviceKey{}).(service.Record)
	return rec
}

// admitService is access.Lookups' Service, for access.RoleServiceOwner: the
// caller owns the service named by {name}, or is an admin
// (service.Requests.Admit); the record goes with the request.
func (a *Agent) admitService(r *http.Request, who access.Caller) (*http.Request, error) {
	rec, err := a.services.Admit(r.Context(), who, r.PathValue("name"))
	if err != nil {
		return r, err
	}
	return r.WithContext(context.WithValue(r.Context(), serviceKey{}, rec)), nil
}

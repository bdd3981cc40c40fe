package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/user"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/service"
	"github.com/ssi-cluster/ssi/supervisor"
)

// Services (ssi apply). The HTTP edge of the service package: users' routes
// write a service's desired state (pidtable.Service, compare-and-swap); the
// elected agent runs the service controller (service.Controller) on watched
// caches of the replicas and services; it starts and stops replicas through
// the chosen node's agent (startReplica, stopReplica, here or over the peer
// routes), which spawns a replica the way ssi run does, as the service's
// owner: the authority is the service record, checked when it was applied.

// serviceLoop campaigns for the service controller's leadership on the
// agent's session, and leads while elected.
func (a *Agent) serviceLoop(ctx context.Context) {
	pidtable.Elect(ctx, a.session.Load, pidtable.ServiceLeaderPrefix, a.cfg.Name, nil, func(term context.Context, _ *concurrency.Session, el *concurrency.Election) {
		a.log.Info("service controller: elected leader")
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

// serviceNodes is the planner's view of the nodes (one small read).
func (a *Agent) serviceNodes(ctx context.Context) ([]service.Node, error) {
	snap, err := a.store.NodesSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]service.Node, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		st, ready := snap.Status[n.Name]
		out = append(out, service.Node{Name: n.Name, Ready: ready, Labels: n.Labels, Load: st.Load + st.Expected})
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

// peerCall POSTs to another agent as this node.
func (a *Agent) peerCall(ctx context.Context, node, path string, out any) error {
	snap, err := a.store.NodesSnapshot(ctx)
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
	s := svc.Spec
	req := api.RunRequest{
		Argv: s.Argv, Env: s.Env, Workdir: s.Workdir, WorkdirExplicit: s.Workdir != "" && !s.WorkdirOptional,
		User: s.User, CPUs: s.CPUs, Memory: s.Memory, Constraints: s.Constraints, Pin: s.Pinned,
		Service: svc.Name, ServiceHash: svc.RunHash,
	}
	token := newPlacementToken()
	resp, err := a.spawn(ctx, req, caller{user: svc.Owner, admin: svc.OwnerAdmin}, token)
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
	sigName, timeout := "SIGTERM", service.DefaultStopTimeout
	if svc, _, err := a.store.GetService(ctx, name); err == nil {
		sigName, timeout = svc.Spec.KillSignal, svc.Spec.StopTimeout
	}
	sig, err := api.ParseSignal(sigName)
	if err != nil {
		sig = syscall.SIGTERM
	}
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

func (a *Agent) handleStartReplica(w http.ResponseWriter, r *http.Request) {
	resp, err := a.startReplica(r.Context(), r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

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

// handleApply creates or updates a service (ssi apply).
func (a *Agent) handleApply(w http.ResponseWriter, r *http.Request) {
	var req api.ApplyRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	who, name := callerOf(r), r.PathValue("name")
	if err := a.checkServiceSpec(who, name, &req.Spec); err != nil {
		a.writeError(w, r, err)
		return
	}
	hash, runHash := service.Hash(req.Spec), service.RunHash(req.Spec)
	rollout := "rolling"
	if req.Now {
		rollout = "now"
	}
	for range 16 {
		svc, rev, err := a.store.GetService(r.Context(), name)
		now := time.Now().UTC()
		resp := api.ApplyResponse{Name: name}
		switch {
		case errors.Is(err, pidtable.ErrServiceNotFound):
			svc = pidtable.Service{Name: name, Owner: who.user, OwnerAdmin: who.admin, Created: now, Generation: 0}
			resp.Action = "created"
		case err != nil:
			a.writeError(w, r, err)
			return
		case !visible(who, svc.Owner):
			a.writeError(w, r, api.Errorf(api.CodeForbidden, "service %s belongs to %s: %s may change its own services only", name, svc.Owner, who))
			return
		case svc.Removing:
			a.writeError(w, r, api.Errorf(api.CodeConflict, "service %s is being removed; apply it again once ssi services no longer lists it", name))
			return
		case svc.Hash == hash:
			writeJSON(w, http.StatusOK, api.ApplyResponse{Name: name, Action: "unchanged", Generation: svc.Generation})
			return
		default:
			resp.Action, resp.Rolling = "updated", svc.RunHash != runHash
		}
		svc.Spec, svc.Source, svc.Hash, svc.RunHash, svc.Rollout, svc.Updated = req.Spec, req.Source, hash, runHash, rollout, now
		svc.Generation++
		resp.Generation = svc.Generation
		if err := a.store.PutService(r.Context(), svc, rev); errors.Is(err, pidtable.ErrChanged) {
			continue
		} else if err != nil {
			a.writeError(w, r, err)
			return
		}
		a.events.add(r.Context(), pidtable.Event{Kind: "service", User: svc.Owner, Caller: who.String(), Reason: fmt.Sprintf("service %s: %s by %s (generation %d)", name, resp.Action, who, svc.Generation)})
		writeJSON(w, http.StatusOK, resp)
		return
	}
	a.writeError(w, r, api.Errorf(api.CodeConflict, "service %s: too many concurrent changes; retry", name))
}

// checkServiceSpec checks a spec as ssi run checks a request, and User= as
// ssi run --user: only admins may run as another user, or as root.
func (a *Agent) checkServiceSpec(who caller, name string, s *pidtable.ServiceSpec) error {
	if _, _, err := service.UnitName(name + ".service"); err != nil || strings.HasSuffix(name, "@") {
		return api.Errorf(api.CodeBadRequest, "service name %q: letters, digits, _ . : - and one @ (with an instance) only", name)
	}
	service.Defaults(s)
	if s.Replicas < 0 || s.Replicas > service.MaxReplicas {
		return api.Errorf(api.CodeBadRequest, "Replicas=%d: from 0 to %d", s.Replicas, service.MaxReplicas)
	}
	if err := supervisor.ValidateRun(api.RunRequest{Argv: s.Argv, Env: s.Env, CPUs: s.CPUs, Memory: s.Memory}); err != nil {
		return err
	}
	runAs := s.User
	if runAs == "" {
		runAs = who.user
	}
	if runAs != who.user && !who.admin {
		return api.Errorf(api.CodeForbidden, "User=%s: only admins may run services as another user (you are %s)", runAs, who)
	}
	if u, err := user.Lookup(runAs); err == nil && (u.Uid == "0" || u.Gid == "0") && !who.admin {
		return api.Errorf(api.CodeForbidden, "User=%s maps to a uid or gid 0 account on node %s: only admins may run services as root", runAs, a.cfg.Name)
	}
	return nil
}

func (a *Agent) handleServices(w http.ResponseWriter, r *http.Request) {
	svcs, err := a.store.Services(r.Context())
	if err == nil {
		var sts map[string]pidtable.ServiceStatus
		if sts, err = a.store.ServiceStatuses(r.Context()); err == nil {
			who := callerOf(r)
			out := []api.ServiceInfo{}
			for _, s := range svcs {
				if visible(who, s.Owner) {
					out = append(out, api.ServiceInfo{Service: s, Status: sts[s.Name]})
				}
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
	}
	a.writeError(w, r, err)
}

// handleService is ssi service status: the service, its replicas (ended ones
// too) and its recent events.
func (a *Agent) handleService(w http.ResponseWriter, r *http.Request) {
	sr := serviceOf(r)
	sts, err := a.store.ServiceStatuses(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	snap, err := a.store.Snapshot(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	info := api.ServiceInfo{Service: sr.svc, Status: sts[sr.svc.Name]}
	for _, p := range snap.Procs {
		if p.Service == sr.svc.Name {
			info.Replicas = append(info.Replicas, procInfo(snap, p))
		}
	}
	evs, _, err := a.store.Events(r.Context(), 0, 0, 2000)
	if err == nil {
		prefix := "service " + sr.svc.Name + ": "
		for _, ev := range evs {
			if strings.HasPrefix(ev.Reason, prefix) {
				info.Events = append(info.Events, ev)
			}
		}
		if n := len(info.Events); n > 10 {
			info.Events = info.Events[n-10:]
		}
	}
	writeJSON(w, http.StatusOK, info)
}

func (a *Agent) handleScale(w http.ResponseWriter, r *http.Request) {
	var req api.ScaleRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if req.Replicas < 0 || req.Replicas > service.MaxReplicas {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "%d replicas: from 0 to %d", req.Replicas, service.MaxReplicas))
		return
	}
	svc, err := a.changeService(r, func(svc *pidtable.Service) bool {
		if svc.Spec.Replicas == req.Replicas {
			return false
		}
		svc.Spec.Replicas = req.Replicas
		return true
	})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ApplyResponse{Name: svc.Name, Action: "scaled", Generation: svc.Generation})
}

func (a *Agent) handleRemoveService(w http.ResponseWriter, r *http.Request) {
	if _, err := a.changeService(r, func(svc *pidtable.Service) bool {
		if svc.Removing {
			return false
		}
		svc.Removing = true
		return true
	}); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// changeService applies fn to the admitted service and writes it back
// (compare-and-swap, retried); fn reports whether it changed anything.
func (a *Agent) changeService(r *http.Request, fn func(*pidtable.Service) bool) (pidtable.Service, error) {
	sr := serviceOf(r)
	svc, rev := sr.svc, sr.rev
	for range 16 {
		if !fn(&svc) {
			return svc, nil
		}
		if svc.Removing && r.Method != http.MethodDelete {
			return svc, api.Errorf(api.CodeConflict, "service %s is being removed", svc.Name)
		}
		svc.Hash = service.Hash(svc.Spec)
		svc.Generation++
		svc.Updated = time.Now().UTC()
		err := a.store.PutService(r.Context(), svc, rev)
		if err == nil {
			a.events.add(r.Context(), pidtable.Event{Kind: "service", User: svc.Owner, Caller: callerOf(r).String(), Reason: fmt.Sprintf("service %s: %s %s by %s (replicas %d)", svc.Name, r.Method, r.URL.Path, callerOf(r), svc.Spec.Replicas)})
			return svc, nil
		}
		if !errors.Is(err, pidtable.ErrChanged) {
			return svc, err
		}
		if svc, rev, err = a.store.GetService(r.Context(), svc.Name); err != nil {
			return svc, api.Errorf(api.CodeNotFound, "%v", err)
		}
	}
	return svc, api.Errorf(api.CodeConflict, "service %s: too many concurrent changes; retry", svc.Name)
}

type serviceKey struct{}

type serviceRecord struct {
	svc pidtable.Service
	rev int64
}

// serviceOf returns the service record guard admitted the request on.
func serviceOf(r *http.Request) serviceRecord {
	sr, _ := r.Context().Value(serviceKey{}).(serviceRecord)
	return sr
}

// admitService is the roleServiceOwner check: the caller owns the service
// named by {name}, or is an admin.
func (a *Agent) admitService(r *http.Request, who caller) (*http.Request, error) {
	name := r.PathValue("name")
	if who.user == "" {
		return r, api.Errorf(api.CodeForbidden, "service %s: a node certificate (%s) cannot act on services; use a user's config", name, who.node)
	}
	svc, rev, err := a.store.GetService(r.Context(), name)
	if errors.Is(err, pidtable.ErrServiceNotFound) {
		return r, api.Errorf(api.CodeNotFound, "no service %q (ssi services lists yours)", name)
	}
	if err != nil {
		return r, err
	}
	if err := authorize(who, "service "+name, svc.Owner); err != nil {
		return r, err
	}
	return r.WithContext(context.WithValue(r.Context(), serviceKey{}, serviceRecord{svc, rev})), nil
}

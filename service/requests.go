package service

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"strings"
	"syscall"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/supervisor"
)

// RequestsConfig is what Requests need.
type RequestsConfig struct {
	// Node is this node's name (User= is looked up on it).
	Node  string
	Store *pidtable.Store
	// Events records an event in the cluster's log.
	Events func(ctx context.Context, ev pidtable.Event)
}

// Requests carries out what users ask of services (ssi apply, services,
// service status|scale|rm), without HTTP: the checks, the service's desired
// state written with compare-and-swap (retried), the answers and events.
// The elected Controller acts on what they write.
type Requests struct{ cfg RequestsConfig }

// NewRequests returns the Requests of a node.
func NewRequests(cfg RequestsConfig) *Requests { return &Requests{cfg: cfg} }

// Record is a service's record as a request was admitted on it (Admit).
type Record struct {
	Service pidtable.Service
	Rev     int64
}

// Admit is the access.RoleServiceOwner check: the caller owns the named
// service, or is an admin. It returns the record it read.
func (q *Requests) Admit(ctx context.Context, who access.Caller, name string) (Record, error) {
	if who.User == "" {
		return Record{}, api.Errorf(api.CodeForbidden, "service %s: a node certificate (%s) cannot act on services; use a user's config", name, who.Node)
	}
	svc, rev, err := q.cfg.Store.GetService(ctx, name)
	if errors.Is(err, pidtable.ErrServiceNotFound) {
		return Record{}, api.Errorf(api.CodeNotFound, "no service %q (ssi services lists yours)", name)
	}
	if err != nil {
		return Record{}, err
	}
	if err := access.Authorize(who, "service "+name, svc.Owner); err != nil {
		return Record{}, err
	}
	return Record{svc, rev}, nil
}

// Apply creates or updates the named service (ssi apply), as who.
func (q *Requests) Apply(ctx context.Context, who access.Caller, name string, req api.ApplyRequest) (api.ApplyResponse, error) {
	if err := q.CheckSpec(who, name, &req.Spec); err != nil {
		return api.ApplyResponse{}, err
	}
	st := q.cfg.Store
	hash, runHash := Hash(req.Spec), RunHash(req.Spec)
	rollout := "rolling"
	if req.Now {
		rollout = "now"
	}
	for range 16 {
		svc, rev, err := st.GetService(ctx, name)
		now := time.Now().UTC()
		resp := api.ApplyResponse{Name: name}
		switch {
		case errors.Is(err, pidtable.ErrServiceNotFound):
			svc = pidtable.Service{Name: name, Owner: who.User, OwnerAdmin: who.Admin, Created: now, Generation: 0}
			resp.Action = "created"
		case err != nil:
			return api.ApplyResponse{}, err
		case !access.Visible(who, svc.Owner):
			return api.ApplyResponse{}, api.Errorf(api.CodeForbidden, "service %s belongs to %s: %s may change its own services only", name, svc.Owner, who)
		case svc.Removing:
			return api.ApplyResponse{}, api.Errorf(api.CodeConflict, "service %s is being removed; apply it again once ssi services no longer lists it", name)
		case svc.Hash == hash:
			return api.ApplyResponse{Name: name, Action: "unchanged", Generation: svc.Generation}, nil
		default:
			resp.Action, resp.Rolling = "updated", svc.RunHash != runHash
		}
		svc.Spec, svc.Source, svc.Hash, svc.RunHash, svc.Rollout, svc.Updated = req.Spec, req.Source, hash, runHash, rollout, now
		svc.Generation++
		resp.Generation = svc.Generation
		if err := st.PutService(ctx, svc, rev); errors.Is(err, pidtable.ErrChanged) {
			continue
		} else if err != nil {
			return api.ApplyResponse{}, err
		}
		q.cfg.Events(ctx, pidtable.Event{Kind: "service", User: svc.Owner, Caller: who.String(), Reason: fmt.Sprintf("service %s: %s by %s (generation %d)", name, resp.Action, who, svc.Generation)})
		return resp, nil
	}
	return api.ApplyResponse{}, api.Errorf(api.CodeConflict, "service %s: too many concurrent changes; retry", name)
}

// CheckSpec checks a spec as ssi run checks a request, and User= as ssi run
// --user: only admins may run as another user, or as root. It sets the
// spec's defaults.
func (q *Requests) CheckSpec(who access.Caller, name string, s *pidtable.ServiceSpec) error {
	if _, _, err := UnitName(name + ".service"); err != nil || strings.HasSuffix(name, "@") {
		return api.Errorf(api.CodeBadRequest, "service name %q: letters, digits, _ . : - and one @ (with an instance) only", name)
	}
	Defaults(s)
	if s.Replicas < 0 || s.Replicas > MaxReplicas {
		return api.Errorf(api.CodeBadRequest, "Replicas=%d: from 0 to %d", s.Replicas, MaxReplicas)
	}
	if err := supervisor.ValidateRun(api.RunRequest{Argv: s.Argv, Env: s.Env, CPUs: s.CPUs, Memory: s.Memory, CheckpointEvery: s.CheckpointEvery}); err != nil {
		return err
	}
	runAs := s.User
	if runAs == "" {
		runAs = who.User
	}
	if runAs != who.User && !who.Admin {
		return api.Errorf(api.CodeForbidden, "User=%s: only admins may run services as another user (you are %s)", runAs, who)
	}
	if u, err := user.Lookup(runAs); err == nil && (u.Uid == "0" || u.Gid == "0") && !who.Admin {
		return api.Errorf(api.CodeForbidden, "User=%s maps to a uid or gid 0 account on node %s: only admins may run services as root", runAs, q.cfg.Node)
	}
	return nil
}

// List is the services who may see, with their statuses.
func (q *Requests) List(ctx context.Context, who access.Caller) ([]api.ServiceInfo, error) {
	svcs, err := q.cfg.Store.Services(ctx)
	if err != nil {
		return nil, err
	}
	sts, err := q.cfg.Store.ServiceStatuses(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.ServiceInfo{}
	for _, s := range svcs {
		if access.Visible(who, s.Owner) {
			out = append(out, api.ServiceInfo{Service: s, Status: sts[s.Name]})
		}
	}
	return out, nil
}

// Status is ssi service status: the service, its replicas (ended ones too)
// and its last 10 events.
func (q *Requests) Status(ctx context.Context, svc pidtable.Service) (api.ServiceInfo, error) {
	st := q.cfg.Store
	sts, err := st.ServiceStatuses(ctx)
	if err != nil {
		return api.ServiceInfo{}, err
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return api.ServiceInfo{}, err
	}
	info := api.ServiceInfo{Service: svc, Status: sts[svc.Name]}
	for _, p := range snap.Procs {
		if p.Service == svc.Name {
			info.Replicas = append(info.Replicas, api.NewProcInfo(snap, p))
		}
	}
	evs, _, err := st.EventsMatching(ctx, 0, pidtable.EventFilter{Kinds: []string{pidtable.EventService}}, 2000)
	if err == nil {
		prefix := "service " + svc.Name + ": "
		for _, ev := range evs {
			if strings.HasPrefix(ev.Reason, prefix) {
				info.Events = append(info.Events, ev)
			}
		}
		if n := len(info.Events); n > 10 {
			info.Events = info.Events[n-10:]
		}
	}
	return info, nil
}

// Scale sets the admitted service's replicas, as who; what is the request
// as its event names it.
func (q *Requests) Scale(ctx context.Context, who access.Caller, rec Record, what string, replicas int) (api.ApplyResponse, error) {
	if replicas < 0 || replicas > MaxReplicas {
		return api.ApplyResponse{}, api.Errorf(api.CodeBadRequest, "%d replicas: from 0 to %d", replicas, MaxReplicas)
	}
	svc, err := q.change(ctx, who, rec, what, false, func(svc *pidtable.Service) bool {
		if svc.Spec.Replicas == replicas {
			return false
		}
		svc.Spec.Replicas = replicas
		return true
	})
	if err != nil {
		return api.ApplyResponse{}, err
	}
	return api.ApplyResponse{Name: svc.Name, Action: "scaled", Generation: svc.Generation}, nil
}

// Remove marks the admitted service removed, as who: the controller stops
// its replicas, then deletes it; what is the request as its event names it.
func (q *Requests) Remove(ctx context.Context, who access.Caller, rec Record, what string) error {
	_, err := q.change(ctx, who, rec, what, true, func(svc *pidtable.Service) bool {
		if svc.Removing {
			return false
		}
		svc.Removing = true
		return true
	})
	return err
}

// change applies fn to the admitted service and writes it back
// (compare-and-swap, retried); fn reports whether it changed anything. A
// service being removed changes only by the removal (removal).
func (q *Requests) change(ctx context.Context, who access.Caller, rec Record, what string, removal bool, fn func(*pidtable.Service) bool) (pidtable.Service, error) {
	st := q.cfg.Store
	svc, rev := rec.Service, rec.Rev
	for range 16 {
		if !fn(&svc) {
			return svc, nil
		}
		if svc.Removing && !removal {
			return svc, api.Errorf(api.CodeConflict, "service %s is being removed", svc.Name)
		}
		svc.Hash = Hash(svc.Spec)
		svc.Generation++
		svc.Updated = time.Now().UTC()
		err := st.PutService(ctx, svc, rev)
		if err == nil {
			q.cfg.Events(ctx, pidtable.Event{Kind: "service", User: svc.Owner, Caller: who.String(), Reason: fmt.Sprintf("service %s: %s by %s (replicas %d)", svc.Name, what, who, svc.Spec.Replicas)})
			return svc, nil
		}
		if !errors.Is(err, pidtable.ErrChanged) {
			return svc, err
		}
		if svc, rev, err = st.GetService(ctx, svc.Name); err != nil {
			return svc, api.Errorf(api.CodeNotFound, "%v", err)
		}
	}
	return svc, api.Errorf(api.CodeConflict, "service %s: too many concurrent changes; retry", svc.Name)
}

// ReplicaRequest is how a replica of svc is run: its spec, as ssi run
// would ask for it, marked with the service and its run hash.
func ReplicaRequest(svc pidtable.Service) api.RunRequest {
	s := svc.Spec
	return api.RunRequest{
		Argv: s.Argv, Env: s.Env, Workdir: s.Workdir, WorkdirExplicit: s.Workdir != "" && !s.WorkdirOptional,
		User: s.User, CPUs: s.CPUs, Memory: s.Memory, Constraints: s.Constraints, Pin: s.Pinned,
		CheckpointEvery: s.CheckpointEvery, Service: svc.Name, ServiceHash: svc.RunHash,
	}
}

// StopSignal is how a replica of svc is stopped: its KillSignal (SIGTERM
// when that does not parse), then SIGKILL after the timeout returned. A nil
// svc (its record could not be read): SIGTERM, then DefaultStopTimeout.
func StopSignal(svc *pidtable.Service) (syscall.Signal, time.Duration) {
	sigName, timeout := "SIGTERM", DefaultStopTimeout
	if svc != nil {
		sigName, timeout = svc.Spec.KillSignal, svc.Spec.StopTimeout
	}
	sig, err := api.ParseSignal(sigName)
	if err != nil {
		sig = syscall.SIGTERM
	}
	return sig, timeout
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/service"
	"github.com/ssi-cluster/ssi/supervisor"
	"github.com/ssi-cluster/ssi/timer"
)

// Timers (ssi apply NAME.timer). The HTTP edge of the timer package: users'
// routes are thin handlers over timer.Requests; the elected agent runs the
// timer controller (timer.Controller), which starts each tick's run through
// the chosen node's agent (startTimerRun, here or over the peer route): it
// spawns the run as ssi run does, as the timer's owner, creating its record
// in the transaction that moves the tick from claimed to started.

func (a *Agent) newTimerRequests() *timer.Requests {
	return timer.NewRequests(timer.RequestsConfig{Timers: timer.NewStore(a.store.Client()), Procs: a.store, Services: a.services, Events: a.events.add})
}

// timerLoop campaigns for the timer controller's leadership and leads while
// elected.
func (a *Agent) timerLoop(ctx context.Context) {
	pidtable.Elect(ctx, a.session.Load, timer.LeaderPrefix, a.cfg.Name, nil, func(term context.Context, _ *concurrency.Session, el *concurrency.Election) {
		a.log.Info("timer controller: elected leader")
		ctrl := timer.NewController(timer.Config{
			Timers: timer.NewStore(a.store.Client()), Procs: a.store, Nodes: a.serviceNodes, Runner: timerRunner{a}, Log: a.log, Node: a.cfg.Name,
			Event: func(ctx context.Context, t timer.Timer, gpid uint64, node, msg string) {
				a.events.add(ctx, pidtable.Event{Kind: pidtable.EventTimer, GPID: gpid, User: t.Owner, To: node, Reason: "timer " + t.Name + ": " + msg})
			},
		})
		if err := ctrl.Lead(term, clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())); err != nil && term.Err() == nil {
			a.log.Warn("timer controller: stopped leading", "err", err)
		}
	})
}

// timerRunner is the controller's Runner: the node's agent starts a run.
type timerRunner struct{ a *Agent }

func (tr timerRunner) Start(ctx context.Context, t timer.Timer, tick timer.Tick, node string) error {
	if node == tr.a.cfg.Name {
		_, err := tr.a.startTimerRun(ctx, t.Name, tick.Scheduled, tick.GPID)
		return err
	}
	return tr.a.peerCall(ctx, node, fmt.Sprintf("/v1/timers/%s/ticks/%d/%d/start", url.PathEscape(t.Name), tick.Scheduled.UnixNano(), tick.GPID), nil)
}

func (tr timerRunner) Stop(ctx context.Context, t timer.Timer, p pidtable.Proc) error {
	if p.Node == tr.a.cfg.Name {
		return tr.a.stopTimerRun(ctx, t.Name, p.GPID)
	}
	return tr.a.peerCall(ctx, p.Node, fmt.Sprintf("/v1/timers/%s/runs/%d/stop", url.PathEscape(t.Name), p.GPID), nil)
}

// startTimerRun starts the run of a claimed tick on this node, as the
// timer's owner, under the gpid the tick claimed: the run's record is
// created in the transaction that moves the tick to started, so of every
// start of a tick one at most succeeds (a conflict: another did).
func (a *Agent) startTimerRun(ctx context.Context, name string, scheduled time.Time, gpid uint64) (api.RunResponse, error) {
	ts := timer.NewStore(a.store.Client())
	t, _, err := ts.Get(ctx, name)
	if err != nil {
		return api.RunResponse{}, api.Errorf(api.CodeNotFound, "%v", err)
	}
	tick, conds, ops, err := ts.StartClaim(ctx, name, scheduled, gpid, a.cfg.Name)
	if err != nil {
		return api.RunResponse{}, api.Errorf(api.CodeConflict, "%v", err)
	}
	req := timer.RunRequest(t, tick)
	who := access.Caller{User: t.Owner, Admin: t.OwnerAdmin}
	runAs := req.User
	if runAs == "" {
		runAs = who.User
	}
	if err := supervisor.ValidateRun(req); err != nil {
		return api.RunResponse{}, err
	}
	token := newPlacementToken()
	resp, err := a.sup.Start(ctx, supervisor.StartRequest{RunRequest: req, User: runAs, AllowRoot: who.Admin, Token: token,
		Create: func(ctx context.Context, p pidtable.Proc) (pidtable.Proc, error) {
			p.GPID = gpid
			return a.store.CreateClaimed(ctx, p, conds, ops)
		}})
	a.served.add(placedJob{token: token, at: time.Now()})
	if errors.Is(err, pidtable.ErrClaimLost) || errors.Is(err, pidtable.ErrConflict) {
		return resp, api.Errorf(api.CodeConflict, "timer %s: tick %s started elsewhere: %v", name, scheduled.Format(time.RFC3339), err)
	}
	if err == nil {
		a.metrics.Spawned()
	}
	return resp, err
}

// stopTimerRun stops a run of the named timer on this node (Overlap=replace):
// the service's KillSignal, then SIGKILL after its TimeoutStopSec.
func (a *Agent) stopTimerRun(ctx context.Context, name string, gpid uint64) error {
	t, _, err := timer.NewStore(a.store.Client()).Get(ctx, name)
	if err != nil {
		return api.Errorf(api.CodeNotFound, "%v", err)
	}
	sig, timeout := service.StopSignal(&pidtable.Service{Spec: t.Service})
	j := a.sup.Job(gpid)
	if j == nil {
		return nil
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
	return a.sup.Signal(gpid, syscall.SIGKILL)
}

// handleStartTimerRun is POST /v1/timers/{name}/ticks/{scheduled}/{gpid}/start (a node).
func (a *Agent) handleStartTimerRun(w http.ResponseWriter, r *http.Request) {
	ns, err1 := strconv.ParseInt(r.PathValue("scheduled"), 10, 64)
	gpid, err2 := strconv.ParseUint(r.PathValue("gpid"), 10, 64)
	if err1 != nil || err2 != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "bad tick or gpid in %s", r.URL.Path))
		return
	}
	resp, err := a.startTimerRun(r.Context(), r.PathValue("name"), time.Unix(0, ns), gpid)
	a.writeResult(w, r, http.StatusCreated, resp, err)
}

// handleStopTimerRun is POST /v1/timers/{name}/runs/{gpid}/stop (a node).
func (a *Agent) handleStopTimerRun(w http.ResponseWriter, r *http.Request) {
	gpid, err := pathGPID(r)
	if err == nil {
		err = a.stopTimerRun(r.Context(), r.PathValue("name"), gpid)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleApplyTimer is PUT /v1/timers/{name} (ssi apply NAME.timer).
func (a *Agent) handleApplyTimer(w http.ResponseWriter, r *http.Request) {
	var req api.TimerApplyRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	resp, err := a.timers.Apply(r.Context(), access.CallerOf(r), r.PathValue("name"), req)
	a.writeResult(w, r, http.StatusOK, resp, err)
}

// handleTimers is GET /v1/timers: those the caller may see.
func (a *Agent) handleTimers(w http.ResponseWriter, r *http.Request) {
	out, err := a.timers.List(r.Context(), access.CallerOf(r))
	a.writeResult(w, r, http.StatusOK, out, err)
}

// handleTimer is GET /v1/timers/{name} (ssi timer status).
func (a *Agent) handleTimer(w http.ResponseWriter, r *http.Request) {
	t, _, err := a.timers.Admit(r.Context(), access.CallerOf(r), r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	info, err := a.timers.Status(r.Context(), t)
	a.writeResult(w, r, http.StatusOK, info, err)
}

// handleRunTimer is POST /v1/timers/{name}/run (ssi timer run).
func (a *Agent) handleRunTimer(w http.ResponseWriter, r *http.Request) {
	who := access.CallerOf(r)
	t, _, err := a.timers.Admit(r.Context(), who, r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	tick, err := a.timers.Run(r.Context(), who, t)
	a.writeResult(w, r, http.StatusCreated, tick, err)
}

// handleRemoveTimer is DELETE /v1/timers/{name} (ssi timer rm).
func (a *Agent) handleRemoveTimer(w http.ResponseWriter, r *http.Request) {
	who := access.CallerOf(r)
	t, rev, err := a.timers.Admit(r.Context(), who, r.PathValue("name"))
	if err == nil {
		err = a.timers.Remove(r.Context(), who, t, rev)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

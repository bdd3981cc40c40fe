package timer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/calendar"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/service"
)

// RequestsConfig is what Requests need.
type RequestsConfig struct {
	Timers *Store
	Procs  *pidtable.Store
	// Services checks a timer's service spec as ssi apply checks a
	// service's (ssi run's rules, User=).
	Services *service.Requests
	Events   func(ctx context.Context, ev pidtable.Event)
	Location *time.Location
}

// Requests carries out ssi apply (timers), timers, timer status|run|rm,
// without HTTP.
type Requests struct{ cfg RequestsConfig }

// NewRequests returns the Requests of a node.
func NewRequests(cfg RequestsConfig) *Requests {
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	return &Requests{cfg: cfg}
}

// statusRuns is how many ticks ssi timer status shows.
const statusRuns = 20

// Admit returns the named timer if who may act on it.
func (q *Requests) Admit(ctx context.Context, who access.Caller, name string) (Timer, int64, error) {
	if who.User == "" {
		return Timer{}, 0, api.Errorf(api.CodeForbidden, "timer %s: a node certificate cannot act on timers; use a user's config", name)
	}
	t, rev, err := q.cfg.Timers.Get(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return Timer{}, 0, api.Errorf(api.CodeNotFound, "no timer %q (ssi timers lists yours)", name)
	}
	if err != nil {
		return Timer{}, 0, err
	}
	if err := access.Authorize(who, "timer "+name, t.Owner); err != nil {
		return Timer{}, 0, err
	}
	return t, rev, nil
}

// Apply creates or updates the named timer; an update changes the
// schedule in place (ticks due before it under the old one are not caught
// up).
func (q *Requests) Apply(ctx context.Context, who access.Caller, name string, req api.TimerApplyRequest) (api.ApplyResponse, error) {
	if _, err := UnitName(name + ".timer"); err != nil {
		return api.ApplyResponse{}, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	if err := checkSpec(req.Spec); err != nil {
		return api.ApplyResponse{}, api.Errorf(api.CodeBadRequest, "timer %s: %v", name, err)
	}
	svcName := strings.TrimSuffix(req.Spec.Unit, ".service")
	req.Service.Replicas = 1
	if err := q.cfg.Services.CheckSpec(who, svcName, &req.Service); err != nil {
		return api.ApplyResponse{}, err
	}
	hash := hashOf(req.Spec, req.Service)
	for range 16 {
		t, rev, err := q.cfg.Timers.Get(ctx, name)
		now := time.Now().UTC()
		resp := api.ApplyResponse{Name: name}
		switch {
		case errors.Is(err, ErrNotFound):
			t = Timer{Name: name, Owner: who.User, OwnerAdmin: who.Admin, Created: now}
			resp.Action = "created"
		case err != nil:
			return api.ApplyResponse{}, err
		case !access.Visible(who, t.Owner):
			return api.ApplyResponse{}, api.Errorf(api.CodeForbidden, "timer %s belongs to %s: %s may change its own timers only", name, t.Owner, who)
		case t.Hash == hash:
			return api.ApplyResponse{Name: name, Action: "unchanged", Generation: t.Generation}, nil
		default:
			resp.Action = "updated"
		}
		t.Spec, t.Service, t.Source, t.Hash, t.Updated = req.Spec, req.Service, req.Source, hash, now
		t.Generation++
		resp.Generation = t.Generation
		if err := q.cfg.Timers.Put(ctx, t, rev); errors.Is(err, ErrChanged) {
			continue
		} else if err != nil {
			return api.ApplyResponse{}, err
		}
		q.event(ctx, t, 0, "", fmt.Sprintf("%s by %s (generation %d)", resp.Action, who, t.Generation), who)
		return resp, nil
	}
	return api.ApplyResponse{}, api.Errorf(api.CodeConflict, "timer %s: too many concurrent changes; retry", name)
}

// checkSpec checks what a client could send wrong (the CLI parsed the unit).
func checkSpec(s pidtable.TimerSpec) error {
	for _, e := range s.OnCalendar {
		if _, err := calendar.Parse(e); err != nil {
			return fmt.Errorf("OnCalendar=%s: %w", e, err)
		}
	}
	switch s.Overlap {
	case OverlapSkip, OverlapQueue, OverlapReplace:
	default:
		return fmt.Errorf("Overlap=%q: want skip, queue or replace", s.Overlap)
	}
	if s.MissAfter < time.Second {
		return fmt.Errorf("MissAfter=%s: at least 1s", s.MissAfter)
	}
	if !strings.HasSuffix(s.Unit, ".service") {
		return fmt.Errorf("Unit=%q: a NAME.service unit", s.Unit)
	}
	if len(s.OnCalendar) == 0 && s.Schedule == "" && s.OnActive == 0 && s.OnUnitActive == 0 && s.OnUnitInactive == 0 {
		return errors.New("no trigger: it would never fire")
	}
	return nil
}

func hashOf(v ...any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// List returns the timers who may see, with their next and last runs.
func (q *Requests) List(ctx context.Context, who access.Caller) ([]api.TimerInfo, error) {
	ts, err := q.cfg.Timers.List(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.TimerInfo{}
	for _, t := range ts {
		if !access.Visible(who, t.Owner) {
			continue
		}
		info, err := q.info(ctx, t, 10)
		if err != nil {
			return nil, err
		}
		info.Runs = nil
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Next, out[j].Next
		if a.IsZero() != b.IsZero() {
			return b.IsZero()
		}
		if !a.Equal(b) {
			return a.Before(b)
		}
		return out[i].Timer.Name < out[j].Timer.Name
	})
	return out, nil
}

// Status returns a timer with its newest ticks and their runs.
func (q *Requests) Status(ctx context.Context, t Timer) (api.TimerInfo, error) {
	return q.info(ctx, t, statusRuns)
}

func (q *Requests) info(ctx context.Context, t Timer, n int64) (api.TimerInfo, error) {
	ticks, err := q.cfg.Timers.Ticks(ctx, t.Name, n)
	if err != nil {
		return api.TimerInfo{}, err
	}
	t.Source = nil
	info := api.TimerInfo{Timer: t}
	var last Last
	for _, tk := range ticks {
		run := api.TimerRun{Tick: tk.Tick}
		if tk.State == Started {
			if p, _, err := q.cfg.Procs.Find(ctx, tk.GPID); err == nil {
				run.State, run.Ended, run.ExitCode = p.State, p.Ended, p.ExitCode
			}
			if info.Last == nil {
				r := run
				info.Last = &r
				last.RunStarted, last.RunEnded = tk.Started, run.Ended
			}
		}
		if !tk.Manual && last.Scheduled.IsZero() {
			last.Scheduled = tk.Scheduled
		}
		info.Runs = append(info.Runs, run)
	}
	after := last.Scheduled
	if t.Updated.After(after) {
		after = t.Updated.Add(-time.Nanosecond)
	}
	if next := Next(t, after, last, q.cfg.Location); !next.IsZero() {
		info.Next = next.Add(Delay(t, next))
	}
	return info, nil
}

// Run fires the timer now (ssi timer run): a tick claimed for now, which
// the controller starts.
func (q *Requests) Run(ctx context.Context, who access.Caller, t Timer) (Tick, error) {
	now := time.Now().UTC()
	rec, err := q.cfg.Timers.Claim(ctx, q.cfg.Procs, Tick{Timer: t.Name, Scheduled: now, Due: now, Claimed: now, Manual: true, Reason: "ssi timer run by " + who.String()}, nil)
	if err != nil {
		return Tick{}, err
	}
	q.event(ctx, t, rec.GPID, "", "fired by hand (ssi timer run) by "+who.String(), who)
	return rec.Tick, nil
}

// Remove removes the timer and its ticks; runs that run go on.
func (q *Requests) Remove(ctx context.Context, who access.Caller, t Timer, rev int64) error {
	if err := q.cfg.Timers.Delete(ctx, t.Name, rev); errors.Is(err, ErrChanged) {
		return api.Errorf(api.CodeConflict, "timer %s changed meanwhile; retry", t.Name)
	} else if err != nil {
		return err
	}
	q.event(ctx, t, 0, "", "removed by "+who.String(), who)
	return nil
}

func (q *Requests) event(ctx context.Context, t Timer, gpid uint64, node, msg string, who access.Caller) {
	if q.cfg.Events != nil {
		q.cfg.Events(ctx, pidtable.Event{Kind: pidtable.EventTimer, GPID: gpid, User: t.Owner, To: node, Caller: who.String(), Reason: "timer " + t.Name + ": " + msg})
	}
}

// RunRequest is how a tick's run is run: the service's spec as ssi run
// would ask for it, with SSI_TIMER set.
func RunRequest(t Timer, tick Tick) api.RunRequest {
	s := t.Service
	env := append([]string{"SSI_TIMER=" + t.Name, "SSI_TIMER_TICK=" + tick.Scheduled.UTC().Format(time.RFC3339Nano)}, s.Env...)
	return api.RunRequest{
		Argv: s.Argv, Env: env, Workdir: s.Workdir, WorkdirExplicit: s.Workdir != "" && !s.WorkdirOptional,
		User: s.User, CPUs: s.CPUs, Memory: s.Memory, Constraints: s.Constraints, Pin: s.Pinned,
	}
}

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Event log bounds: events live about an hour (the lease they are written on
// is granted with eventTTL and replaced every eventLeaseReuse, so an event
// expires between eventTTL-eventLeaseReuse and eventTTL after it was written);
// the elected housekeeper keeps at most pidtable.MaxEvents, trimming the
// oldest every trimEvery (eventsHousekeeping).
const (
	eventTTL        = pidtable.EventTTL
	eventLeaseReuse = 5 * time.Minute
	// eventWriteTimeout bounds the writing of one event (and the read of
	// its job's owner): events are best effort.
	eventWriteTimeout = 2 * time.Second
	trimEvery         = 10 * time.Second
	// defaultEventsLimit is how many events GET /v1/events returns by default.
	defaultEventsLimit = 500
)

// eventLog writes this agent's events to etcd and to its log.
type eventLog struct {
	a *Agent

	mu      sync.Mutex
	lease   clientv3.LeaseID
	granted time.Time
	seq     uint64
	// readyLease is the lease of the last node ready event (eventpoints.go).
	readyLease int64
}

// add records ev (Time, ID and Node are filled in). Failures to write to etcd
// are logged, not returned: an event must never stop a decision.
func (l *eventLog) add(ctx context.Context, ev pidtable.Event) {
	// An event is not worth waiting for: with etcd away, the caller (a
	// migration's answer, a kill) goes on after eventWriteTimeout.
	ctx, cancel := context.WithTimeout(ctx, eventWriteTimeout)
	defer cancel()
	a := l.a
	ev.Node = a.cfg.Name
	if ev.GPID != 0 && ev.User == "" {
		// Whose job: users read the events of their own jobs only.
		if p, _, err := a.store.Get(ctx, ev.GPID); err == nil {
			ev.User = p.User
		}
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	attrs := []any{"event", ev.Kind}
	if ev.GPID != 0 {
		attrs = append(attrs, "gpid", ev.GPID)
	}
	if ev.From != "" || ev.To != "" {
		attrs = append(attrs, "from", ev.From, "to", ev.To)
	}
	if ev.Reason != "" {
		attrs = append(attrs, "reason", ev.Reason)
	}
	if ev.Gain != 0 || ev.Cost != 0 {
		attrs = append(attrs, "gain", ev.Gain, "cost", ev.Cost)
	}
	if ev.Caller != "" {
		attrs = append(attrs, "caller", ev.Caller, "count", ev.Count)
	}
	if ev.Took != 0 {
		attrs = append(attrs, "took", ev.Took, "frozen", ev.Frozen, "bytes", ev.Bytes)
	}
	if ev.Phase != "" {
		attrs = append(attrs, "phase", ev.Phase)
	}
	if ev.Kind == pidtable.EventLeader && ev.Role == "" {
		ev.Role = "balancer" // the balancer writes its own (package balancer)
	}
	a.log.Info("event", attrs...)
	a.metrics.Event(ev.Kind)

	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	ev.ID = pidtable.NewEventID(ev.Time, a.cfg.Name, l.seq)
	if l.lease == 0 || time.Since(l.granted) > eventLeaseReuse {
		g, err := a.etcd.Grant(ctx, int64(eventTTL/time.Second))
		if err != nil {
			a.log.Warn("events: grant lease", "err", err)
			return
		}
		l.lease, l.granted = g.ID, time.Now()
	}
	if err := a.store.AddEvent(ctx, ev, l.lease); err != nil {
		a.log.Warn("events: write", "err", err)
		l.lease = 0 // perhaps it expired (etcd was away): get a new one next time
		return
	}
}

// handleEvents is GET /v1/events?since=REV&gpid=N&node=NAME&type=K,K&limit=N
// [&follow=1]: the events written after etcd revision REV that match the
// filters (applied here, on the agent), the newest limit of them, as a JSON
// array whose api.HeaderRevision is the since of the next call
// (pidtable.Store.EventsMatching). With follow=1 the answer is a stream of
// JSON lines instead, one event per line: those events, then each new one as
// an etcd watch of the log delivers it, until the client goes away.
func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since int64
	if s := q.Get("since"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			a.writeError(w, r, api.Errorf(api.CodeBadRequest, "since %q: want a revision (a number from the %s header of an earlier answer)", s, api.HeaderRevision))
			return
		}
		since = n
	}
	var f pidtable.EventFilter
	if s := q.Get("gpid"); s != "" {
		g, err := strconv.ParseUint(s, 10, 64)
		if err != nil || g == 0 {
			a.writeError(w, r, api.Errorf(api.CodeBadRequest, "gpid %q: want a positive integer", s))
			return
		}
		f.GPID = g
	}
	f.Node = q.Get("node")
	kinds, err := pidtable.ParseEventKinds(q["type"])
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "type: %v", err))
		return
	}
	f.Kinds = kinds
	limit := defaultEventsLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			a.writeError(w, r, api.Errorf(api.CodeBadRequest, "limit %q: want a positive integer", s))
			return
		}
		limit = n
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	evs, rev, err := a.store.EventsMatching(r.Context(), since, f, limit)
	if err != nil {
		a.writeError(w, r, fmt.Errorf("read events: %w", err))
		return
	}
	who := access.CallerOf(r)
	evs = slices.DeleteFunc(evs, func(ev pidtable.Event) bool { return !eventVisible(who, ev) })
	if evs == nil {
		evs = []pidtable.Event{}
	}
	w.Header().Set(api.HeaderRevision, strconv.FormatInt(rev, 10))
	if !follow {
		writeJSON(w, http.StatusOK, evs)
		return
	}
	a.followEvents(w, r, evs, rev, f, who)
}

// eventVisible is the rule of who sees an event: the cluster's own events
// (nodes, leaders, config) are everyone's; a job's, and an admin action's or
// a refused request's (Caller set, User the caller), are for those who see
// that user's work (access.Visible).
func eventVisible(who access.Caller, ev pidtable.Event) bool {
	return (ev.GPID == 0 && ev.Caller == "") || access.Visible(who, ev.User)
}

// followEvents streams evs, then every event written after rev that passes
// f and who may see, as JSON lines, until the client goes away or the
// watch fails (the client then sees the stream end, and follows again from
// the last event's revision it has, or anew).
func (a *Agent) followEvents(w http.ResponseWriter, r *http.Request, evs []pidtable.Event, rev int64, f pidtable.EventFilter, who access.Caller) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	for _, ev := range evs {
		if err := enc.Encode(ev); err != nil {
			return
		}
	}
	if flusher != nil {
		flusher.Flush()
	}
	err := a.store.WatchEvents(r.Context(), rev, func(ev pidtable.Event) error {
		if !f.Match(ev) || !eventVisible(who, ev) {
			return nil
		}
		if err := enc.Encode(ev); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if err != nil && r.Context().Err() == nil {
		a.log.Warn("events: follow ended", "err", err)
	}
}

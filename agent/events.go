package agent

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Event log bounds: events live about an hour (the lease they are written on
// is granted with eventTTL and replaced every eventLeaseReuse, so an event
// expires between eventTTL-eventLeaseReuse and eventTTL after it was written),
// and at most maxEvents are kept (the oldest are trimmed every trimEvery writes).
const (
	eventTTL        = time.Hour
	eventLeaseReuse = 5 * time.Minute
	maxEvents       = 2000
	trimEvery       = 50
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
}

// add records ev (Time, ID and Node are filled in). Failures to write to etcd
// are logged, not returned: an event must never stop a decision.
func (l *eventLog) add(ctx context.Context, ev pidtable.Event) {
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
	a.log.Info("balancer", attrs...)

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
	if l.seq%trimEvery == 0 {
		if err := a.store.TrimEvents(ctx, maxEvents); err != nil {
			a.log.Warn("events: trim", "err", err)
		}
	}
}

// handleEvents is GET /v1/events?since=REV&gpid=N&limit=N: the events
// written after etcd revision REV; the answer's api.HeaderRevision is the
// since of the next call (pidtable.Store.Events).
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
	var gpid uint64
	if s := q.Get("gpid"); s != "" {
		g, err := strconv.ParseUint(s, 10, 64)
		if err != nil || g == 0 {
			a.writeError(w, r, api.Errorf(api.CodeBadRequest, "gpid %q: want a positive integer", s))
			return
		}
		gpid = g
	}
	limit := defaultEventsLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			a.writeError(w, r, api.Errorf(api.CodeBadRequest, "limit %q: want a positive integer", s))
			return
		}
		limit = n
	}
	evs, rev, err := a.store.Events(r.Context(), since, gpid, limit)
	if err != nil {
		a.writeError(w, r, fmt.Errorf("read events: %w", err))
		return
	}
	// The cluster's own events (leader, config) are everyone's; a job's, and
	// an admin action's or a refused request's (Caller set, User the
	// caller), are for those who see that user's work.
	who, seen := callerOf(r), evs[:0]
	for _, ev := range evs {
		if (ev.GPID == 0 && ev.Caller == "") || visible(who, ev.User) {
			seen = append(seen, ev)
		}
	}
	evs = seen
	if evs == nil {
		evs = []pidtable.Event{}
	}
	w.Header().Set(api.HeaderRevision, strconv.FormatInt(rev, 10))
	writeJSON(w, http.StatusOK, evs)
}

package access

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// collect is a refusalLog whose events land in a slice, on a fake clock.
func collect() (*refusalLog, *[]pidtable.Event, *time.Time, *sync.Mutex) {
	var mu sync.Mutex
	var evs []pidtable.Event
	now := time.Unix(1000, 0)
	l := newRefusalLog(func(_ context.Context, ev pidtable.Event) {
		mu.Lock()
		evs = append(evs, ev)
		mu.Unlock()
	}, func(string, ...any) {})
	l.now = func() time.Time { return now }
	return l, &evs, &now, &mu
}

// drain writes the queued events (what run does).
func drain(l *refusalLog) {
	for {
		select {
		case ev := <-l.queue:
			l.emit(context.Background(), ev)
		default:
			return
		}
	}
}

// TestRefusalsBounded: a flood of refused requests writes a bounded number
// of events, with the counts: one caller, 10000 refusals: 2 events; 1000
// callers: at most refusalCallers+1 at once and as many at the window's end.
func TestRefusalsBounded(t *testing.T) {
	l, evs, now, _ := collect()
	for i := 0; i < 10000; i++ {
		l.note("user mallory", "mallory", "403 POST /v1/users: not an admin")
		drain(l)
	}
	if len(*evs) != 1 || (*evs)[0].Count != 1 || (*evs)[0].Caller != "user mallory" || (*evs)[0].User != "mallory" {
		t.Fatalf("during the window: %+v", *evs)
	}
	*now = now.Add(refusalWindow)
	l.flush()
	drain(l)
	if len(*evs) != 2 || (*evs)[1].Count != 9999 {
		t.Fatalf("after the window: %+v", *evs)
	}

	l, evs, _, _ = collect()
	for i := 0; i < 1000; i++ {
		for j := 0; j < 5; j++ {
			l.note(fmt.Sprintf("anonymous 10.0.%d.%d", i/250, i%250), "", "401 GET /v1/procs: no client certificate")
		}
		drain(l)
	}
	if len(*evs) > refusalCallers+1 {
		t.Fatalf("%d events at once for 1000 callers: want at most %d", len(*evs), refusalCallers+1)
	}
	l.flush()
	drain(l)
	total := 0
	for _, ev := range *evs {
		total += ev.Count
	}
	if len(*evs) > 2*(refusalCallers+1) || total != 5000 {
		t.Fatalf("%d events counting %d refusals: want at most %d events counting 5000", len(*evs), total, 2*(refusalCallers+1))
	}

	// A queue that is not drained drops events rather than block a request.
	l, _, _, _ = collect()
	for i := 0; i < 10*refusalQueue; i++ {
		l.note(fmt.Sprintf("user u%d", i%refusalCallers), "", "x")
		l.flush()
	}
	if len(l.queue) != refusalQueue {
		t.Fatalf("queue holds %d, want %d", len(l.queue), refusalQueue)
	}
}

// TestAuditNotesRefusals: 401 and 403 answers are noted with their message,
// other answers are not; streaming handlers can still flush.
func TestAuditNotesRefusals(t *testing.T) {
	l, evs, _, _ := collect()
	c := &Control{refusals: l}
	h := c.Audit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/forbidden":
			writeJSON(w, http.StatusForbidden, api.Errorf(api.CodeForbidden, "ssi user revoke is an admin action"))
		case "/stream":
			if _, ok := w.(http.Flusher); !ok {
				t.Error("the audit wrapper hides http.Flusher")
			}
			w.WriteHeader(http.StatusOK)
		default:
			writeJSON(w, http.StatusNotFound, api.Errorf(api.CodeNotFound, "nothing"))
		}
	}))
	for _, p := range []string{"/forbidden", "/stream", "/missing"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	drain(l)
	if len(*evs) != 1 || (*evs)[0].Kind != pidtable.EventRefused || (*evs)[0].Reason != "403 GET /forbidden: ssi user revoke is an admin action" {
		t.Fatalf("events: %+v", *evs)
	}
}

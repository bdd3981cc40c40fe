package access

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// Refused requests are recorded as events, bounded: the first refusal of a
// caller in a window is written at once; the others of that window are
// counted and written as one event when it ends. At most refusalCallers
// callers have their own events per window, the rest share one ("others").
// So an agent writes at most 2 × (refusalCallers + 1) refusal events per
// window, whatever the flood, and the event log's own bounds (1 h, 2000
// events) hold the rest.
const (
	refusalWindow  = time.Minute
	refusalCallers = 32
	// refusalQueue bounds the events waiting to be written; beyond it they
	// are dropped (and counted in the log).
	refusalQueue = 64
)

// Audit wraps the API: it refuses the requests of revoked certificates
// (revoke.go) before anything else, and notes every 401 and 403 answered.
func (c *Control) Audit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e := c.revokedRequest(r); e != nil {
			writeJSON(w, e.Code.Status(), e)
			who, user := requestCaller(r)
			c.refusals.note(who, user, fmt.Sprintf("%d %s %s: %s", e.Code.Status(), r.Method, r.URL.Path, e.Message))
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == http.StatusUnauthorized || sw.status == http.StatusForbidden {
			var e struct {
				Message string `json:"error"`
			}
			_ = json.Unmarshal(sw.head, &e)
			who, user := requestCaller(r)
			c.refusals.note(who, user, fmt.Sprintf("%d %s %s: %s", sw.status, r.Method, r.URL.Path, e.Message))
		}
	})
}

// requestCaller names who sent r, from its verified certificate (the same
// identity Authenticate derives), or its address when it has none.
func requestCaller(r *http.Request) (who, user string) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		if id, err := pki.IdentityOf(r.TLS.VerifiedChains[0][0]); err == nil {
			if id.Node {
				return id.String(), ""
			}
			return id.String(), id.Name
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "anonymous " + host, ""
}

// statusWriter remembers the status and the start of an error's body.
type statusWriter struct {
	http.ResponseWriter
	status int
	head   []byte
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= 400 && len(w.head) < 512 {
		w.head = append(w.head, b[:min(len(b), 512-len(w.head))]...)
	}
	return w.ResponseWriter.Write(b)
}

// Flush keeps streaming answers (logs -f, a migration's progress) streaming.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// refusalLog coalesces refused requests per caller and window into events.
type refusalLog struct {
	emit func(context.Context, pidtable.Event)
	log  func(msg string, args ...any)
	now  func() time.Time

	mu      sync.Mutex
	start   time.Time // of the current window
	callers map[string]*refusals
	queue   chan pidtable.Event
	dropped int
}

type refusals struct {
	user     string
	n, noted int    // refused in this window, and already written
	last     string // the latest refusal
}

func newRefusalLog(emit func(context.Context, pidtable.Event), log func(string, ...any)) *refusalLog {
	return &refusalLog{emit: emit, log: log, now: time.Now, callers: map[string]*refusals{}, queue: make(chan pidtable.Event, refusalQueue)}
}

// note counts one refused request of caller; what says which and why.
func (l *refusalLog) note(caller, user string, what string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.start.IsZero() {
		l.start = l.now()
	}
	c, ok := l.callers[caller]
	if !ok {
		if len(l.callers) >= refusalCallers {
			caller, user = "others", ""
			c = l.callers[caller]
		}
		if c == nil {
			c = &refusals{user: user}
			l.callers[caller] = c
		}
	}
	c.n++
	c.last = what
	if c.noted == 0 {
		c.noted = c.n
		l.enqueue(pidtable.Event{Kind: pidtable.EventRefused, Caller: caller, User: c.user, Count: 1, Reason: what})
	}
}

func (l *refusalLog) enqueue(ev pidtable.Event) {
	select {
	case l.queue <- ev:
	default:
		l.dropped++
	}
}

// flush ends the window: one event per caller for the refusals not yet
// written.
func (l *refusalLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	win := l.now().Sub(l.start).Round(time.Second)
	for caller, c := range l.callers {
		if more := c.n - c.noted; more > 0 {
			l.enqueue(pidtable.Event{Kind: pidtable.EventRefused, Caller: caller, User: c.user, Count: more,
				Reason: fmt.Sprintf("%d more refused in %s; the latest: %s", more, win, c.last)})
		}
	}
	if l.dropped > 0 {
		l.log("refused requests: events dropped (queue full)", "dropped", l.dropped)
		l.dropped = 0
	}
	l.callers = map[string]*refusals{}
	l.start = time.Time{}
}

// run writes the queued events and closes a window every refusalWindow,
// until ctx ends.
func (l *refusalLog) run(ctx context.Context) {
	t := time.NewTicker(refusalWindow)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.flush()
		case ev := <-l.queue:
			l.emit(ctx, ev)
		}
	}
}

package dashboard

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/internal/etcdtest"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestLoginLinks: a login link works once, not after LoginTTL; a session
// ends after SessionTTL, and with the revocation of the certificate that
// opened it; the API behind the dashboard sees the session's user.
func TestLoginLinks(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	revoked := map[string]bool{}
	var mu sync.Mutex
	s := New(Config{Node: "node1", Etcd: etcdtest.Client(t), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), TLS: true, Now: clk.now,
		Revoked: func(serial string) error {
			mu.Lock()
			defer mu.Unlock()
			if revoked[serial] {
				return errors.New("revoked")
			}
			return nil
		}})
	var seen access.Caller
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = access.CallerOf(r)
		_, _ = io.WriteString(w, r.URL.Path)
	})
	h := s.Handler(api)
	get := func(path, cookie string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "https://node1:7070"+path, nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	login := func(serial string) string {
		tok, _, err := s.NewLogin(ctx, access.Caller{User: "alice"}, serial)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	if _, _, err := s.NewLogin(ctx, access.Caller{Node: "node2"}, ""); err == nil {
		t.Errorf("a node certificate got a login link")
	}
	tok := login("01")
	rec := get("/ui/login?t="+tok, "")
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("login: HTTP %d %s", rec.Code, rec.Body)
	}
	cookie := strings.Split(rec.Header().Get("Set-Cookie"), ";")[0]
	if rec := get("/ui/login?t="+tok, ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("the same link again: HTTP %d; want 401", rec.Code)
	}
	if rec := get("/ui/api/v1/procs", cookie); rec.Code != http.StatusOK || rec.Body.String() != "/v1/procs" || seen.User != "alice" || seen.Admin {
		t.Errorf("GET /ui/api/v1/procs: HTTP %d %q as %v; want /v1/procs as user alice", rec.Code, rec.Body, seen)
	}

	stale := login("02")
	clk.add(LoginTTL + time.Second)
	if rec := get("/ui/login?t="+stale, ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("a link opened after %s: HTTP %d; want 401", LoginTTL, rec.Code)
	}

	mu.Lock()
	revoked["01"] = true
	mu.Unlock()
	if rec := get("/ui/api/v1/nodes", cookie); rec.Code != http.StatusUnauthorized {
		t.Errorf("a session of a revoked certificate: HTTP %d; want 401", rec.Code)
	}
	mu.Lock()
	revoked["01"] = false
	mu.Unlock()
	clk.add(SessionTTL)
	if rec := get("/ui/api/v1/nodes", cookie); rec.Code != http.StatusUnauthorized {
		t.Errorf("a session after %s: HTTP %d; want 401", SessionTTL, rec.Code)
	}
	if rec := get("/ui/", ""); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "ssi dashboard") {
		t.Errorf("GET /ui/ without a session: HTTP %d; want the login page", rec.Code)
	}
}

// TestRelay: a request the API answers with a redirect to another agent is
// relayed to that agent's /ui/api with the session's cookie, and that agent
// decides on the session itself; a second redirect is not relayed again.
func TestRelay(t *testing.T) {
	ctx := context.Background()
	ec := etcdtest.Client(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	newServer := func(name string, api http.Handler) (*Server, *httptest.Server) {
		s := New(Config{Node: name, Etcd: ec, Log: log, Relay: http.DefaultTransport})
		return s, httptest.NewServer(s.Handler(api))
	}
	var seenAtB access.Caller
	var b *httptest.Server
	_, b = newServer("node2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenAtB = access.CallerOf(r)
		if r.URL.Query().Get("again") != "" {
			http.Redirect(w, r, b.URL+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		body, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body))
	}))
	defer b.Close()
	sa, a := newServer("node1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, b.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer a.Close()

	tok, _, err := sa.NewLogin(ctx, access.Caller{User: "alice"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Get(a.URL + "/ui/login?t=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookie := strings.Split(resp.Header.Get("Set-Cookie"), ";")[0]
	send := func(path string) (int, string, string) {
		req, _ := http.NewRequest("POST", a.URL+path, strings.NewReader(`{"node":"node3"}`))
		req.Header.Set("Cookie", cookie)
		req.Header.Set(headerBrowser, "1")
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
	}
	status, body, ct := send("/ui/api/v1/procs/7/migrate")
	if status != http.StatusOK || body != `POST /v1/procs/7/migrate {"node":"node3"}` || ct != "application/x-ndjson" || seenAtB.User != "alice" {
		t.Errorf("relayed migrate: HTTP %d %q (%s) as %v; want node2's answer as alice", status, body, ct, seenAtB)
	}
	if status, body, _ := send("/ui/api/v1/procs/7/migrate?again=1"); status != http.StatusConflict {
		t.Errorf("a relayed request redirected again: HTTP %d %q; want 409", status, body)
	}
}

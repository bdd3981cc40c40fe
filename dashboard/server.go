package dashboard

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
)

//go:embed assets
var assets embed.FS

// Prefix is the path every dashboard URL starts with.
const Prefix = "/ui/"

const (
	cookieName = "ssi_session"
	// headerBrowser must be on every request that changes something
	// (migrate, signal): a cross-site form cannot set it, and a cross-site
	// script cannot without a CORS preflight the agent never grants.
	headerBrowser = "X-Ssi-Dashboard"
	// headerRelayed marks a request relayed by another agent (relay):
	// it is not relayed again.
	headerRelayed = "X-Ssi-Dashboard-Relayed"
	// maxBody bounds what the browser sends (a migrate's or signal's JSON).
	maxBody = 64 << 10
)

// apiRoutes are the agent's API routes the browser may reach, under
// /ui/api: what the page reads and the two actions it offers. Everything
// else (tokens, users, nodes' lifecycle, agent-to-agent steps) is not
// reachable with a session cookie, whatever the user's role.
var apiRoutes = []string{
	"GET /v1/nodes",
	"GET /v1/procs",
	"GET /v1/procs/{gpid}",
	"GET /v1/procs/{gpid}/logs",
	"GET /v1/events",
	"GET /v1/balancer",
	"POST /v1/procs/{gpid}/migrate",
	"POST /v1/procs/{gpid}/signal",
}

// Config is what the dashboard needs of its agent.
type Config struct {
	// Node is the agent's node name (shown on the page).
	Node string
	// Etcd holds the logins and sessions.
	Etcd *clientv3.Client
	Log  *slog.Logger
	// TLS says the agent serves HTTPS: cookies are Secure. False with
	// --insecure (plain HTTP, where a Secure cookie would never be sent).
	TLS bool
	// Relay carries a request to another agent's /ui/api (the agent's
	// transport to its peers).
	Relay http.RoundTripper
	// Revoked returns why the certificate of serial may not be used any
	// more (ssi user revoke), or nil.
	Revoked func(serial string) error
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Server serves the dashboard of one agent.
type Server struct {
	cfg Config
	s   *sessions
}

// New returns the dashboard of cfg's agent.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, s: &sessions{etcd: cfg.Etcd, now: cfg.Now, cache: map[string]cached{}}}
}

// NewLogin makes a login link's token for who, an authenticated user (the
// caller of POST /v1/dashboard/logins); serial is the certificate who
// presented ("" with --insecure). The link is Prefix + "login?t=" + token.
func (s *Server) NewLogin(ctx context.Context, who access.Caller, serial string) (string, time.Time, error) {
	if who.User == "" {
		return "", time.Time{}, api.Errorf(api.CodeForbidden, "only a user may open the dashboard, not the %s", who)
	}
	return s.s.newLogin(ctx, grant{User: who.User, Admin: who.Admin, Serial: serial})
}

// Handler serves everything under Prefix. apiMux is the agent's API routes
// with their role checks but without authentication: the dashboard
// authenticates the browser by its session cookie and calls apiMux as the
// session's user.
func (s *Server) Handler(apiMux http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/{$}", s.index)
	mux.HandleFunc("GET /ui/static/{file}", s.static)
	mux.HandleFunc("GET /ui/login", s.login)
	mux.HandleFunc("POST /ui/api/logout", s.authed(s.logout))
	mux.HandleFunc("GET /ui/api/whoami", s.authed(s.whoami))
	for _, p := range apiRoutes {
		method, path, _ := strings.Cut(p, " ")
		mux.HandleFunc(method+" /ui/api"+path, s.authed(s.forward(apiMux)))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// session returns the grant of r's session cookie, checked against the
// revocation list.
func (s *Server) session(r *http.Request) (grant, string, error) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return grant{}, "", ErrNoSession
	}
	g, err := s.s.lookup(r.Context(), c.Value)
	if err != nil {
		return grant{}, "", err
	}
	if g.Serial != "" && s.cfg.Revoked != nil {
		if err := s.cfg.Revoked(g.Serial); err != nil {
			return grant{}, "", errors.Join(ErrNoSession, err)
		}
	}
	return g, c.Value, nil
}

// index is the page for a session, the login page for anyone else.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	if _, _, err := s.session(r); err != nil {
		s.page(w, http.StatusUnauthorized, "assets/login.html")
		return
	}
	s.page(w, http.StatusOK, "assets/index.html")
}

func (s *Server) page(w http.ResponseWriter, status int, name string) {
	b, err := assets.ReadFile(name)
	if err != nil {
		http.Error(w, "dashboard: missing asset "+name, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// static serves the page's script and style sheet (no data in them).
func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	types := map[string]string{"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
	ct, ok := types[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(b)
}

// login exchanges a login link's token for a session cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	sess, g, err := s.s.redeem(r.Context(), r.URL.Query().Get("t"))
	if err != nil {
		if !errors.Is(err, ErrNoSession) {
			s.cfg.Log.Error("dashboard login failed", "err", err)
		}
		s.page(w, http.StatusUnauthorized, "assets/login.html")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: sess, Path: Prefix,
		MaxAge: int(SessionTTL / time.Second), HttpOnly: true, Secure: s.cfg.TLS, SameSite: http.SameSiteStrictMode,
	})
	s.cfg.Log.Info("dashboard session opened", "user", g.User, "admin", g.Admin, "expires", g.Expires)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ grant, sess string) {
	if err := s.s.end(r.Context(), sess); err != nil {
		writeError(w, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: s.cfg.TLS, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, g grant, _ string) {
	writeJSON(w, http.StatusOK, map[string]any{"user": g.User, "admin": g.Admin, "expires": g.Expires, "node": s.cfg.Node})
}

// authed admits a request with a valid session; a request that changes
// something must also carry headerBrowser and, if it has an Origin, come
// from this very origin.
func (s *Server) authed(next func(http.ResponseWriter, *http.Request, grant, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g, sess, err := s.session(r)
		if err != nil {
			msg := "not logged in: run ssi dashboard for a login link"
			switch {
			case !errors.Is(err, ErrNoSession):
				s.cfg.Log.Error("dashboard session check failed", "err", err)
				msg = "cannot check the session now: " + err.Error()
			case err != ErrNoSession: // revoked
				msg = strings.ReplaceAll(err.Error(), "\n", ": ")
			}
			writeError(w, api.Errorf(api.CodeUnauthenticated, "%s", msg))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if r.Header.Get(headerBrowser) == "" {
				writeError(w, api.Errorf(api.CodeForbidden, "%s %s: a dashboard request without the %s header (cross-site requests are refused)", r.Method, r.URL.Path, headerBrowser))
				return
			}
			if o := r.Header.Get("Origin"); o != "" {
				if u, err := url.Parse(o); err != nil || u.Host != r.Host {
					writeError(w, api.Errorf(api.CodeForbidden, "%s %s from origin %q, not this agent's", r.Method, r.URL.Path, o))
					return
				}
			}
		}
		next(w, r, g, sess)
	}
}

// forward hands a browser's request to the agent's API route as the
// session's user; a redirect to the job's node is relayed there.
func (s *Server) forward(apiMux http.Handler) func(http.ResponseWriter, *http.Request, grant, string) {
	return func(w http.ResponseWriter, r *http.Request, g grant, sess string) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil || len(body) > maxBody {
			writeError(w, api.Errorf(api.CodeBadRequest, "request body unreadable or over %d bytes", maxBody))
			return
		}
		in := r.Clone(access.AsCaller(r.Context(), g.caller()))
		in.URL.Path = strings.TrimPrefix(r.URL.Path, "/ui/api")
		in.URL.RawPath = ""
		in.RequestURI = in.URL.RequestURI()
		for k := range in.Header {
			// The browser's cookie and any identity header stay here.
			if strings.HasPrefix(strings.ToLower(k), "x-ssi-") || k == "Cookie" || k == "Authorization" {
				in.Header.Del(k)
			}
		}
		in.Body, in.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		cw := &catchRedirect{w: w}
		apiMux.ServeHTTP(cw, in)
		if cw.location == "" {
			return
		}
		if r.Header.Get(headerRelayed) != "" {
			writeError(w, api.Errorf(api.CodeConflict, "%s %s: this node does not serve it either (the job moved meanwhile); retry", r.Method, r.URL.Path))
			return
		}
		s.relay(w, r, cw.location, body, sess)
	}
}

// relay sends the request to the agent location names, at its /ui/api,
// with the browser's session cookie (the other agent checks it), and
// streams the answer back.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, location string, body []byte, sess string) {
	u, err := url.Parse(location)
	if err != nil {
		writeError(w, api.Errorf(api.CodeInternal, "relay to %q: %v", location, err))
		return
	}
	u.Path = "/ui/api" + u.Path
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		writeError(w, api.Errorf(api.CodeInternal, "relay to %s: %v", u.Host, err))
		return
	}
	req.AddCookie(&http.Cookie{Name: cookieName, Value: sess})
	req.Header.Set(headerBrowser, "1")
	req.Header.Set(headerRelayed, "1")
	if ct := r.Header.Get("Content-Type"); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	cl := &http.Client{Transport: s.cfg.Relay, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		writeError(w, api.Errorf(api.CodeNotReady, "relay %s %s to %s: %v", r.Method, r.URL.Path, u.Host, err))
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if k == "Content-Type" || strings.HasPrefix(k, "X-Ssi-") {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	f, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if f != nil {
				f.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// catchRedirect passes an answer through, except a redirect, which it keeps
// (location) for relay.
type catchRedirect struct {
	w        http.ResponseWriter
	location string
	wrote    bool
}

func (c *catchRedirect) Header() http.Header { return c.w.Header() }

func (c *catchRedirect) WriteHeader(code int) {
	if c.wrote {
		return
	}
	c.wrote = true
	if code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect {
		if loc := c.w.Header().Get("Location"); loc != "" {
			c.location = loc
			c.w.Header().Del("Location")
			return
		}
	}
	c.w.WriteHeader(code)
}

func (c *catchRedirect) Write(b []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	if c.location != "" {
		return len(b), nil
	}
	return c.w.Write(b)
}

func (c *catchRedirect) Flush() {
	if f, ok := c.w.(http.Flusher); ok && c.location == "" {
		f.Flush()
	}
}

func writeError(w http.ResponseWriter, err error) {
	e := api.FromError(err)
	if e == nil {
		e = api.Errorf(api.CodeInternal, "%v", err)
	}
	writeJSON(w, e.Code.Status(), e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

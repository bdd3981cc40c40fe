package agent

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/api"
)

// dashboardLogin asks for a login link as caller who and returns it.
func (f *authFixture) dashboardLogin(t *testing.T, who int) string {
	t.Helper()
	status, body := f.do(t, who, "POST", "/v1/dashboard/logins", "")
	if status != http.StatusCreated {
		t.Fatalf("POST /v1/dashboard/logins as %s: HTTP %d %s", callerNames[who], status, body)
	}
	var l api.DashboardLogin
	if err := json.Unmarshal([]byte(body), &l); err != nil || !strings.HasPrefix(l.URL, f.base+"/ui/login?t=") {
		t.Fatalf("login link %q (%v): want %s/ui/login?t=TOKEN", body, err, f.base)
	}
	return l.URL
}

// browser is a client without a certificate, with a cookie jar: a browser.
func (f *authFixture) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	anon := f.clients[anon]
	return &http.Client{Transport: anon.Transport, Jar: jar, Timeout: anon.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func send(t *testing.T, c *http.Client, method, u, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestDashboardNothingAnonymous: a client without a certificate (a browser)
// reaches no API route but health and join, by its /v1 path or under the
// dashboard's /ui/api, and sees only the login page at /ui/; a session
// cookie reaches only the dashboard's few routes, as its user.
func TestDashboardNothingAnonymous(t *testing.T) {
	f := newAuthFixture(t)
	br := f.browser(t)
	for _, rt := range f.a.routeTable() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		path = strings.NewReplacer("{gpid}", itoa(f.jobA), "{name}", "ck-a", "{id}", "x").Replace(path)
		for _, p := range []string{path, "/ui/api" + path} {
			status, body, _ := send(t, br, method, f.base+p, "{}", "X-Ssi-Dashboard", "1")
			switch {
			case strings.HasPrefix(p, "/v1/") && (rt.pattern == "GET /v1/healthz" || rt.pattern == "POST /v1/join"):
			case status == http.StatusUnauthorized, status == http.StatusNotFound, status == http.StatusMethodNotAllowed:
			default:
				t.Errorf("%s %s without a certificate or a session: HTTP %d %.200s; want 401 (or 404 outside the dashboard's routes)", method, p, status, body)
			}
			if status < 300 && strings.Contains(body, "sleep") {
				t.Errorf("%s %s leaks job data anonymously: %.200s", method, p, body)
			}
		}
	}
	status, body, _ := send(t, br, "GET", f.base+"/ui/", "")
	if status != http.StatusUnauthorized || !strings.Contains(body, "ssi dashboard") || strings.Contains(body, "app.js") {
		t.Errorf("GET /ui/ without a session: HTTP %d %.300s; want 401 and the login page", status, body)
	}
	// A forged cookie is nobody.
	u, _ := url.Parse(f.base + "/ui/")
	br.Jar.SetCookies(u, []*http.Cookie{{Name: "ssi_session", Value: "forged", Path: "/ui/"}})
	if status, body, _ := send(t, br, "GET", f.base+"/ui/api/v1/procs", ""); status != http.StatusUnauthorized {
		t.Errorf("GET /ui/api/v1/procs with a forged cookie: HTTP %d %.200s; want 401", status, body)
	}

	// alice logs in; the link works once.
	link := f.dashboardLogin(t, alice)
	status, body, hdr := send(t, br, "GET", link, "")
	if status != http.StatusSeeOther {
		t.Fatalf("GET the login link: HTTP %d %.300s; want 303 to /ui/", status, body)
	}
	sc := hdr.Get("Set-Cookie")
	for _, want := range []string{"ssi_session=", "Path=/ui/", "HttpOnly", "Secure", "SameSite=Strict", "Max-Age=43200"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q: no %s", sc, want)
		}
	}
	if status, _, _ := send(t, f.browser(t), "GET", link, ""); status != http.StatusUnauthorized {
		t.Errorf("a used login link: HTTP %d; want 401", status)
	}
	if status, body, _ := send(t, br, "GET", f.base+"/ui/", ""); status != http.StatusOK || !strings.Contains(body, "app.js") {
		t.Errorf("GET /ui/ with alice's session: HTTP %d %.200s; want the page", status, body)
	}

	// As alice: her jobs only, her job's routes only, and none of the
	// routes the dashboard does not offer, whatever the role.
	status, body, _ = send(t, br, "GET", f.base+"/ui/api/v1/procs", "")
	var procs []api.ProcInfo
	if err := json.Unmarshal([]byte(body), &procs); status != http.StatusOK || err != nil {
		t.Fatalf("GET /ui/api/v1/procs as alice: HTTP %d %.200s (%v)", status, body, err)
	}
	for _, p := range procs {
		if p.User != "alice" {
			t.Errorf("alice's session sees gpid %d of %s", p.GPID, p.User)
		}
	}
	if len(procs) == 0 {
		t.Errorf("alice's session sees none of her jobs")
	}
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/ui/api/v1/procs/" + itoa(f.jobB), "", http.StatusForbidden},
		{"GET", "/ui/api/v1/procs/" + itoa(f.jobB) + "/logs", "", http.StatusForbidden},
		{"POST", "/ui/api/v1/procs/" + itoa(f.jobB) + "/migrate", `{"node":"node2"}`, http.StatusForbidden},
		{"GET", "/ui/api/v1/procs/" + itoa(f.jobA), "", http.StatusOK},
		{"POST", "/ui/api/v1/procs/" + itoa(f.jobA) + "/migrate", "{}", http.StatusBadRequest}, // admitted: no target
		{"POST", "/ui/api/v1/procs", `{"argv":["sleep","1"]}`, http.StatusMethodNotAllowed},
		{"POST", "/ui/api/v1/dashboard/logins", "", http.StatusNotFound},
		{"GET", "/ui/api/v1/checkpoints", "", http.StatusNotFound},
		{"GET", "/ui/api/v1/metrics", "", http.StatusNotFound},
	} {
		status, body, _ := send(t, br, c.method, f.base+c.path, c.body, "X-Ssi-Dashboard", "1")
		if status != c.want {
			t.Errorf("%s %s as alice's session: HTTP %d %.200s; want %d", c.method, c.path, status, body, c.want)
		}
	}
	// A change without the dashboard's header, or from another origin: refused.
	if status, _, _ := send(t, br, "POST", f.base+"/ui/api/v1/procs/"+itoa(f.jobA)+"/migrate", "{}"); status != http.StatusForbidden {
		t.Errorf("a migrate without X-Ssi-Dashboard: HTTP %d; want 403", status)
	}
	if status, _, _ := send(t, br, "POST", f.base+"/ui/api/v1/procs/"+itoa(f.jobA)+"/migrate", "{}", "X-Ssi-Dashboard", "1", "Origin", "https://evil.example"); status != http.StatusForbidden {
		t.Errorf("a migrate from another origin: HTTP %d; want 403", status)
	}
	// The session's cookie is no certificate: the /v1 routes still refuse it.
	if status, _, _ := send(t, br, "GET", f.base+"/v1/procs", ""); status != http.StatusUnauthorized {
		t.Errorf("GET /v1/procs with a session cookie and no certificate: HTTP %d; want 401", status)
	}

	// An admin's session sees every job.
	adm := f.browser(t)
	if status, _, _ := send(t, adm, "GET", f.dashboardLogin(t, admin), ""); status != http.StatusSeeOther {
		t.Fatalf("admin login: HTTP %d", status)
	}
	_, body, _ = send(t, adm, "GET", f.base+"/ui/api/v1/procs", "")
	if !strings.Contains(body, `"user":"bob"`) {
		t.Errorf("an admin's session does not see bob's job: %.300s", body)
	}

	// Logout ends the session.
	if status, _, _ := send(t, br, "POST", f.base+"/ui/api/logout", "", "X-Ssi-Dashboard", "1"); status != http.StatusNoContent {
		t.Errorf("logout: HTTP %d", status)
	}
	if status, _, _ := send(t, br, "GET", f.base+"/ui/api/v1/nodes", ""); status != http.StatusUnauthorized {
		t.Errorf("after logout: HTTP %d; want 401", status)
	}
}

package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// artifactsDir is where the dashboard tests save their screenshots.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "ssi-e2e-artifacts", t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// newBrowser starts a headless Chromium (as root: --no-sandbox; the agents'
// certificates are of the cluster's CA, which it does not know) and returns
// a context on it; each tab made with tab has its own cookies.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("no chromium on PATH (hack/install-deps.sh installs Debian's chromium): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1400, 1100),
	)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	browser, cancelB := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelB)
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return browser
}

// tab opens a tab in a browser context of its own (its own cookie jar: a
// different browser user), for at most d.
func tab(t *testing.T, browser context.Context, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	ctx, cancel2 := context.WithTimeout(ctx, d)
	t.Cleanup(cancel2)
	return ctx
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Error(err)
	}
}

// dashboardLink runs `ssi dashboard` and returns the link it printed.
func (c *testCluster) dashboardLink(t *testing.T) string {
	t.Helper()
	r := c.ssi(t, "dashboard")
	if r.code != 0 {
		t.Fatalf("ssi dashboard: %v", r)
	}
	t.Logf("$ ssi dashboard\n%s%s", r.stdout, r.stderr)
	link := strings.TrimSpace(r.stdout)
	if !strings.Contains(link, "/ui/login?t=") {
		t.Fatalf("ssi dashboard printed %q, want a login link", link)
	}
	return link
}

// fetchStatus has the page fetch path and returns the HTTP status.
func fetchStatus(ctx context.Context, path string) (int, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`fetch(%q, {credentials: 'same-origin'}).then(r => r.status)`, path), chromedp.EvalAwaitPromise))
}

// navigate loads u in ctx's tab. Chromium aborts a load with
// ERR_NETWORK_CHANGED when an interface of the root namespace comes or goes
// (the network namespaces of other clusters on this machine): that load is
// tried again.
func navigate(ctx context.Context, u string) error {
	var err error
	for range 5 {
		if err = chromedp.Do(ctx, chromedp.Navigate(u)); err == nil || !strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
			return err
		}
		time.Sleep(300 * time.Millisecond)
	}
	return err
}

// login opens a link of `ssi dashboard` in ctx's tab and waits for the page;
// a load aborted by a network change may have used the link, so each try
// gets a new one. It returns the last link used.
func (c *testCluster) login(t *testing.T, ctx context.Context) string {
	t.Helper()
	var err error
	for range 3 {
		link := c.dashboardLink(t)
		if err = navigate(ctx, link); err == nil {
			if err = chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`body[data-ready="1"]`))); err == nil {
				return link
			}
		}
		t.Logf("log in with %s: %v; again", link, err)
	}
	t.Fatalf("log in: %v", err)
	return ""
}

// TestDashboard drives the web dashboard in a real headless Chromium: a
// browser without a session sees the login page and no job data (the JSON
// endpoints answer 401); the link of `ssi dashboard` logs in once (used
// again, it is refused); the page shows the 3 nodes and a job started with
// `ssi run -d`, follows the job's output, and dragging the job's row onto
// another node migrates it (checked with ssi ps -A); a user's session
// (ssitest1's `ssi dashboard`) lists that user's job only. The job runs on node2
// and the CLI's agent is node1: the logs and the migration are relayed.
// Screenshots: /tmp/ssi-e2e-artifacts/TestDashboard/.
func TestDashboard(t *testing.T) {
	c := need(t)
	dir := artifactsDir(t)
	gpid := c.detach(t, "--node", "node2", "--", "sh", "-c", `i=0; while :; do echo "tick $i"; i=$((i+1)); sleep 0.5; done`)
	defer c.kill(t, gpid)
	browser := newBrowser(t)
	link := c.dashboardLink(t)
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	base := u.Scheme + "://" + u.Host

	// Without a session: the login page, and 401 from every JSON endpoint.
	anon := tab(t, browser, 30*time.Second)
	if err := navigate(anon, base+"/ui/"); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(anon, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "ssi dashboard") || strings.Contains(text, "sleep") || strings.Contains(text, "tick") {
		t.Errorf("the page without a session shows %q; want only the login page", text)
	}
	screenshot(t, anon, dir, "1-no-session.png")
	for _, p := range []string{"/ui/api/v1/procs", "/ui/api/v1/nodes", "/ui/api/v1/events", fmt.Sprintf("/ui/api/v1/procs/%d/logs", gpid), "/ui/api/whoami", "/v1/procs"} {
		status, err := fetchStatus(anon, p)
		if err != nil || status != 401 {
			t.Errorf("GET %s from a browser without a session: %d (%v); want 401", p, status, err)
		}
	}

	// Log in with the link: the nodes and the job.
	ctx := tab(t, browser, 3*time.Minute)
	sel := fmt.Sprintf(`#procs tr[data-gpid="%d"]`, gpid)
	link = c.login(t, ctx)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		t.Fatalf("log in and wait for gpid %d: %v", gpid, err)
	}
	nodes, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#nodes .node').length`))
	if err != nil {
		t.Fatal(err)
	}
	if nodes != 3 {
		t.Errorf("the page shows %d nodes, want 3", nodes)
	}
	row, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(row, "node2") || !strings.Contains(row, "running") {
		t.Errorf("gpid %d's row is %q, want it running on node2", gpid, row)
	}

	// The same link again, in another browser: refused.
	again := tab(t, browser, 30*time.Second)
	if err := navigate(again, link); err != nil {
		t.Fatal(err)
	}
	if text, err = chromedp.Run(again, chromedp.Text(chromedp.CSS("body"))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "You are not logged in") || strings.Contains(text, "tick") {
		t.Errorf("a used login link shows %q; want the login page", text)
	}
	if status, err := fetchStatus(again, "/ui/api/v1/procs"); err != nil || status != 401 {
		t.Errorf("after a used login link: GET /ui/api/v1/procs %d (%v); want 401", status, err)
	}

	// The job's output, relayed from node2.
	if _, err := chromedp.Run(ctx, chromedp.Steps(chromedp.Click(chromedp.CSS(sel+" td.cmd")), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](`document.querySelector('#log').textContent.includes('tick 3')`, chromedp.WithPollingTimeout(20*time.Second))(ctx, t)
		return err
	}))); err != nil {
		title, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#logtitle').textContent + ' | ' + document.querySelector('#log').textContent`))
		t.Errorf("the log tail of gpid %d: %v (the page shows %q)", gpid, err, title)
	}
	screenshot(t, ctx, dir, "2-logged-in.png")

	// Drag the row onto node3, with the mouse (a native HTML5 drag).
	if err := chromedp.Do(ctx, chromedp.DragAndDrop(chromedp.CSS(sel+" td.cmd"), chromedp.CSS(`.node[data-node="node3"]`))); err != nil {
		t.Fatal(err)
	}
	dragged, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.dragged || ''`))
	if dragged != fmt.Sprint(gpid) {
		t.Fatalf("the mouse drag did not start an HTML5 drag of gpid %d (dragged %q)", gpid, dragged)
	}
	eventually(t, 60*time.Second, fmt.Sprintf("gpid %d on node3 (ssi ps -A)", gpid), func() error {
		if p := c.proc(t, gpid); p.Node != "node3" || p.State != "running" {
			return fmt.Errorf("gpid %d is %s on %s", gpid, p.State, p.Node)
		}
		return nil
	})
	if !strings.Contains(c.ok(t, "ps", "-A"), "node3") {
		t.Errorf("ssi ps -A does not show node3")
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`(document.querySelector('%s td.where') || {}).textContent === 'node3' && document.querySelector('#timeline .phases span') !== null`, sel),
		chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Errorf("the page does not show gpid %d on node3 with its move in the timeline: %v", gpid, err)
	}
	screenshot(t, ctx, dir, "3-after-drag.png")
	if errs, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.ssiStats.errors`)); err != nil || len(errs) > 0 {
		t.Errorf("script errors in the page: %q (%v)", errs, err)
	}

	// A user's session: their own job only, not the admin's.
	uid, gid := ensureUser(t, "ssitest1")
	cfg := c.userConfig(t, "ssitest1", uid, gid)
	as := func(args ...string) result {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return runCmd(t, c.as(cctx, cfg, uid, gid, args...))
	}
	r := as("run", "-d", "--", "sleep", "600")
	mine, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 64)
	if r.code != 0 || err != nil {
		t.Fatalf("ssitest1 run -d: %v", r)
	}
	defer c.kill(t, mine)
	r = as("dashboard")
	if r.code != 0 {
		t.Fatalf("ssitest1 dashboard: %v", r)
	}
	user := tab(t, browser, time.Minute)
	if err := navigate(user, strings.TrimSpace(r.stdout)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(user, chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#procs tr[data-gpid="%d"]`, mine)))); err != nil {
		t.Fatalf("ssitest1's page does not show gpid %d: %v", mine, err)
	}
	rows, err := chromedp.Run(user, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#procs tbody tr')].map(r => r.dataset.gpid)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0] != fmt.Sprint(mine) {
		t.Errorf("ssitest1's page lists gpids %v, want only %d (not the admin's %d)", rows, mine, gpid)
	}
	who, _ := chromedp.Run(user, chromedp.Text(chromedp.CSS("#who")))
	if !strings.HasPrefix(who, "ssitest1 @") {
		t.Errorf("ssitest1's page says %q", who)
	}
	screenshot(t, user, dir, "4-user-session.png")

	// The user ends their job from the page: select it, Send TERM.
	if err := chromedp.Do(user, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#procs tr[data-gpid="%d"] td.cmd`, mine))), chromedp.WaitVisible(chromedp.CSS("#term")), chromedp.Click(chromedp.CSS("#term"))); err != nil {
		t.Fatalf("Send TERM to gpid %d: %v", mine, err)
	}
	eventually(t, 20*time.Second, fmt.Sprintf("gpid %d ended by the page's TERM", mine), func() error {
		if p := c.proc(t, mine); !p.State.Ended() {
			return fmt.Errorf("gpid %d is %s", mine, p.State)
		}
		return nil
	})
}

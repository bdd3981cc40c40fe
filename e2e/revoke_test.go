package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/localcluster"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// configClient returns an HTTP client (keep-alive) presenting the
// certificate of a client config file.
func configClient(t *testing.T, path string) *http.Client {
	t.Helper()
	cfg, err := pki.LoadClientConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := cfg.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: conf}}
}

func configSerial(t *testing.T, path string) string {
	t.Helper()
	cfg, err := pki.LoadClientConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCert([]byte(cfg.Cert))
	if err != nil {
		t.Fatal(err)
	}
	return pki.Serial(c)
}

// TestRevokeUser: `ssi user revoke NAME` reaches every agent within a
// second (measured: from the command's return to the first refused request
// on each node, over connections opened before the revocation); the refused
// user is told when, by whom and what to do; the refusals are bounded events.
func TestRevokeUser(t *testing.T) {
	c := need(t)
	uid, gid := ensureUser(t, "ssitest5")
	cfg := c.userConfig(t, "ssitest5", uid, gid)

	// A second `user add` of the name is refused, and says how to rotate.
	if r := c.ssi(t, "user", "add", "ssitest5", "--out", filepath.Join(t.TempDir(), "again.json")); r.code != 1 || !strings.Contains(r.stderr, "user ssitest5 already has a certificate") || !strings.Contains(r.stderr, "ssi user add ssitest5 --rotate") {
		t.Fatalf("user add of an existing name: %v", r)
	}
	if out := c.ok(t, "user", "list"); !strings.Contains(out, "ssitest5") || !strings.Contains(out, configSerial(t, cfg)) {
		t.Fatalf("user list does not show ssitest5's serial:\n%s", out)
	}

	// One kept-alive connection per node, opened before the revocation.
	hc := configClient(t, cfg)
	for i := range c.Nodes {
		if code, body := call(t, hc, "GET", "https://"+c.Nodes[i].API()+"/v1/nodes", nil, nil); code != 200 {
			t.Fatalf("before the revocation, node%d: HTTP %d %s", i+1, code, body)
		}
	}

	out := c.ok(t, "user", "revoke", "ssitest5")
	returned := time.Now()
	if !strings.Contains(out, "revoked serial "+configSerial(t, cfg)) {
		t.Fatalf("user revoke printed %q", out)
	}
	delays := make([]time.Duration, len(c.Nodes))
	var wg sync.WaitGroup
	errs := make(chan error, len(c.Nodes))
	for i := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := "https://" + c.Nodes[i].API() + "/v1/nodes"
			for time.Since(returned) < 10*time.Second {
				resp, err := hc.Get(url)
				if err != nil {
					errs <- fmt.Errorf("node%d: %w", i+1, err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized {
					delays[i] = time.Since(returned)
					if !strings.Contains(string(body), "your certificate for ssitest5") || !strings.Contains(string(body), "was revoked at") || !strings.Contains(string(body), "ssi user add ssitest5 --rotate") {
						errs <- fmt.Errorf("node%d: refusal does not say why: %s", i+1, body)
					}
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
			errs <- fmt.Errorf("node%d still serves the revoked certificate after 10 s", i+1)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	var worst time.Duration
	for i, d := range delays {
		t.Logf("revocation delay: node%d refused the revoked certificate %s after `ssi user revoke` returned", i+1, d.Round(time.Millisecond))
		worst = max(worst, d)
	}
	if worst > 5*time.Second*timingSlack() {
		t.Fatalf("revocation took %s to reach every agent", worst)
	}

	// The CLI of the revoked user says so, with what to do.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := runCmd(t, c.as(ctx, cfg, uid, gid, "ps"))
	if r.code != 1 || !strings.Contains(r.stderr, "your certificate for ssitest5") || !strings.Contains(r.stderr, "was revoked at") || !strings.Contains(r.stderr, "by root") {
		t.Fatalf("revoked user's ps: %v", r)
	}

	// The admin action and the refusals are events; the refusals (hundreds
	// of requests above) are coalesced: at most one event per agent so far.
	var revokes, refusedEvents, refusedCount int
	eventually(t, 10*time.Second, "revoke and refusal events", func() error {
		revokes, refusedEvents, refusedCount = 0, 0, 0
		for _, ev := range c.allEvents(t) {
			switch {
			case ev.Kind == pidtable.EventAdmin && ev.Caller == "admin root" && strings.Contains(ev.Reason, "user revoke ssitest5"):
				revokes++
			case ev.Kind == pidtable.EventRefused && ev.Caller == "user ssitest5":
				refusedEvents++
				refusedCount += ev.Count
			}
		}
		if revokes != 1 || refusedEvents < len(c.Nodes) {
			return fmt.Errorf("%d revoke events, %d refusal events", revokes, refusedEvents)
		}
		return nil
	})
	if refusedEvents > 2*len(c.Nodes) {
		t.Fatalf("%d refusal events for one caller in one window: want at most 2 per agent", refusedEvents)
	}

	// After a revocation the name is free again.
	again := filepath.Join(t.TempDir(), "new.json")
	c.ok(t, "user", "add", "ssitest5", "--out", again)
	if code, body := call(t, configClient(t, again), "GET", "https://"+c.Nodes[1].API()+"/v1/nodes", nil, nil); code != 200 {
		t.Fatalf("new certificate after the revocation: HTTP %d %s", code, body)
	}
	c.ok(t, "user", "revoke", "ssitest5")
	_ = os.Remove(cfg) // the shared config of this user is revoked now
}

// TestRotateUser: --rotate issues a new certificate and revokes the old one;
// --serial revokes a certificate by its number.
func TestRotateUser(t *testing.T) {
	c := need(t)
	dir := t.TempDir()
	first, second := filepath.Join(dir, "1.json"), filepath.Join(dir, "2.json")
	c.ok(t, "user", "add", "ssitest7", "--out", first)
	defer c.ssi(t, "user", "revoke", "ssitest7")
	old := configClient(t, first)
	url := "https://" + c.Nodes[2].API() + "/v1/nodes"
	if code, body := call(t, old, "GET", url, nil, nil); code != 200 {
		t.Fatalf("first certificate: HTTP %d %s", code, body)
	}
	out := c.ok(t, "user", "add", "ssitest7", "--rotate", "--out", second)
	if !strings.Contains(out, "serial "+configSerial(t, second)) {
		t.Fatalf("user add --rotate printed %q", out)
	}
	eventually(t, 5*time.Second, "the rotated-out certificate refused", func() error {
		if code, body := call(t, old, "GET", url, nil, nil); code != http.StatusUnauthorized || !strings.Contains(body, "was revoked at") {
			return fmt.Errorf("HTTP %d %s", code, body)
		}
		return nil
	})
	cur := configClient(t, second)
	if code, body := call(t, cur, "GET", url, nil, nil); code != 200 {
		t.Fatalf("rotated certificate: HTTP %d %s", code, body)
	}
	c.ok(t, "user", "revoke", "--serial", strings.ToUpper(configSerial(t, second)))
	eventually(t, 5*time.Second, "the certificate revoked by serial refused", func() error {
		if code, body := call(t, cur, "GET", url, nil, nil); code != http.StatusUnauthorized {
			return fmt.Errorf("HTTP %d %s", code, body)
		}
		return nil
	})
	if r := c.ssi(t, "user", "revoke", "ssitest7"); r.code != 1 || !strings.Contains(r.stderr, "no registered certificate") {
		t.Fatalf("revoke of a user revoked by serial: %v", r)
	}
}

// TestRevokeToken: token list shows a token (never its secret), token
// revoke makes it useless for a join.
func TestRevokeToken(t *testing.T) {
	c := need(t)
	tok := strings.TrimSpace(c.ok(t, "token", "create", "--ttl", "10m"))
	parsed, err := pki.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if out := c.ok(t, "token", "list"); !strings.Contains(out, parsed.ID) || strings.Contains(out, parsed.Secret) {
		t.Fatalf("token list:\n%s", out)
	}
	c.ok(t, "token", "revoke", parsed.ID)
	if out := c.ok(t, "token", "list"); strings.Contains(out, parsed.ID) {
		t.Fatalf("token list after revoke:\n%s", out)
	}
	if r := c.ssi(t, "token", "revoke", parsed.ID); r.code != 1 || !strings.Contains(r.stderr, "no join token") {
		t.Fatalf("second revoke: %v", r)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	key, _ := pki.NewKey()
	csr, _ := pki.NewCSR(key, "node:evil")
	body, _ := json.Marshal(map[string]any{"token": tok, "name": "evil", "addrs": []string{"127.0.0.1"}, "csr": string(csr)})
	if code, msg := call(t, hc, "POST", "https://"+c.Nodes[0].API()+"/v1/join", body, nil); code != http.StatusForbidden || !strings.Contains(msg, "unknown or expired join token "+parsed.ID) {
		t.Fatalf("join with a revoked token: HTTP %d %s", code, msg)
	}
	// Users may not list or revoke tokens.
	uc := c.userClient(t, "ssitest8", false)
	if code, msg := call(t, uc, "GET", "https://"+c.Nodes[0].API()+"/v1/tokens", nil, nil); code != http.StatusForbidden || !strings.Contains(msg, "admin action") {
		t.Fatalf("user token list: HTTP %d %s", code, msg)
	}
}

// serverCert returns the certificate the agent at addr presents now.
func serverCert(addr string, conf *tls.Config) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 3 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// TestRenewNodeCerts: with --node-cert-lifetime 20s every agent renews its
// certificate (about every 13 s) without a restart, and the cluster keeps
// working across several renewals, once the first certificates have
// expired too: nodes Ready, jobs run on every node, a migration between
// two agents handshakes with renewed certificates.
func TestRenewNodeCerts(t *testing.T) {
	c := need(t)
	orig := map[string][]string{}
	for _, n := range c.Nodes {
		orig[n.Name] = c.NodeArgs[n.Name]
	}
	// restart restarts every agent with args: node1, which holds the CA and
	// issues renewals with its own lifetime, first when caFirst, else last
	// (going back from 20 s certificates, which must be renewed from node1
	// within seconds: they cannot be while it restarts, and an expired one
	// cannot rejoin).
	restart := func(args func(string) []string, caFirst bool) {
		order := append(append([]localcluster.NodeState(nil), c.Nodes[1:]...), c.Nodes[0])
		if caFirst {
			order = c.Nodes
		}
		for _, n := range order {
			c.NodeArgs[n.Name] = args(n.Name)
			c.stopAgent(t, n.Name, syscall.SIGTERM)
			c.startAgent(t, n.Name)
			if !caFirst && n.Name != c.Nodes[0].Name {
				// Back to long certificates before node1 (the CA) goes
				// down for its own restart.
				conf := c.clientTLS(t)
				eventually(t, 20*time.Second, n.Name+" presenting a long-lived certificate", func() error {
					cert, err := serverCert(n.API(), conf)
					if err != nil {
						return err
					}
					if left := time.Until(cert.NotAfter); left < time.Hour {
						return fmt.Errorf("valid %s more", left)
					}
					return nil
				})
			}
		}
		eventually(t, 30*time.Second, "every node Ready", func() error {
			for name, n := range c.nodes(t) {
				if !n.Ready {
					return fmt.Errorf("%s NotReady", name)
				}
			}
			return nil
		})
	}
	if c.NodeArgs == nil {
		c.NodeArgs = map[string][]string{}
	}
	restart(func(name string) []string {
		return append(append([]string(nil), orig[name]...), "--node-cert-lifetime", "20s")
	}, true)
	defer func() {
		// Back to the default lifetime: each agent renews at start for a year.
		restart(func(name string) []string { return orig[name] }, false)
	}()

	conf := c.clientTLS(t)
	serials := map[string]map[string]bool{}
	started := time.Now()
	gpid := c.detach(t, "--node", "node2", "--", "sleep", "600")
	defer c.kill(t, gpid)
	for time.Since(started) < 50*time.Second {
		for _, n := range c.Nodes {
			cert, err := serverCert(n.API(), conf)
			if err != nil {
				t.Fatalf("%s: handshake: %v", n.Name, err)
			}
			if left := time.Until(cert.NotAfter); left > 21*time.Second || left < 0 {
				t.Fatalf("%s presents a certificate valid for %s more: want at most 20 s", n.Name, left)
			}
			if serials[n.Name] == nil {
				serials[n.Name] = map[string]bool{}
			}
			serials[n.Name][pki.Serial(cert)] = true
		}
		for name, n := range c.nodes(t) {
			if !n.Ready {
				t.Fatalf("%s NotReady during renewals", name)
			}
		}
		time.Sleep(2 * time.Second)
	}
	for _, n := range c.Nodes {
		if len(serials[n.Name]) < 4 {
			t.Fatalf("%s presented %d certificates in 50 s: want at least 4 (renewals every ~13 s)", n.Name, len(serials[n.Name]))
		}
		t.Logf("%s: %d certificates in 50 s", n.Name, len(serials[n.Name]))
	}
	// Every certificate of the start has expired: new handshakes everywhere.
	for _, n := range c.Nodes {
		out := c.ok(t, "run", "--node", n.Name, "--", "echo", "hello from "+n.Name)
		if !strings.Contains(out, "hello from "+n.Name) {
			t.Fatalf("run on %s: %q", n.Name, out)
		}
	}
	c.ok(t, "migrate", strconv.FormatUint(gpid, 10), "node3")
	if p := c.proc(t, gpid); p.Node != "node3" || p.State != pidtable.Running {
		t.Fatalf("after the migration: %+v", p.Proc)
	}
}

// clientTLS is node1's client TLS configuration, to read the certificate an
// agent presents.
func (c *testCluster) clientTLS(t *testing.T) *tls.Config {
	t.Helper()
	n0, err := pki.LoadNode(filepath.Join(c.Nodes[0].DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	return n0.ClientTLS()
}

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// Unix accounts the tests create when absent (project prefix ssitest), and
// remove at the end of the run.
var (
	usersMu      sync.Mutex
	usersCreated []string
)

// ensureUser returns the uid and gid of the unix account name, creating it
// (no home, no login shell) when absent.
func ensureUser(t *testing.T, name string) (int, int) {
	t.Helper()
	usersMu.Lock()
	defer usersMu.Unlock()
	u, err := user.Lookup(name)
	if err != nil {
		if !strings.HasPrefix(name, "ssitest") {
			t.Fatalf("refusing to create account %q: test accounts start with ssitest", name)
		}
		out, err := exec.Command("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name).CombinedOutput()
		if err == nil {
			usersCreated = append(usersCreated, name)
		}
		// A test run beside this one may have created it meanwhile.
		var lerr error
		if u, lerr = user.Lookup(name); lerr != nil {
			// Root without a working useradd is a broken test machine: the
			// isolation and role tests must not pass by not running.
			t.Fatalf("create test account %s: useradd: %v: %s; lookup: %v", name, err, out, lerr)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// removeUsers deletes the accounts this run created.
func (c *testCluster) removeUsers() {
	usersMu.Lock()
	defer usersMu.Unlock()
	for _, name := range usersCreated {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: userdel %s: %v: %s\n", name, err, out)
		}
	}
	usersCreated = nil
}

// userConfig has the admin issue a config for ssi user name (`ssi user add`),
// owned by uid:gid so that user's CLI can read it.
func (c *testCluster) userConfig(t *testing.T, name string, uid, gid int) string {
	t.Helper()
	dir := filepath.Join(c.tmp, "users")
	_ = os.MkdirAll(dir, 0o755)
	path := filepath.Join(dir, name+".json")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	c.ok(t, "user", "add", name, "--out", path)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	return path
}

// as prepares `ssi args...` run by uid:gid with the given config.
func (c *testCluster) as(ctx context.Context, config string, uid, gid int, args ...string) *exec.Cmd {
	cmd := c.cmd(ctx, args...)
	cmd.Env = []string{"SSI_CONFIG=" + config, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/nonexistent"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	return cmd
}

// ca loads the cluster CA (with its key) from node1's data dir.
func (c *testCluster) ca(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.LoadCA(filepath.Join(c.Nodes[0].DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// nodeCredentials issues node name a certificate of the cluster CA into dir,
// as a join would.
func (c *testCluster) nodeCredentials(t *testing.T, dir, name string) {
	t.Helper()
	ca := c.ca(t)
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueNode(key.Public(), name, []string{"127.0.0.1"}, pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := pki.EncodeKey(key)
	if err := pki.SaveNode(dir, &pki.CA{Cert: ca.Cert, CertPEM: ca.CertPEM}, pki.EncodeCert(cert), kb); err != nil {
		t.Fatal(err)
	}
}

// writeConfig writes a client config to a new file and returns its path.
func (c *testCluster) writeConfig(t *testing.T, cfg *pki.ClientConfig) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := cfg.Write(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUsersIsolated: a job started by a non-root user runs with that uid; a
// second user can neither see it nor signal, migrate, wait for or read it;
// its owner and the admin can.
func TestUsersIsolated(t *testing.T) {
	c := need(t)
	uid1, gid1 := ensureUser(t, "ssitest1")
	uid2, gid2 := ensureUser(t, "ssitest2")
	cfg1 := c.userConfig(t, "ssitest1", uid1, gid1)
	cfg2 := c.userConfig(t, "ssitest2", uid2, gid2)
	run := func(cfg string, uid, gid int, args ...string) result {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return runCmd(t, c.as(ctx, cfg, uid, gid, args...))
	}
	r := run(cfg1, uid1, gid1, "run", "-d", "--node", "node2", "--", "sleep", "600")
	gpid, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 64)
	if r.code != 0 || err != nil {
		t.Fatalf("ssitest1 run -d: %v", r)
	}
	defer c.kill(t, gpid)
	g := strconv.FormatUint(gpid, 10)

	// The job runs as ssitest1, as /proc on the host says.
	var pid int
	eventually(t, 10*time.Second, "job running", func() error {
		p := c.proc(t, gpid)
		if pid = p.PID; pid == 0 || p.User != "ssitest1" {
			return fmt.Errorf("record %+v", p.Proc)
		}
		return nil
	})
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	wantUID := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", uid1, uid1, uid1, uid1)
	if !strings.Contains(string(status), wantUID) || !strings.Contains(string(status), fmt.Sprintf("Gid:\t%d\t", gid1)) {
		t.Fatalf("job's /proc/%d/status does not show uid %d gid %d:\n%s", pid, uid1, gid1, status)
	}

	// The second user is refused everything on it, with exit 1 and a reason.
	for _, args := range [][]string{{"kill", g}, {"kill", "-s", "KILL", g}, {"migrate", g, "node3"}, {"logs", g}, {"wait", g}, {"checkpoint", "--leave-running", g}} {
		r := run(cfg2, uid2, gid2, args...)
		if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("gpid %d is not yours: user ssitest2 may see and act on its own jobs only", gpid)) {
			t.Errorf("ssitest2 %v: %v", args, r)
		}
	}
	r = run(cfg2, uid2, gid2, "ps", "-A", "--exited", "-o", "json")
	if r.code != 0 || strings.Contains(r.stdout, `"ssitest1"`) {
		t.Errorf("ssitest2 ps -A shows ssitest1's job: %v", r)
	}
	if r := run(cfg2, uid2, gid2, "run", "--user", "ssitest1", "--", "true"); r.code != 1 || !strings.Contains(r.stderr, "only admins may run jobs as another user") {
		t.Errorf("ssitest2 --user ssitest1: %v", r)
	}
	if r := run(cfg2, uid2, gid2, "token", "create"); r.code != 1 || !strings.Contains(r.stderr, "ssi token create is an admin action") {
		t.Errorf("ssitest2 token create: %v", r)
	}
	if r := run(cfg2, uid2, gid2, "user", "add", "ssitest2", "--admin", "--out", filepath.Join(c.tmp, "users", "escalate.json")); r.code != 1 || !strings.Contains(r.stderr, "ssi user add is an admin action") {
		t.Errorf("ssitest2 user add --admin: %v", r)
	}
	// An admin's checkpoint: ssitest2 neither sees, restores nor removes it.
	ck := "e2e-sec-" + g
	root := c.detach(t, "--node", "node3", "--", "sleep", "600")
	defer c.kill(t, root)
	c.ok(t, "checkpoint", "--leave-running", "--name", ck, strconv.FormatUint(root, 10))
	defer c.ssi(t, "checkpoints", "rm", ck)
	if r := run(cfg2, uid2, gid2, "checkpoints"); r.code != 0 || strings.Contains(r.stdout, ck) {
		t.Errorf("ssitest2 checkpoints lists ssitest1's: %v", r)
	}
	for _, args := range [][]string{{"restore", "--as-new", ck}, {"checkpoints", "rm", ck}} {
		r := run(cfg2, uid2, gid2, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "is not yours") {
			t.Errorf("ssitest2 %v: %v", args, r)
		}
	}
	if p := c.proc(t, gpid); p.State != "running" || p.Node != "node2" {
		t.Fatalf("refused requests changed the job: %+v", p.Proc)
	}

	// Its owner sees it in a plain ps and can signal it.
	r = run(cfg1, uid1, gid1, "ps", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf(`"gpid": %d,`, gpid)) {
		t.Fatalf("ssitest1 ps: %v", r)
	}
	if r := run(cfg1, uid1, gid1, "kill", g); r.code != 0 {
		t.Fatalf("ssitest1 kill own job: %v", r)
	}
	if r := run(cfg1, uid1, gid1, "wait", g); r.code != 143 {
		t.Fatalf("ssitest1 wait: %v", r)
	}
}

// TestBadCredentialsRefused: no certificate, an expired one, one from
// another CA: each refused, exit 1, with a message saying why.
func TestBadCredentialsRefused(t *testing.T) {
	c := need(t)
	ca := c.ca(t)
	good, err := pki.NewUserConfig(ca, c.Endpoint(), "root", true, pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := pki.NewUserConfig(ca, c.Endpoint(), "root", true, pki.Validity{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewCA("elsewhere")
	foreign, err := pki.NewUserConfig(other, c.Endpoint(), "root", true, pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	foreign.CA = good.CA // trusts our agents, but presents another CA's certificate
	noCert := *good
	noCert.Cert, noCert.Key = "", ""
	cases := []struct {
		name string
		cfg  *pki.ClientConfig
		want string
	}{
		{"expired certificate", expired, "expired at"},
		{"certificate of another CA", foreign, "TLS handshake with the ssi agent failed at https://" + c.Endpoint()},
		{"no certificate in the config", &noCert, `"cert"/"key"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var path string
			if tc.cfg == &noCert {
				path = filepath.Join(t.TempDir(), "c.json")
				b, _ := json.Marshal(tc.cfg)
				_ = os.WriteFile(path, b, 0o600)
			} else {
				path = c.writeConfig(t, tc.cfg)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := c.cmd(ctx, "run", "--", "touch", "/tmp/ssi-e2e-must-not-exist")
			cmd.Env = append(cmd.Env, "SSI_CONFIG="+path)
			r := runCmd(t, cmd)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("%v; want exit 1 and %q", r, tc.want)
			}
			if tc.name == "expired certificate" && !strings.Contains(r.stderr, "expired") {
				t.Fatalf("expired: message does not say so: %v", r)
			}
		})
	}
	if _, err := os.Stat("/tmp/ssi-e2e-must-not-exist"); err == nil {
		t.Fatal("a refused client ran a job")
	}

	// Below the CLI: a TLS client with no certificate gets 401 and a reason.
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}}}
	resp, err := cl.Post("https://"+c.Endpoint()+"/v1/procs", "application/json", strings.NewReader(`{"argv":["true"]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "no client certificate") {
		t.Fatalf("no client certificate: HTTP %d %s", resp.StatusCode, body)
	}
}

// TestPlainClientsRefused: the agent's API port and etcd's client and peer
// ports speak only TLS: a plain HTTP client gets no answer but an error, and
// the CLI's --insecure mode is refused.
func TestPlainClientsRefused(t *testing.T) {
	c := need(t)
	n1 := c.Nodes[0].IP
	for _, port := range []string{"7070", "2379", "2380"} {
		addr := net.JoinHostPort(n1, port)
		t.Run(port, func(t *testing.T) {
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
			resp, err := hc.Get("http://" + addr + "/v1/nodes")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest || bytes.Contains(body, []byte("node1")) {
					t.Fatalf("plain HTTP to %s: HTTP %d %q", addr, resp.StatusCode, body)
				}
			}
			// Raw bytes: the server answers with no data of the cluster.
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = conn.Write([]byte("GET /v3/kv/range HTTP/1.0\r\n\r\n"))
			b, _ := io.ReadAll(conn)
			if bytes.Contains(b, []byte("200 OK")) || bytes.Contains(b, []byte("ssi")) {
				t.Fatalf("raw plain request to %s answered: %q", addr, b)
			}
		})
	}
	// etcd admits node certificates only: a user's, admin or not, signed by
	// the same CA, is refused.
	etcdURL := "https://" + net.JoinHostPort(n1, "2379") + "/version"
	if resp, err := c.nodeClient(t, 1).Get(etcdURL); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("etcd with a node certificate: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, admin := range []bool{false, true} {
		resp, err := c.userClient(t, "root", admin).Get(etcdURL)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("etcd answered a user certificate (admin %v): HTTP %d", admin, resp.StatusCode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := c.cmd(ctx, "--insecure", "--endpoint", "http://"+c.Endpoint(), "nodes")
	r := runCmd(t, cmd)
	if r.code != 1 || !strings.Contains(r.stderr, "WARNING: --insecure") || !strings.Contains(r.stderr, "HTTP 400") {
		t.Fatalf("--insecure CLI against a TLS agent: %v", r)
	}
}

// nodeClient returns an HTTP client presenting node's certificate.
func (c *testCluster) nodeClient(t *testing.T, node int) *http.Client {
	t.Helper()
	n, err := pki.LoadNode(filepath.Join(c.Nodes[node].DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: n.ClientTLS()}}
}

// userClient returns an HTTP client presenting a fresh certificate of user name.
func (c *testCluster) userClient(t *testing.T, name string, admin bool) *http.Client {
	t.Helper()
	cfg, err := pki.NewUserConfig(c.ca(t), c.Endpoint(), name, admin, pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	conf, err := cfg.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
}

func call(t *testing.T, hc *http.Client, method, url string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRoleBoundaries: node certificates do node things only, user
// certificates user things only, and hostile requests change nothing.
func TestRoleBoundaries(t *testing.T) {
	c := need(t)
	base := func(node int) string { return "https://" + c.Nodes[node].API() }
	node2 := c.nodeClient(t, 1)
	node1 := c.nodeClient(t, 0)
	uid, gid := ensureUser(t, "ssitest1")
	_, _ = uid, gid
	alice := c.userClient(t, "ssitest1", false)
	victim := c.detach(t, "--node", "node1", "--", "sleep", "600")
	defer c.kill(t, victim)
	before := c.proc(t, victim)
	v := strconv.FormatUint(victim, 10)

	big := bytes.Repeat([]byte("a"), 300<<10)
	cases := []struct {
		name   string
		hc     *http.Client
		method string
		url    string
		body   string
		hdr    map[string]string
		status int
		want   string
	}{
		{"node cert runs a job", node2, "POST", base(0) + "/v1/procs", `{"argv":["id"]}`, nil, 403, "a node certificate (node2) cannot run jobs"},
		{"node cert kills a job", node2, "POST", base(0) + "/v1/procs/" + v + "/signal", `{"signal":"KILL"}`, nil, 403, "a node certificate (node2) cannot act on jobs"},
		{"node cert acts for a user", node2, "POST", base(0) + "/v1/procs/" + v + "/signal", `{"signal":"KILL"}`, map[string]string{"X-Ssi-On-Behalf-Of": "root", "X-Ssi-Admin": "1"}, 403, "a node certificate (node2) cannot act for a user"},
		{"node cert runs a job for a user", node2, "POST", base(0) + "/v1/procs", `{"argv":["id"]}`, map[string]string{"X-Ssi-On-Behalf-Of": "ssitest1"}, 403, "cannot act for a user"},
		{"user cert fetches checkpoint images", alice, "GET", base(0) + "/v1/checkpoints/x/images", "", nil, 403, "only agents (node certificates)"},
		{"user cert calls a migration step", alice, "POST", base(2) + "/v1/migrations/" + v + "/prepare", `{}`, nil, 403, "only agents (node certificates) may call migration steps"},
		{"user cert streams images", alice, "PUT", base(2) + "/v1/migrations/" + v + "/images", `x`, nil, 403, "only agents (node certificates) may call migration steps"},
		{"user asserts another user", alice, "POST", base(0) + "/v1/procs/" + v + "/signal", `{"signal":"KILL"}`, map[string]string{"X-Ssi-On-Behalf-Of": "root", "X-Ssi-Admin": "1"}, 403, "is set by agents only"},
		{"user poses as a forwarding agent", alice, "POST", base(0) + "/v1/procs", `{"argv":["id"]}`, map[string]string{"X-Ssi-Forwarded-By": "node1"}, 403, "is set by agents only"},
		{"prepare for a gpid the sender does not own", node2, "POST", base(2) + "/v1/migrations/" + v + "/prepare", fmt.Sprintf(`{"id":"x","proc":{"gpid":%d,"node":"node2","epoch":%d},"spec":{"gpid":%d}}`, victim, before.Epoch, victim), nil, 403, "from node node2, which does not own it (node1 does)"},
		{"replayed prepare (stale migration id) from the owner", node1, "POST", base(2) + "/v1/migrations/" + v + "/prepare", fmt.Sprintf(`{"id":"old","proc":{"gpid":%d,"node":"node1","epoch":%d},"spec":{"gpid":%d}}`, victim, before.Epoch, victim), nil, 409, "names no migration old to node3 (replayed or stale request)"},
		{"images for a migration never prepared", node1, "PUT", base(2) + "/v1/migrations/" + v + "/images", "x", map[string]string{"X-Ssi-Migration": "x"}, 409, "no prepared migration x"},
		{"restore of a migration never prepared", node1, "POST", base(2) + "/v1/migrations/" + v + "/restore", `{"id":"x"}`, nil, 409, "no prepared migration x"},
		{"images from a node that does not own the job", node2, "PUT", base(2) + "/v1/migrations/" + v + "/images", "x", map[string]string{"X-Ssi-Migration": "x"}, 403, "images of gpid " + v + " from node node2, which does not own it (node1 does)"},
		{"restore from a node that does not own the job", node2, "POST", base(2) + "/v1/migrations/" + v + "/restore", `{"id":"x"}`, nil, 403, "restore of gpid " + v + " from node node2, which does not own it (node1 does)"},
		{"unknown field", alice, "POST", base(0) + "/v1/procs", `{"argv":["id"],"privileged":true}`, nil, 400, `unknown field \"privileged\"`},
		{"malformed body", alice, "POST", base(0) + "/v1/procs", `{"argv":`, nil, 400, "malformed request body"},
		{"trailing data", alice, "POST", base(0) + "/v1/procs", `{"argv":["id"]} {"argv":["x"]}`, nil, 400, "trailing data"},
		{"oversized body", alice, "POST", base(0) + "/v1/procs", `{"argv":["` + strings.Repeat("a", 2<<20) + `"]}`, nil, 400, "at most 1048576"},
		{"argv too large", alice, "POST", base(0) + "/v1/procs", `{"argv":["echo","` + string(big) + `"]}`, nil, 400, "argv and env are"},
		{"too many args", alice, "POST", base(0) + "/v1/procs", `{"argv":["echo"` + strings.Repeat(`,"a"`, 5000) + `]}`, nil, 400, "at most 4096"},
		{"NUL in argv", alice, "POST", base(0) + "/v1/procs", `{"argv":["echo","a\u0000b"]}`, nil, 400, "NUL byte"},
		{"join with a forged token", &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}, "POST", base(0) + "/v1/join", fmt.Sprintf(`{"token":"K10%s::abcdef.%s","name":"evil","csr":""}`, c.ca(t).Hash(), strings.Repeat("0", 32)), nil, 403, "unknown or expired join token abcdef"},
		{"join with another cluster's token", &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}, "POST", base(0) + "/v1/join", fmt.Sprintf(`{"token":"K10%s::abcdef.%s","name":"evil","csr":""}`, strings.Repeat("1", 64), strings.Repeat("0", 32)), nil, 403, "token is for another cluster"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := call(t, tc.hc, tc.method, tc.url, []byte(tc.body), tc.hdr)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("HTTP %d %.300s; want %d and %q", status, body, tc.status, tc.want)
			}
		})
	}
	after := c.proc(t, victim)
	if after.State != "running" || after.Node != before.Node || after.Epoch != before.Epoch || after.PID != before.PID {
		t.Fatalf("hostile requests changed the job: before %+v after %+v", before.Proc, after.Proc)
	}
	for _, n := range c.procsOf(t, "ssitest1") {
		if n > victim {
			t.Errorf("a refused request started job %d", n)
		}
	}
}

// procsOf lists the gpids of user's jobs.
func (c *testCluster) procsOf(t *testing.T, user string) []uint64 {
	var out []uint64
	for _, p := range c.ps(t) {
		if p.User == user {
			out = append(out, p.GPID)
		}
	}
	return out
}

// TestJoinRefused: an agent with a bad token does not start, and says why.
func TestJoinRefused(t *testing.T) {
	c := need(t)
	hash := c.ca(t).Hash()
	cases := []struct{ token, want string }{
		{"not-a-token", "malformed join token"},
		{fmt.Sprintf("K10%s::abcdef.%s", hash, strings.Repeat("0", 32)), "unknown or expired join token abcdef"},
		{fmt.Sprintf("K10%s::abcdef.%s", strings.Repeat("2", 64), strings.Repeat("0", 32)), "does not present the cluster CA named by the token"},
	}
	for _, tc := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "ssi"), "agent", "--name", "joiner", "--listen", "127.0.0.1:0", "--advertise", "127.0.0.1:17070",
			"--data-dir", t.TempDir(), "--join", c.Endpoint(), "--token", tc.token, "--cgroup-parent", "/ssi-e2e-joiner")
		r := runCmd(t, cmd)
		cancel()
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("join with %.20q: %v; want exit 1 and %q", tc.token, r, tc.want)
		}
	}
	// Admin actions sent to a node without the CA key are forwarded to the one
	// with it, as the admin.
	out := filepath.Join(t.TempDir(), "via-node2.json")
	c.ok(t, "--endpoint", c.Nodes[1].API(), "user", "add", "ssitest3", "--out", out)
	cfg, err := pki.LoadClientConfig(out)
	if err != nil || cfg.User != "ssitest3" || cfg.Server != c.Nodes[1].API() {
		t.Fatalf("user add via node2: %+v %v", cfg, err)
	}
	if r := c.ssi(t, "user", "add", "root", "--out", filepath.Join(t.TempDir(), "r.json")); r.code != 1 || !strings.Contains(r.stderr, "user root runs jobs as uid 0: it can only be an admin") {
		t.Fatalf("user add root without --admin: %v", r)
	}
	// A real token works for the API (the cluster's own nodes 2 and 3 joined
	// that way); a user's token request is refused above (TestUsersIsolated).
	if r := c.ssi(t, "token", "create", "--ttl", "1s"); r.code != 1 || !strings.Contains(r.stderr, "--ttl 1s: want 10s to 720h0m0s") {
		t.Errorf("token with a 1s TTL: %v", r)
	}
	tok := strings.TrimSpace(c.ok(t, "token", "create", "--ttl", "1m"))
	if _, err := pki.ParseToken(tok); err != nil || !strings.Contains(tok, hash) {
		t.Fatalf("token create printed %q: %v", tok, err)
	}
}

// TestPKIFiles: node1 alone holds the CA key; keys and the admin config are
// readable by root only; a user whose unix account is missing gets an error
// naming the node and the fix.
func TestPKIFiles(t *testing.T) {
	c := need(t)
	mode := func(p string) os.FileMode {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	for i, n := range c.Nodes {
		dir := filepath.Join(n.DataDir, "pki")
		if m := mode(filepath.Join(dir, pki.NodeKeyFile)); m != 0o600 {
			t.Errorf("%s node.key mode %o", n.Name, m)
		}
		_, err := os.Stat(filepath.Join(dir, pki.CAKeyFile))
		if i == 0 && (err != nil || mode(filepath.Join(dir, pki.CAKeyFile)) != 0o600) {
			t.Errorf("node1 ca.key: %v", err)
		}
		if i > 0 && err == nil {
			t.Errorf("%s holds the CA key", n.Name)
		}
	}
	if m := mode(c.admin); m != 0o600 {
		t.Errorf("admin config mode %o", m)
	}
	ghost := c.userConfig(t, "ssitestghost", 0, 0) // no such unix account
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := c.cmd(ctx, "run", "--node", "node3", "--", "true")
	cmd.Env = append(cmd.Env, "SSI_CONFIG="+ghost)
	r := runCmd(t, cmd)
	if r.code != 1 || !strings.Contains(r.stderr, `user "ssitestghost" does not exist on node node3`) || !strings.Contains(r.stderr, "useradd ssitestghost") {
		t.Fatalf("user without a unix account: %v", r)
	}
}

// TestReplayedPrepare: a prepare is checked against the process table, not the
// sender's word. With the record naming a migration in flight (written here
// directly, as node1 would at its claim), a prepare at an older epoch (a
// replay) and one asking for another uid than the record's are refused, and
// the target creates nothing.
func TestReplayedPrepare(t *testing.T) {
	c := need(t)
	uid, gid := ensureUser(t, "ssitest1")
	cfg := c.userConfig(t, "ssitest1", uid, gid)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := runCmd(t, c.as(ctx, cfg, uid, gid, "run", "-d", "--node", "node1", "--", "sleep", "600"))
	gpid, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 64)
	if r.code != 0 || err != nil {
		t.Fatalf("run: %v", r)
	}
	defer c.kill(t, gpid)
	store := c.etcdStore(t)
	var cur pidtable.Proc
	eventually(t, 10*time.Second, "job running", func() error {
		p, _, err := store.Get(ctx, gpid)
		if err != nil || p.State != pidtable.Running {
			return fmt.Errorf("%+v %v", p, err)
		}
		cur = p
		return nil
	})
	// Claim as node1 would, then put the record back at the end.
	if _, _, err := store.Transition(ctx, gpid, pidtable.MigrationClaim, cur.Node, func(p *pidtable.Proc) error {
		p.State, p.Migration = pidtable.Migrating, &pidtable.Migration{ID: "m-now", Target: "node3", Phase: "prepare", Started: time.Now().UTC()}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, _, err := store.Transition(context.Background(), gpid, pidtable.MigrationRelease, cur.Node, func(p *pidtable.Proc) error {
			p.State, p.Migration = pidtable.Running, nil
			return nil
		}); err != nil {
			t.Error(err)
		}
	}()
	node1 := c.nodeClient(t, 0)
	url := "https://" + c.Nodes[2].API() + fmt.Sprintf("/v1/migrations/%d/prepare", gpid)
	body := func(epoch uint64, specUID int) []byte {
		b, _ := json.Marshal(map[string]any{
			"id":   "m-now",
			"proc": map[string]any{"gpid": gpid, "node": "node1", "epoch": epoch},
			"spec": map[string]any{"gpid": gpid, "uid": specUID, "gid": gid, "argv": []string{"sleep", "600"}, "workdir": "/"},
		})
		return b
	}
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		want   string
	}{
		{"older epoch", body(cur.Epoch-1, uid), 409, fmt.Sprintf("at epoch %d, but the record is at epoch %d (replayed or stale request)", cur.Epoch-1, cur.Epoch)},
		{"root instead of the job's uid", body(cur.Epoch, 0), 403, fmt.Sprintf("asks for uid 0 gid %d, but the job runs as %d:%d", gid, uid, gid)},
	} {
		status, got := call(t, node1, "POST", url, tc.body, nil)
		if status != tc.status || !strings.Contains(got, tc.want) {
			t.Errorf("%s: HTTP %d %s; want %d and %q", tc.name, status, got, tc.status, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(c.Nodes[2].DataDir, "jobs", strconv.FormatUint(gpid, 10))); err == nil {
		t.Error("a refused prepare created the job's directory on node3")
	}
}

// TestUserJobMigrates: a job that runs as a non-root user is migrated (stop
// and copy, then post-copy), checkpointed and restored under a new gpid, each
// by its owner. It carries on from where it was (one unbroken tick sequence,
// same memory digest) and still runs as its user on every node; a file it
// writes after the moves is its user's.
func TestUserJobMigrates(t *testing.T) {
	c := need(t)
	uid, gid := ensureUser(t, "ssitest1")
	cfg := c.userConfig(t, "ssitest1", uid, gid)
	run := func(args ...string) result {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return runCmd(t, c.as(ctx, cfg, uid, gid, args...))
	}
	dir := t.TempDir()
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	// The user may not be able to read the repository (a clone under /root):
	// the job runs its own copy of counter.py.
	prog, err := os.ReadFile(counterPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "counter.py"), prog, 0o644); err != nil {
		t.Fatal(err)
	}
	// The job also appends each tick to ticks.txt in its working directory.
	r := run("run", "-d", "--node", "node1", "--workdir", dir, "--", "python3", "counter.py", "8", "0.05", "100000", "ticks.txt")
	gpid, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 64)
	if r.code != 0 || err != nil {
		t.Fatalf("ssitest1 run -d: %v", r)
	}
	defer c.kill(t, gpid)
	g := strconv.FormatUint(gpid, 10)
	c.waitTicks(t, gpid, 5)

	// runsAs checks the job's process on the host: its node and its uid.
	runsAs := func(gpid uint64, node string) {
		t.Helper()
		p := c.proc(t, gpid)
		if p.State != "running" || p.Node != node || p.User != "ssitest1" || p.PID == 0 {
			t.Fatalf("gpid %d: %+v; want running on %s as ssitest1", gpid, p.Proc, node)
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", uid, uid, uid, uid); !strings.Contains(string(status), want) {
			t.Fatalf("gpid %d on %s: /proc/%d/status does not show uid %d:\n%s", gpid, node, p.PID, uid, status)
		}
	}
	for _, step := range []struct {
		node string
		args []string
	}{
		{"node2", []string{"migrate", g, "node2"}},
		{"node3", []string{"migrate", "--postcopy", g, "node3"}},
	} {
		at := c.lastTickOf(t, gpid)
		if r := run(step.args...); r.code != 0 {
			t.Fatalf("ssitest1 %v: %v", step.args, r)
		}
		runsAs(gpid, step.node)
		c.waitTicks(t, gpid, at+5)
	}
	// What the migrated job itself writes now is its user's: remove its file,
	// and the ticks it appends on node3 create it again.
	ticks := filepath.Join(dir, "ticks.txt")
	removedAt := c.lastTickOf(t, gpid) // every tick appended after the removal is this one or later
	if err := os.Remove(ticks); err != nil {
		t.Fatalf("the job's own file: %v", err)
	}
	c.waitTicks(t, gpid, removedAt+5)
	fi, err := os.Stat(ticks)
	if err != nil {
		t.Fatalf("the migrated job did not write its file again: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
		t.Fatalf("file written by the migrated job is owned by %d:%d, want ssitest1's %d:%d", st.Uid, st.Gid, uid, gid)
	}
	b, err := os.ReadFile(ticks)
	if err != nil {
		t.Fatal(err)
	}
	// Its lines are the job's own ticks, from after the removal, in order.
	first, err := strconv.Atoi(strings.Fields(string(b) + " x x")[1])
	if err != nil || first < removedAt {
		t.Fatalf("ticks.txt after the moves starts %q, want the job's ticks from %d on", firstLine(string(b)), removedAt)
	}
	if n := checkTicksFrom(t, string(b), first); n < removedAt+4 {
		t.Fatalf("ticks.txt after the moves: up to tick %d, want %d or more", n, removedAt+4)
	}

	// A checkpoint of the running job, restored beside it under a new gpid.
	ck := "e2e-user-" + g
	if r := run("checkpoint", "--leave-running", "--name", ck, g); r.code != 0 {
		t.Fatalf("ssitest1 checkpoint --leave-running: %v", r)
	}
	defer run("checkpoints", "rm", ck)
	r = run("restore", "--as-new", "--node", "node1", "-o", "json", ck)
	var restored api.CheckpointRestoreResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &restored) != nil || restored.GPID == 0 {
		t.Fatalf("ssitest1 restore --as-new: %v", r)
	}
	defer c.kill(t, restored.GPID)
	runsAs(restored.GPID, "node1")
	c.waitTicks(t, restored.GPID, c.lastTickOf(t, gpid))
	runsAs(gpid, "node3")

	// Output unbroken across both moves, same memory all along.
	if n := checkTicks(t, c.ok(t, "logs", g)); n < 15 {
		t.Fatalf("only %d ticks", n)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

package hollow

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/joblog"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// pair issues a certificate with issue and returns it with its key.
func pair(t *testing.T, issue func(pub any) (*x509.Certificate, error)) tls.Certificate {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := issue(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// TestAPI: a run placed on a hollow node (?node=) starts a fake job owned by
// the caller whose command decides its end; wait, logs (follow: the Exit
// record) and signal work on it through the API client; other users, node
// certificates and other routes are refused with reasons.
func TestAPI(t *testing.T) {
	cli := etcdtest.Client(t)
	st := pidtable.New(cli)
	stTable := st
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := start(t, ctx, cli, Config{Prefix: "a", Nodes: 2})
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	node := pair(t, func(pub any) (*x509.Certificate, error) {
		return ca.IssueNode(pub, "node2", []string{"127.0.0.1"}, pki.Validity{})
	})
	srv := httptest.NewUnstartedServer(c.APIHandler())
	srv.TLS = pki.ServerTLS(ca, node, false)
	srv.StartTLS()
	defer srv.Close()
	client := func(name string, admin bool) (*http.Client, *api.Client) {
		p := pair(t, func(pub any) (*x509.Certificate, error) { return ca.IssueUser(pub, name, admin, pki.Validity{}) })
		conf := pki.ClientTLS(ca, p)
		cl, err := api.NewTLSClient(srv.URL, conf)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}, cl
	}
	aliceHTTP, alice := client("alice", false)
	_, bob := client("bob", false)
	run := func(hc *http.Client, node string, argv ...string) (api.RunResponse, int) {
		b, _ := json.Marshal(api.RunRequest{Argv: argv})
		resp, err := hc.Post(srv.URL+"/v1/procs?node="+node+"&placement=x", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out api.RunResponse
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out, resp.StatusCode
	}

	// exit 7: ends at the next tick with status 7; the follow stream ends
	// with its Exit record.
	r, code := run(aliceHTTP, "a-2", "exit", "7")
	if code != http.StatusCreated || r.Node != "a-2" || r.GPID == 0 {
		t.Fatalf("run: %d %+v", code, r)
	}
	p, _, err := st.Get(ctx, r.GPID)
	if err != nil || p.User != "alice" || p.Node != "a-2" || p.State != pidtable.Running {
		t.Fatalf("record: %+v, %v", p, err)
	}
	body, err := alice.Logs(ctx, r.GPID, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := joblog.NewReader(body).Next()
	body.Close()
	var ex api.ExitStatus
	if err != nil || rec.Kind != joblog.Exit || json.Unmarshal(rec.Data, &ex) != nil || ex.Code != 7 {
		t.Fatalf("logs: %+v %v (%+v)", rec, err, ex)
	}
	if ex, err := alice.Wait(ctx, r.GPID); err != nil || ex.Code != 7 || ex.State != pidtable.Exited {
		t.Fatalf("wait: %+v %v", ex, err)
	}

	// sleep 60: runs until signalled; KILL ends it with 137.
	r, _ = run(aliceHTTP, "a-1", "sleep", "60")
	if _, err := bob.Wait(ctx, r.GPID); !api.IsCode(err, api.CodeForbidden) {
		t.Fatalf("bob waits on alice's job: %v", err)
	}
	if err := alice.Signal(ctx, r.GPID, "KILL"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if ex, err := alice.Wait(wctx, r.GPID); err != nil || ex.Code != 137 {
		t.Fatalf("wait after KILL: %+v %v", ex, err)
	}
	if err := alice.Signal(ctx, r.GPID, "TERM"); !api.IsCode(err, api.CodeConflict) {
		t.Fatalf("signal to an ended job: %v", err)
	}

	// Migrate (the fake checkpointer): alice moves her job from a-1 to
	// a-2 and back; the record's node and epoch follow, the event log
	// has the moves, the job still ends by a signal at its new node. Bob
	// may not move it, nor may anyone move it off the hollow nodes or
	// from a checkpoint; an agent (a node certificate) moves a job that
	// is not pinned.
	r, _ = run(aliceHTTP, "a-1", "sleep", "60")
	p0, _, err := stTable.Get(ctx, r.GPID)
	if err != nil {
		t.Fatal(err)
	}
	for i, to := range []string{"a-2", "a-1", "a-2"} {
		st, err := alice.Migrate(ctx, r.GPID, api.MigrateRequest{Node: to}, nil)
		if err != nil || st.To != to || st.FrozenMS < float64(FakeFreeze.Milliseconds()) {
			t.Fatalf("move %d to %s: %+v %v", i+1, to, st, err)
		}
		p, _, err := stTable.Get(ctx, r.GPID)
		if err != nil || p.Node != to || p.State != pidtable.Running || p.Epoch != p0.Epoch+uint64(i+1) {
			t.Fatalf("record after move %d: %+v %v", i+1, p, err)
		}
	}
	if _, err := bob.Migrate(ctx, r.GPID, api.MigrateRequest{Node: "a-1"}, nil); !api.IsCode(err, api.CodeForbidden) {
		t.Fatalf("bob moves alice's job: %v", err)
	}
	for _, req := range []api.MigrateRequest{{Node: "node1"}, {Node: "a-2"}, {Node: "a-1", FromCheckpoint: true}} {
		if _, err := alice.Migrate(ctx, r.GPID, req, nil); !api.IsCode(err, api.CodeBadRequest) {
			t.Fatalf("move %+v: %v, want a bad request", req, err)
		}
	}
	nodeCl, err := api.NewTLSClient(srv.URL, pki.ClientTLS(ca, node))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := nodeCl.Migrate(ctx, r.GPID, api.MigrateRequest{Node: "a-1"}, nil); err != nil || st.To != "a-1" {
		t.Fatalf("an agent moves the job: %+v %v", st, err)
	}
	evs, _, err := stTable.EventsMatching(ctx, 0, pidtable.EventFilter{GPID: r.GPID, Kinds: []string{pidtable.EventMigrate}}, 0)
	if err != nil || len(evs) < 4 {
		t.Fatalf("migrate events of gpid %d: %d, %v; want one per move at least (4)", r.GPID, len(evs), err)
	}
	if err := alice.Signal(ctx, r.GPID, "KILL"); err != nil {
		t.Fatal(err)
	}
	if ex, err := alice.Wait(wctx, r.GPID); err != nil || ex.Code != 137 {
		t.Fatalf("wait after KILL of a moved job: %+v %v", ex, err)
	}
	pinned, _ := json.Marshal(api.RunRequest{Argv: []string{"sleep", "60"}, Pin: true})
	resp, err := aliceHTTP.Post(srv.URL+"/v1/procs?node=a-1", "application/json", bytes.NewReader(pinned))
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if _, err := nodeCl.Migrate(ctx, r.GPID, api.MigrateRequest{Node: "a-2"}, nil); !api.IsCode(err, api.CodeForbidden) {
		t.Fatalf("an agent moves a pinned job: %v", err)
	}

	// Refusals: an unknown node, a node certificate, no certificate, a
	// route hollow nodes do not serve.
	if _, code := run(aliceHTTP, "nope", "true"); code != http.StatusNotFound {
		t.Fatalf("run on an unknown node: %d", code)
	}
	nodeHTTP := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(ca, node)}}
	if _, code := run(nodeHTTP, "a-1", "true"); code != http.StatusForbidden {
		t.Fatalf("run with a node certificate: %d", code)
	}
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	if _, code := run(anon, "a-1", "true"); code != http.StatusUnauthorized {
		t.Fatalf("run without a certificate: %d", code)
	}
	resp, err = aliceHTTP.Post(srv.URL+"/v1/migrations/1/prepare", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e api.Error
	if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(b, &e) != nil || !bytes.Contains([]byte(e.Message), []byte("hollow node")) {
		t.Fatalf("migration step on a hollow node: %d %s", resp.StatusCode, b)
	}
}

func TestFakeLife(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		life time.Duration
		code int
	}{
		{[]string{"sleep", "5"}, 5 * time.Second, 0},
		{[]string{"sleep", "0.5s"}, 500 * time.Millisecond, 0},
		{[]string{"false"}, 0, 1},
		{[]string{"exit", "3"}, 0, 3},
		{[]string{"exit", "300"}, 0, 0},
		{[]string{"sh", "-c", "sleep 9"}, 0, 0},
	} {
		if life, code := fakeLife(tc.argv); life != tc.life || code != tc.code {
			t.Errorf("%q: %s %d, want %s %d", tc.argv, life, code, tc.life, tc.code)
		}
	}
}

package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/supervisor"
	"github.com/ssi-cluster/ssi/timer"
)

// TestEveryRouteHasARole walks every route the server registers (the mux is
// built from the table, and nothing else in the package registers one) and
// fails if one has no role.
func TestEveryRouteHasARole(t *testing.T) {
	a := &Agent{}
	seen := map[string]bool{}
	var anyone []string
	for _, rt := range a.routeTable() {
		if rt.role < access.RoleAnyone || rt.role > access.RoleAdminOrNode || rt.role.String() == "nobody" {
			t.Errorf("route %q has no role (%d)", rt.pattern, rt.role)
		}
		if rt.what == "" || rt.handler == nil {
			t.Errorf("route %q: no action name or no handler", rt.pattern)
		}
		if seen[rt.pattern] {
			t.Errorf("route %q twice in the table", rt.pattern)
		}
		seen[rt.pattern] = true
		if rt.role == access.RoleAnyone {
			anyone = append(anyone, rt.pattern)
		}
		if rt.pattern == "PUT /v1/balancer" && rt.role != access.RoleAdmin {
			t.Errorf("PUT /v1/balancer (ssi balance on|off and its tuning) is %s, want an admin", rt.role)
		}
	}
	if want := []string{"GET /v1/healthz", "POST /v1/join"}; !slices.Equal(anyone, want) {
		t.Errorf("routes open to anyone: %q, want %q only", anyone, want)
	}
	// The mux is built from the table only: no other Handle or HandleFunc
	// call in the package's code.
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if ok && (sel.Sel.Name == "HandleFunc" || sel.Sel.Name == "Handle") && fd.Name.Name != "routes" {
					t.Errorf("%s: %s registers a route outside the route table (routes.go)", fset.Position(call.Pos()), fd.Name.Name)
				}
				return true
			})
		}
	}
}

// The callers of TestRouteRoles, in the order of its status columns.
const (
	anon = iota
	alice
	bob
	admin
	source  // node2: the node the records name (owner of jobR, jobM), the balancer's leader
	foreign // node3: a node no record names
	nCallers
)

var callerNames = [nCallers]string{"anonymous", "alice", "bob", "admin", "node2", "node3"}

// authFixture is a real agent (node1) over an in-process etcd, serving its
// routes over mutual TLS with the certificates of a real cluster CA, and
// records for it to decide on.
type authFixture struct {
	a       *Agent
	base    string
	clients [nCallers]*http.Client
	store   *pidtable.Store
	// Jobs: alice's on node1 (A), on node2 (R), ended (E), being migrated
	// from node2 to node1 (M), pinned (P); bob's on node1 (B).
	jobA, jobR, jobE, jobM, jobP, jobB uint64
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	ctx := context.Background()
	ec := etcdtest.Client(t)
	st := pidtable.New(ec)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	dataDir := t.TempDir()
	node, err := pki.Bootstrap(filepath.Join(dataDir, "pki"), "node1", []string{"127.0.0.1"}, addr, "root")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Name: "node1", Listen: addr, DataDir: dataDir, ShimExe: "/bin/true", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	a.node, a.etcd, a.store = node, ec, st
	a.sup = a.newSupervisor(ctx)
	a.cluster = st.NewClusterCache(ctx, false, a.log)
	a.mig = a.newMigrator(ctx)
	a.ckpts = a.newCheckpoints()
	a.nodeCtl = a.newNodes()
	a.services = a.newServiceRequests()
	a.timers = a.newTimerRequests()
	a.access = a.newAccess()

	// Nodes 1-3 registered and Ready; node2 leads the balancer.
	lease, err := ec.Grant(ctx, 120)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []string{"node1", "node2", "node3"} {
		na := addr
		if n != "node1" {
			na = "127.0.0.1:" + []string{"", "7072", "7073"}[i]
		}
		if err := st.RegisterNode(ctx, pidtable.Node{Name: n, Addr: na, CPUs: 1}); err != nil {
			t.Fatal(err)
		}
		if err := st.PublishStatus(ctx, n, pidtable.NodeStatus{Instance: n}, lease.ID); err != nil {
			t.Fatal(err)
		}
	}
	sess, err := concurrency.NewSession(ec, concurrency.WithTTL(120))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	if err := concurrency.NewElection(sess, pidtable.BalancerLeaderPrefix).Campaign(ctx, "node2"); err != nil {
		t.Fatal(err)
	}

	f := &authFixture{a: a, base: "https://" + addr, store: st}
	now := time.Now().UTC()
	mk := func(p pidtable.Proc) uint64 {
		p.Argv, p.Started = []string{"sleep", "600"}, now
		if p.State == "" {
			p.State = pidtable.Running
		}
		got, err := st.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return got.GPID
	}
	zero := 0
	f.jobA = mk(pidtable.Proc{Node: "node1", User: "alice", UID: 1000, GID: 1000})
	f.jobR = mk(pidtable.Proc{Node: "node2", User: "alice", UID: 1000, GID: 1000})
	f.jobE = mk(pidtable.Proc{Node: "node1", User: "alice", UID: 1000, GID: 1000, State: pidtable.Exited, ExitCode: &zero, Ended: now})
	f.jobM = mk(pidtable.Proc{Node: "node2", User: "alice", UID: 1000, GID: 1000, State: pidtable.Migrating, Migration: &pidtable.Migration{ID: "m1", Target: "node1", Started: now}})
	f.jobP = mk(pidtable.Proc{Node: "node1", User: "alice", UID: 1000, GID: 1000, Pinned: true})
	f.jobB = mk(pidtable.Proc{Node: "node1", User: "bob", UID: 1001, GID: 1001})
	for _, c := range []pidtable.Checkpoint{
		{Name: "ck-a", State: pidtable.Saving, GPID: f.jobA, Node: "node1", Created: now, Proc: pidtable.Proc{GPID: f.jobA, User: "alice"}},
		{Name: "ck-b", State: pidtable.Ready, GPID: f.jobB, Node: "node1", Created: now, Proc: pidtable.Proc{GPID: f.jobB, User: "bob"}},
	} {
		if _, err := st.CreateCheckpoint(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for i, ev := range []pidtable.Event{
		{Kind: pidtable.EventLeader, Node: "node2"},
		{Kind: pidtable.EventMove, GPID: f.jobA, User: "alice", From: "node1", To: "node2"},
		{Kind: pidtable.EventMoved, GPID: f.jobB, User: "bob", From: "node2", To: "node1"},
	} {
		ev.Time = now.Add(time.Duration(i) * time.Millisecond)
		ev.ID = pidtable.NewEventID(ev.Time, "node2", uint64(i))
		if err := st.AddEvent(ctx, ev, lease.ID); err != nil {
			t.Fatal(err)
		}
	}

	// The leader's last round: moves in flight of alice's and bob's jobs.
	if err := st.PublishBalancerStatus(ctx, pidtable.BalancerStatus{Leader: "node2", LastRound: now, Inflight: []pidtable.InflightMove{
		{GPID: f.jobA, User: "alice", From: "node1", To: "node2", Started: now},
		{GPID: f.jobB, User: "bob", From: "node1", To: "node3", Started: now},
	}}, lease.ID); err != nil {
		t.Fatal(err)
	}

	srv := &http.Server{Handler: a.routes(), ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)}
	go func() { _ = srv.Serve(tls.NewListener(ln, node.ServerTLS(false))) }()
	t.Cleanup(func() { srv.Close() })

	client := func(tc *tls.Config) *http.Client {
		return &http.Client{
			Timeout:       10 * time.Second,
			Transport:     &http.Transport{TLSClientConfig: tc, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	f.clients[anon] = client(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: node.CA.Pool()})
	for who, u := range map[int]struct {
		name  string
		admin bool
	}{alice: {"alice", false}, bob: {"bob", false}, admin: {"root", true}} {
		cfg, err := pki.NewUserConfig(node.CA, addr, u.name, u.admin, pki.Validity{})
		if err != nil {
			t.Fatal(err)
		}
		tc, err := cfg.TLS()
		if err != nil {
			t.Fatal(err)
		}
		f.clients[who] = client(tc)
	}
	for who, name := range map[int]string{source: "node2", foreign: "node3"} {
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := node.CA.IssueNode(key.Public(), name, []string{"127.0.0.1"}, pki.Validity{})
		if err != nil {
			t.Fatal(err)
		}
		kb, err := pki.EncodeKey(key)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(pki.EncodeCert(cert), kb)
		if err != nil {
			t.Fatal(err)
		}
		f.clients[who] = client(pki.ClientTLS(node.CA, pair))
	}
	return f
}

// do sends one request as caller who and returns the status and body.
func (f *authFixture) do(t *testing.T, who int, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.clients[who].Do(req)
	if err != nil {
		t.Fatalf("%s %s as %s: %v", method, path, callerNames[who], err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRouteRoles runs every route of the table against a real agent as an
// anonymous client, user alice (the owner of the jobs and the checkpoint
// named), user bob, an admin, node2 (the node the records name, and the
// balancer's leader) and node3 (a node no record names), and checks the exact
// status of each. Requests that are admitted are made to fail right after,
// in validation (a malformed body, an offset of -1, no target node, a
// checkpoint still being saved), so that nothing runs and no CRIU is needed:
//
//	401: refused by guard, no identity
//	403: refused by guard (or by authenticate), the role is missing
//	400 / 409 / 204 / 200: admitted; the handler answered (validation, state)
//	307: admitted, and redirected to the node that owns the job
func TestRouteRoles(t *testing.T) {
	f := newAuthFixture(t)
	// A migration of jobA that node2 prepared here (no record names node2 for
	// it), and jobP arrived here from node2 (its late resume is admitted).
	f.a.mig.ExpectIncoming(f.jobA, "m2", "node2")
	f.a.sup.Register(supervisor.Launched{GPID: f.jobP, ArrivedFrom: "node2"})
	p := func(format string, gpid uint64) string { return strings.Replace(format, "G", itoa(gpid), 1) }
	const (
		U  = http.StatusUnauthorized
		F  = http.StatusForbidden
		B  = http.StatusBadRequest
		C  = http.StatusConflict
		R  = http.StatusTemporaryRedirect
		N  = http.StatusNoContent
		K  = http.StatusOK
		NF = http.StatusNotFound
	)
	if err := timer.NewStore(f.a.store.Client()).Put(context.Background(), timer.Timer{Name: "tm-a", Owner: "alice"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.a.store.PutService(context.Background(), pidtable.Service{Name: "svc-a", Owner: "alice"}, 0); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, path, body string
		// want: anonymous, alice, bob, admin, node2, node3
		want [nCallers]int
		// why says what the admitted status proves.
		why string
	}{
		{"GET", "/v1/healthz", "", [nCallers]int{K, K, K, K, K, K}, "open"},
		{"POST", "/v1/join", "{", [nCallers]int{B, B, B, B, B, B}, "open: malformed body"},

		{"GET", "/v1/nodes", "", [nCallers]int{U, K, K, K, K, K}, "any certificate"},
		{"GET", "/v1/procs", "", [nCallers]int{U, K, K, K, K, K}, "any certificate; filtered by visible"},
		{"GET", "/v1/checkpoints", "", [nCallers]int{U, K, K, K, K, K}, "any certificate; filtered by visible"},
		{"GET", "/v1/events", "", [nCallers]int{U, K, K, K, K, K}, "any certificate; filtered by visible"},
		{"GET", "/v1/balancer", "", [nCallers]int{U, K, K, K, K, K}, "any certificate; filtered by visible"},
		{"GET", "/v1/metrics", "", [nCallers]int{U, F, F, K, K, K}, "admins and nodes: the agent's metrics"},

		{"POST", "/v1/procs", `{"argv":[]}`, [nCallers]int{U, B, B, B, F, F}, "users: 400 no command given"},
		{"POST", "/v1/dashboard/logins", "", [nCallers]int{U, http.StatusCreated, http.StatusCreated, http.StatusCreated, F, F}, "users: a dashboard login link"},

		{"GET", p("/v1/procs/G", f.jobA), "", [nCallers]int{U, K, F, K, F, F}, "owner or admin: the record"},
		{"POST", p("/v1/procs/G/signal", f.jobA), `{"signal":"NOPE"}`, [nCallers]int{U, B, F, B, F, F}, "owner or admin: 400 unknown signal"},
		{"POST", p("/v1/procs/G/signal", f.jobR), `{"signal":"TERM"}`, [nCallers]int{U, R, F, R, F, F}, "owner or admin: 307 to node2, which runs it"},
		{"GET", p("/v1/procs/G/logs?offset=-1", f.jobA), "", [nCallers]int{U, B, F, B, F, F}, "owner or admin: 400 invalid offset"},
		{"POST", p("/v1/procs/G/stdin?offset=-1", f.jobA), "x", [nCallers]int{U, B, F, B, F, F}, "owner or admin: 400 invalid offset"},
		{"POST", p("/v1/procs/G/resize", f.jobA), "{", [nCallers]int{U, B, F, B, F, F}, "owner or admin: 400 malformed body"},
		{"GET", p("/v1/procs/G/wait", f.jobE), "", [nCallers]int{U, K, F, K, F, F}, "owner or admin: the exit status"},
		{"POST", p("/v1/procs/G/checkpoint", f.jobA), "{", [nCallers]int{U, B, F, B, F, F}, "owner or admin: 400 malformed body"},
		{"POST", p("/v1/procs/G/migrate", f.jobA), "{}", [nCallers]int{U, B, F, B, B, F}, "owner, admin or the balancer's leader (node2): 400 no target node"},
		{"POST", p("/v1/procs/G/migrate", f.jobP), "{}", [nCallers]int{U, B, F, B, F, F}, "owner or admin; not the leader: the job is pinned"},

		{"POST", "/v1/checkpoints/ck-a/restore", "{}", [nCallers]int{U, C, F, C, F, F}, "checkpoint's owner or admin: 409 still being saved"},
		{"DELETE", "/v1/checkpoints/ck-a", "", [nCallers]int{U, C, F, C, F, F}, "checkpoint's owner or admin: 409 still being saved"},

		{"PUT", "/v1/balancer", "{", [nCallers]int{U, F, F, B, F, F}, "admin: 400 malformed body"},
		{"POST", "/v1/tokens", "{", [nCallers]int{U, F, F, B, F, F}, "admin: 400 malformed body"},
		{"POST", "/v1/users", "{", [nCallers]int{U, F, F, B, F, F}, "admin: 400 malformed body"},
		{"GET", "/v1/tokens", "", [nCallers]int{U, F, F, K, F, F}, "admin: the list of join tokens"},
		{"DELETE", "/v1/tokens/no!such!id", "", [nCallers]int{U, F, F, B, F, F}, "admin: 400 not a token id"},
		{"GET", "/v1/users", "", [nCallers]int{U, F, F, K, F, F}, "admin: the list of users"},
		{"POST", "/v1/revocations", "{", [nCallers]int{U, F, F, B, F, F}, "admin: 400 malformed body"},
		{"POST", "/v1/renew", "{", [nCallers]int{U, F, F, F, B, B}, "any node, for itself: 400 malformed body"},
		{"POST", "/v1/jobcreds", "{", [nCallers]int{U, F, F, F, B, B}, "any node, for a job it runs: 400 malformed body"},

		{"GET", "/v1/checkpoints/ck-a/images", "", [nCallers]int{U, F, F, F, C, C}, "any node: 409 not held here ready"},

		{"POST", "/v1/nodes/node3/cordon", "{", [nCallers]int{U, F, F, B, F, F}, "admin: 400 malformed body"},
		{"POST", "/v1/nodes/nosuch/uncordon", "", [nCallers]int{U, F, F, NF, F, F}, "admin: 404 unknown node"},
		{"PUT", "/v1/nodes/node3/labels", "{}", [nCallers]int{U, F, F, B, F, F}, "admin: 400 no label given"},
		{"POST", "/v1/nodes/node3/drain", `{"parallel":-1}`, [nCallers]int{U, F, F, B, F, F}, "admin: 400 bad --parallel"},
		{"GET", "/v1/nodes/node3/drain", "", [nCallers]int{U, F, F, NF, F, F}, "admin: 404 no drain"},
		{"DELETE", "/v1/nodes/node3/drain", "", [nCallers]int{U, F, F, C, F, F}, "admin: 409 not being drained"},
		{"DELETE", "/v1/nodes/node3", "", [nCallers]int{U, F, F, C, F, F}, "admin: 409 Ready, no --force"},
		{"POST", "/v1/drains/node9/kill/1", "", [nCallers]int{U, F, F, F, B, B}, "any node (the drain controller): 400 not this node"},
		{"POST", "/v1/checkpoints/ck-a/copy", "", [nCallers]int{U, F, F, F, F, F}, "a node, and only the checkpoint's holder (node1): 403 for node2 and node3"},
		{"POST", "/v1/failover/1?checkpoint=ck-a&dead=node9", "", [nCallers]int{U, F, F, F, F, F}, "a node, and only the failover controller's leader (none here): 403"},
		{"POST", p("/v1/handover/G?checkpoint=ck-a&epoch=1", f.jobA), "", [nCallers]int{U, F, F, F, F, F}, "a node, and only the one the job's record names (node1): 403 for node2 and node3"},

		{"GET", "/v1/services", "", [nCallers]int{U, K, K, K, K, K}, "any certificate; filtered by visible"},
		{"PUT", "/v1/services/svc-b", "{", [nCallers]int{U, B, B, B, F, F}, "users: 400 malformed body"},
		{"GET", "/v1/services/svc-a", "", [nCallers]int{U, K, F, K, F, F}, "service's owner or admin: the service"},
		{"POST", "/v1/services/svc-a/scale", `{"replicas":-1}`, [nCallers]int{U, B, F, B, F, F}, "service's owner or admin: 400 bad replicas"},
		{"DELETE", "/v1/services/nosuch", "", [nCallers]int{U, NF, NF, NF, F, F}, "service's owner or admin: 404 no such service"},
		{"POST", "/v1/services/nosuch/replicas", "", [nCallers]int{U, F, F, F, NF, NF}, "any node (the controller): 404 no such service"},
		{"POST", p("/v1/services/nosuch/replicas/G/stop", f.jobA), "", [nCallers]int{U, F, F, F, C, C}, "any node (the controller): 409 not a replica of it"},
		{"GET", "/v1/timers", "", [nCallers]int{U, K, K, K, K, K}, "any certificate; filtered by visible"},
		{"PUT", "/v1/timers/tm-b", "{", [nCallers]int{U, B, B, B, F, F}, "users: 400 malformed body"},
		{"GET", "/v1/timers/tm-a", "", [nCallers]int{U, K, F, K, F, F}, "users; the timer's owner or admin: the timer"},
		{"POST", "/v1/timers/nosuch/run", "", [nCallers]int{U, NF, NF, NF, F, F}, "users: 404 no such timer"},
		{"DELETE", "/v1/timers/nosuch", "", [nCallers]int{U, NF, NF, NF, F, F}, "users: 404 no such timer"},
		{"POST", "/v1/timers/nosuch/ticks/1/2/start", "", [nCallers]int{U, F, F, F, NF, NF}, "any node (the controller): 404 no such timer"},
		{"POST", p("/v1/timers/nosuch/runs/G/stop", f.jobA), "", [nCallers]int{U, F, F, F, NF, NF}, "any node (the controller): 404 no such timer"},

		{"POST", p("/v1/migrations/G/prepare", f.jobM), "{", [nCallers]int{U, F, F, F, B, F}, "the record's owner: 400 malformed body"},
		{"PUT", p("/v1/migrations/G/images", f.jobM), "x", [nCallers]int{U, F, F, F, C, F}, "the record's owner: 409 no prepared migration"},
		{"POST", p("/v1/migrations/G/check", f.jobM), `{"id":"m1"}`, [nCallers]int{U, F, F, F, C, F}, "the record's owner: 409 no prepared migration"},
		{"POST", p("/v1/migrations/G/restore", f.jobM), `{"id":"m1"}`, [nCallers]int{U, F, F, F, C, F}, "the record's owner: 409 no prepared migration"},
		{"POST", p("/v1/migrations/G/abort", f.jobM), `{"id":"m1"}`, [nCallers]int{U, F, F, F, N, F}, "the record's owner: 204 nothing to discard"},
		{"POST", p("/v1/migrations/G/resume", f.jobM), `{"id":"m1"}`, [nCallers]int{U, F, F, F, C, F}, "the record's owner: 409 no prepared migration"},
		{"POST", p("/v1/migrations/G/check", f.jobA), `{"id":"m2"}`, [nCallers]int{U, F, F, F, N, F}, "the node that prepared it here: 204 files checked"},
		{"POST", p("/v1/migrations/G/resume", f.jobP), `{"id":"m3"}`, [nCallers]int{U, F, F, F, N, F}, "the node the job arrived from: 204 resumed already"},
	}
	covered := map[string]bool{}
	mux := http.NewServeMux()
	for _, rt := range f.a.routeTable() {
		pat := rt.pattern
		mux.HandleFunc(pat, func(http.ResponseWriter, *http.Request) { covered[pat] = true })
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, tc.path, nil)
		if _, pat := mux.Handler(req); pat != "" {
			covered[pat] = true
		}
		for who := range nCallers {
			t.Run(tc.method+" "+tc.path+" as "+callerNames[who], func(t *testing.T) {
				status, body := f.do(t, who, tc.method, tc.path, tc.body)
				if status != tc.want[who] {
					t.Fatalf("HTTP %d %.300s; want %d (%s)", status, body, tc.want[who], tc.why)
				}
				if status == F || status == U {
					var e api.Error
					if err := json.Unmarshal([]byte(body), &e); err != nil || e.Message == "" {
						t.Fatalf("refusal without a reason: %q", body)
					}
				}
			})
		}
	}
	for _, rt := range f.a.routeTable() {
		if !covered[rt.pattern] {
			t.Errorf("route %q is not exercised by TestRouteRoles", rt.pattern)
		}
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestRefusalsSayWhy: a 403 names what was refused and why.
func TestRefusalsSayWhy(t *testing.T) {
	f := newAuthFixture(t)
	cases := []struct {
		who                int
		method, path, body string
		want               string
	}{
		{bob, "POST", "/v1/procs/" + itoa(f.jobA) + "/signal", `{"signal":"TERM"}`, "gpid " + itoa(f.jobA) + " is not yours: user bob may see and act on its own jobs only"},
		{source, "POST", "/v1/procs/" + itoa(f.jobA) + "/signal", `{"signal":"TERM"}`, "a node certificate (node2) cannot act on jobs"},
		{source, "POST", "/v1/procs", `{"argv":["id"]}`, "a node certificate (node2) cannot run jobs"},
		{alice, "PUT", "/v1/balancer", `{"enabled":true}`, "ssi balance on|off is an admin action; the user alice is not an admin"},
		{alice, "POST", "/v1/tokens", `{}`, "ssi token create is an admin action"},
		{bob, "DELETE", "/v1/checkpoints/ck-a", "", "checkpoint ck-a is not yours: user bob"},
		{alice, "GET", "/v1/checkpoints/ck-a/images", "", "only agents (node certificates) may fetch checkpoint images, not the user alice"},
		{alice, "POST", "/v1/migrations/" + itoa(f.jobM) + "/prepare", `{}`, "only agents (node certificates) may call migration steps"},
		{foreign, "POST", "/v1/migrations/" + itoa(f.jobM) + "/prepare", `{}`, "prepare of gpid " + itoa(f.jobM) + " from node node3, which does not own it (node2 does)"},
		{foreign, "POST", "/v1/procs/" + itoa(f.jobA) + "/migrate", `{}`, `node node3 may not move jobs: only the balancer's leader ("node2")`},
		{source, "POST", "/v1/procs/" + itoa(f.jobP) + "/migrate", `{}`, "is pinned"},
		{anon, "GET", "/v1/procs", "", "no client certificate"},
	}
	for _, tc := range cases {
		status, body := f.do(t, tc.who, tc.method, tc.path, tc.body)
		var e api.Error
		_ = json.Unmarshal([]byte(body), &e)
		if (status != http.StatusForbidden && status != http.StatusUnauthorized) || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s %s as %s: HTTP %d %q; want a refusal saying %q", tc.method, tc.path, callerNames[tc.who], status, e.Message, tc.want)
		}
	}
}

// TestVisibility: every listing applies the one rule (visible): a user sees
// their own jobs and what is about them, an admin everything, a node no
// user's job (the cluster's own events only).
func TestVisibility(t *testing.T) {
	f := newAuthFixture(t)
	aliceJobs := []uint64{f.jobA, f.jobR, f.jobE, f.jobM, f.jobP}
	all := append(slices.Clone(aliceJobs), f.jobB)
	want := [nCallers]struct {
		procs       []uint64
		checkpoints []string
		events      []uint64 // gpids of job events (the cluster's are everyone's)
		moves       []uint64 // recent and in flight
	}{
		alice:   {aliceJobs, []string{"ck-a"}, []uint64{f.jobA}, []uint64{f.jobA}},
		bob:     {[]uint64{f.jobB}, []string{"ck-b"}, []uint64{f.jobB}, []uint64{f.jobB}},
		admin:   {all, []string{"ck-a", "ck-b"}, []uint64{f.jobA, f.jobB}, []uint64{f.jobA, f.jobB}},
		source:  {nil, nil, nil, nil},
		foreign: {nil, nil, nil, nil},
	}
	get := func(who int, path string, v any) {
		t.Helper()
		status, body := f.do(t, who, "GET", path, "")
		if status != http.StatusOK {
			t.Fatalf("GET %s as %s: HTTP %d %s", path, callerNames[who], status, body)
		}
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	sorted := func(s []uint64) []uint64 { s = slices.Clone(s); slices.Sort(s); return s }
	for who := alice; who < nCallers; who++ {
		w := want[who]
		var procs []api.ProcInfo
		get(who, "/v1/procs?exited=1", &procs)
		var got []uint64
		for _, p := range procs {
			got = append(got, p.GPID)
		}
		if !slices.Equal(sorted(got), sorted(w.procs)) {
			t.Errorf("ps as %s: %v, want %v", callerNames[who], got, w.procs)
		}
		// ?user= narrows everyone's list, and widens no one's: alice asking
		// for bob's jobs gets none (she used to get her own).
		get(who, "/v1/procs?exited=1&user=bob", &procs)
		got = nil
		for _, p := range procs {
			got = append(got, p.GPID)
		}
		wantBob := []uint64{}
		if who == admin || who == bob {
			wantBob = []uint64{f.jobB}
		}
		if !slices.Equal(sorted(got), sorted(wantBob)) {
			t.Errorf("ps --user bob as %s: %v, want %v", callerNames[who], got, wantBob)
		}
		var cks []api.CheckpointInfo
		get(who, "/v1/checkpoints", &cks)
		var names []string
		for _, c := range cks {
			names = append(names, c.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, w.checkpoints) {
			t.Errorf("checkpoints as %s: %v, want %v", callerNames[who], names, w.checkpoints)
		}
		var evs []pidtable.Event
		get(who, "/v1/events", &evs)
		got, cluster := nil, 0
		for _, ev := range evs {
			if ev.GPID == 0 {
				cluster++
			} else {
				got = append(got, ev.GPID)
			}
		}
		if !slices.Equal(sorted(got), sorted(w.events)) || cluster != 1 {
			t.Errorf("events as %s: jobs %v and %d cluster events, want %v and 1", callerNames[who], got, cluster, w.events)
		}
		var bal api.BalanceStatus
		get(who, "/v1/balancer", &bal)
		got = nil
		for _, ev := range bal.Recent {
			got = append(got, ev.GPID)
		}
		if !slices.Equal(sorted(got), sorted(w.moves)) {
			t.Errorf("balance status as %s: recent moves of %v, want %v", callerNames[who], got, w.moves)
		}
		got = nil
		if bal.Status == nil {
			t.Fatalf("balance status as %s: no leader's status", callerNames[who])
		}
		for _, m := range bal.Status.Inflight {
			got = append(got, m.GPID)
		}
		if !slices.Equal(sorted(got), sorted(w.moves)) {
			t.Errorf("balance status as %s: moves in flight of %v, want %v", callerNames[who], got, w.moves)
		}
	}
}

// TestDrainLeaderMoves: the drain controller's leader (node3) may move, as
// itself, a job (pinned or not) of a node being drained once the drain's
// record marks it moving, and nothing else.
func TestDrainLeaderMoves(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	ec := f.a.etcd
	sess, err := concurrency.NewSession(ec, concurrency.WithTTL(120))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	if err := concurrency.NewElection(sess, pidtable.DrainLeaderPrefix).Campaign(ctx, "node3"); err != nil {
		t.Fatal(err)
	}
	// jobA, jobP: node1's; the drain of node1 marks jobA moving only.
	d := pidtable.Drain{Node: "node1", State: pidtable.DrainActive, Parallel: 1, Deadline: time.Now().Add(time.Hour), Jobs: []pidtable.DrainJob{
		{GPID: f.jobA, State: pidtable.JobMoving, To: "node2"}, {GPID: f.jobP, State: pidtable.JobPending},
	}}
	if err := f.store.StartDrain(ctx, d, 0, pidtable.NodeConfig{Cordoned: true}, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who  int
		gpid uint64
		want int
		says string
	}{
		{foreign, f.jobA, http.StatusBadRequest, ""}, // admitted; no target node in the body
		{foreign, f.jobP, http.StatusForbidden, "has not decided to move gpid"},
		{foreign, f.jobR, http.StatusForbidden, "which is not being drained"},
	} {
		status, body := f.do(t, tc.who, "POST", "/v1/procs/"+itoa(tc.gpid)+"/migrate", "{}")
		if status != tc.want || !strings.Contains(body, tc.says) {
			t.Errorf("migrate of gpid %d as %s: HTTP %d %s; want %d saying %q", tc.gpid, callerNames[tc.who], status, body, tc.want, tc.says)
		}
	}
}

package hollow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/pidtable"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// records lists the live and archived records by node.
func records(t *testing.T, st *pidtable.Store) map[string][]pidtable.Proc {
	t.Helper()
	out := map[string][]pidtable.Proc{}
	if _, err := st.ListProcs(context.Background(), pidtable.ListOptions{History: true}, func(p pidtable.Proc, _ int64) error {
		out[p.Node] = append(out[p.Node], p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func start(t *testing.T, ctx context.Context, cli *clientv3.Client, cfg Config) *Cluster {
	t.Helper()
	cfg.Etcd, cfg.Log = cli, quiet()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:1"
	}
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(""); c.Wait() })
	return c
}

// TestHollowNodesAsReal: hollow nodes are registered and Ready as real ones
// (node record, status on a lease), their fake jobs go through the real
// transitions (running, exited, archived), with gpids never handed out twice,
// and their statuses list their running jobs.
func TestHollowNodesAsReal(t *testing.T) {
	cli := etcdtest.Client(t)
	st := pidtable.New(cli)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := start(t, ctx, cli, Config{Prefix: "h", Nodes: 5, Jobs: 3, JobLife: 1500 * time.Millisecond, Retention: time.Second, Labels: map[string]string{"zone": "a"}})
	if got := strings.Join(c.Names(), ","); got != "h-1,h-2,h-3,h-4,h-5" {
		t.Fatalf("names: %s", got)
	}
	snap, err := st.NodesSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Nodes) != 5 {
		t.Fatalf("registered nodes: %+v", snap.Nodes)
	}
	for _, n := range snap.Nodes {
		if !snap.Ready(n.Name) || n.Addr != "127.0.0.1:1" || n.Labels["zone"] != "a" || n.CPUs <= 0 {
			t.Fatalf("node %+v: ready %v", n, snap.Ready(n.Name))
		}
		_, lease, live, err := st.Status(ctx, n.Name)
		if err != nil || !live || lease == 0 {
			t.Fatalf("status of %s: live %v lease %x err %v", n.Name, live, lease, err)
		}
	}
	// Every node runs its 3 jobs, lists them in its status, and its jobs
	// end, are replaced and archived.
	eventually(t, 20*time.Second, "jobs run, exit and are archived on every node", func() error {
		recs := records(t, st)
		for _, name := range c.Names() {
			var running, archived int
			for _, p := range recs[name] {
				switch {
				case p.State == pidtable.Running:
					running++
				case p.State == pidtable.Exited && !p.Archived.IsZero() && p.ExitCode != nil && *p.ExitCode == 0:
					archived++
				}
			}
			if running == 0 || archived == 0 {
				return fmt.Errorf("%s: %d running, %d archived", name, running, archived)
			}
			s, _, _, err := st.Status(ctx, name)
			if err != nil || s.Jobs == 0 || len(s.Procs) != s.Jobs {
				return fmt.Errorf("status of %s: %+v, %v", name, s, err)
			}
		}
		return nil
	})
	seen := map[uint64]string{}
	for node, ps := range records(t, st) {
		for _, p := range ps {
			if other, dup := seen[p.GPID]; dup {
				t.Fatalf("gpid %d on %s and %s", p.GPID, other, node)
			}
			seen[p.GPID] = node
			// A job being created right now has no PID yet.
			if p.Epoch != 1 || (p.State != pidtable.Starting && (p.PID == 0 || p.Started.IsZero())) {
				t.Fatalf("record %+v", p)
			}
		}
	}
	if c.Created() < 15 {
		t.Fatalf("created %d jobs, want at least 15", c.Created())
	}
}

// TestKillExpiresLease: a killed node stays Ready until its lease expires
// (within its TTL, not at once), the others stay Ready; its records stay as
// they were (it wrote nothing more).
func TestKillExpiresLease(t *testing.T) {
	cli := etcdtest.Client(t)
	st := pidtable.New(cli)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := start(t, ctx, cli, Config{Prefix: "k", Nodes: 3, Jobs: 2, LeaseTTL: 2})
	eventually(t, 10*time.Second, "jobs running", func() error {
		if c.Created() < 6 {
			return fmt.Errorf("%d created", c.Created())
		}
		return nil
	})
	killed := time.Now()
	if err := c.Kill("k-2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill("k-9"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("kill of an unknown node: %v", err)
	}
	if _, _, live, _ := st.Status(ctx, "k-2"); !live {
		t.Fatal("killed node NotReady at once: a crash must leave its lease to expire")
	}
	eventually(t, 6*time.Second, "killed node NotReady", func() error {
		if _, _, live, err := st.Status(ctx, "k-2"); live || err != nil {
			return fmt.Errorf("still Ready (err %v)", err)
		}
		return nil
	})
	took := time.Since(killed)
	// The lease had up to a TTL left when the node stopped renewing it.
	if took < time.Second || took > 2*time.Second+3*time.Second {
		t.Fatalf("NotReady %s after the kill; lease TTL 2s", took)
	}
	for _, n := range []string{"k-1", "k-3"} {
		if _, _, live, _ := st.Status(ctx, n); !live {
			t.Fatalf("%s NotReady after k-2 was killed", n)
		}
	}
	for _, p := range records(t, st)["k-2"] {
		if p.State != pidtable.Running {
			t.Fatalf("killed node's record changed: %+v", p)
		}
	}
	if info := c.Nodes()[1]; info.State != "killed" {
		t.Fatalf("info: %+v", info)
	}
}

// TestStopEndsJobsAndRevokes: a stopped node is NotReady at once and its
// jobs are recorded exited 143; a new run of the same names records the
// jobs a killed node left lost.
func TestStopEndsJobsAndRestart(t *testing.T) {
	cli := etcdtest.Client(t)
	st := pidtable.New(cli)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := start(t, ctx, cli, Config{Prefix: "s", Nodes: 2, Jobs: 2, LeaseTTL: 2})
	eventually(t, 10*time.Second, "jobs running", func() error {
		if c.Created() < 4 {
			return fmt.Errorf("%d created", c.Created())
		}
		return nil
	})
	if err := c.Stop("s-1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "stopped node NotReady at once", func() error {
		if _, _, live, _ := st.Status(ctx, "s-1"); live {
			return errors.New("still Ready")
		}
		return nil
	})
	eventually(t, 5*time.Second, "stopped node's jobs exited 143", func() error {
		for _, p := range records(t, st)["s-1"] {
			if p.State != pidtable.Exited || p.ExitCode == nil || *p.ExitCode != 143 {
				return fmt.Errorf("record %+v", p)
			}
		}
		return nil
	})
	// A second cluster may not take the live name s-2.
	if _, err := Start(ctx, Config{Etcd: cli, Log: quiet(), Prefix: "s", Nodes: 2, Addr: "x:1", LeaseTTL: 2}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("start over a live node: %v", err)
	}
	if err := c.Kill("s-2"); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	eventually(t, 6*time.Second, "killed s-2 NotReady", func() error {
		if _, _, live, _ := st.Status(ctx, "s-2"); live {
			return errors.New("still Ready")
		}
		return nil
	})
	c2 := start(t, ctx, cli, Config{Prefix: "s", Nodes: 2, Jobs: 0, LeaseTTL: 2})
	eventually(t, 5*time.Second, "the killed node's jobs recorded lost by its next run", func() error {
		n := 0
		for _, p := range records(t, st)["s-2"] {
			if p.State != pidtable.Lost {
				return fmt.Errorf("record %+v", p)
			}
			n++
		}
		if n != 2 {
			return fmt.Errorf("%d records", n)
		}
		return nil
	})
	_ = c2
}

// TestHandler: the control API lists the nodes and kills one.
func TestHandler(t *testing.T) {
	cli := etcdtest.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := start(t, ctx, cli, Config{Prefix: "c", Nodes: 2, LeaseTTL: 2})
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/nodes/c-2/kill", "", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("kill: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Post(srv.URL+"/nodes/nope/stop", "", nil)
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("stop of an unknown node: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(srv.URL + "/nodes")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"name":"c-2","state":"killed"`) || !strings.Contains(string(b), `"name":"c-1","state":"running"`) {
		t.Fatalf("nodes: %s", b)
	}
}

func TestConfigValidate(t *testing.T) {
	cli := &clientv3.Client{}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"ok", Config{Prefix: "h", Nodes: 1, Addr: "a:1"}, ""},
		{"no prefix", Config{Nodes: 1, Addr: "a:1"}, "prefix"},
		{"bad prefix", Config{Prefix: "-x", Nodes: 1, Addr: "a:1"}, "prefix"},
		{"no nodes", Config{Prefix: "h", Addr: "a:1"}, "0 nodes"},
		{"too many", Config{Prefix: "h", Nodes: 10_001, Addr: "a:1"}, "10001 nodes"},
		{"no addr", Config{Prefix: "h", Nodes: 1}, "address"},
		{"ttl", Config{Prefix: "h", Nodes: 1, Addr: "a:1", LeaseTTL: 1}, "lease TTL"},
		{"negative", Config{Prefix: "h", Nodes: 1, Addr: "a:1", JobLife: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Etcd, tc.cfg.Log = cli, quiet()
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
			if tc.want == "" && (tc.cfg.LeaseTTL != DefaultLeaseTTL || tc.cfg.Retention != DefaultRetention || tc.cfg.CPUs <= 0) {
				t.Fatalf("defaults not filled in: %+v", tc.cfg)
			}
		})
	}
}

// TestRemove: after its nodes stopped (one killed, its lease still live),
// Remove leaves no trace of them, and leaves other nodes' records alone.
func TestRemove(t *testing.T) {
	cli := etcdtest.Client(t)
	st := pidtable.New(cli)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	other := start(t, ctx, cli, Config{Prefix: "keep", Nodes: 1, Jobs: 1})
	c := start(t, ctx, cli, Config{Prefix: "r", Nodes: 3, Jobs: 2, JobLife: time.Second, Retention: time.Millisecond})
	eventually(t, 15*time.Second, "jobs created, ended and archived", func() error {
		if n := len(records(t, st)["r-1"]); n < 4 || other.Created() < 1 {
			return fmt.Errorf("%d records of r-1", n)
		}
		return nil
	})
	_ = c.Kill("r-1")
	_ = c.Stop("")
	c.Wait()
	if err := Remove(ctx, cli, c.Names()); err != nil {
		t.Fatal(err)
	}
	snap, err := st.NodesSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Nodes) != 1 || snap.Nodes[0].Name != "keep-1" || len(snap.Status) != 1 {
		t.Fatalf("nodes left: %+v, statuses %v", snap.Nodes, snap.Status)
	}
	recs := records(t, st)
	for _, name := range c.Names() {
		if len(recs[name]) > 0 {
			t.Fatalf("records of %s left: %+v", name, recs[name])
		}
	}
	if len(recs["keep-1"]) != 1 {
		t.Fatalf("records of keep-1: %+v", recs["keep-1"])
	}
}

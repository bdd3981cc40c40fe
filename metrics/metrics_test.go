package metrics

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestObservations(t *testing.T) {
	m := New(Config{
		Node:       "node1",
		JobStates:  func() map[string]int { return map[string]int{"running": 2, "exited": 1} },
		Supervised: func() int { return 2 },
	})
	m.Spawned()
	m.Spawned()
	m.Ended("exited")
	m.Migrated(Migration{Frozen: 120 * time.Millisecond, Total: 300 * time.Millisecond, ImageBytes: 1 << 20})
	m.Migrated(Migration{PostCopy: true, Frozen: 40 * time.Millisecond, Total: time.Second, ImageBytes: 100 << 10})
	m.Migrated(Migration{PostCopy: true, Err: errors.New("boom")})
	m.Checkpointed(false, 3<<20, nil)
	m.Checkpointed(true, 0, errors.New("boom"))
	m.Event("move")
	m.Event("moved")
	m.Event("config")
	m.Balanced("move")
	m.Balanced("moved")
	m.Balanced("leader") // not a decision

	if got := testutil.ToFloat64(m.spawns); got != 2 {
		t.Errorf("spawns = %g, want 2", got)
	}
	if got := testutil.ToFloat64(m.migrations.WithLabelValues(PostCopy, Failed)); got != 1 {
		t.Errorf("failed post-copy migrations = %g, want 1", got)
	}
	if got := testutil.ToFloat64(m.balancer.WithLabelValues("moved")); got != 1 {
		t.Errorf("balancer moved = %g, want 1", got)
	}
	if n := testutil.CollectAndCount(m.balancer); n != 2 {
		t.Errorf("balancer decisions: %d series, want 2 (move, moved)", n)
	}
	if got := testutil.ToFloat64(m.events.WithLabelValues("config")); got != 1 {
		t.Errorf("config events = %g, want 1", got)
	}

	want := `
# HELP ssi_jobs Jobs whose records name this node, by state (starting, running, migrating, checkpointing, and the ended ones kept for --retention: exited, lost, checkpointed).
# TYPE ssi_jobs gauge
ssi_jobs{node="node1",state="checkpointed"} 0
ssi_jobs{node="node1",state="checkpointing"} 0
ssi_jobs{node="node1",state="exited"} 1
ssi_jobs{node="node1",state="lost"} 0
ssi_jobs{node="node1",state="migrating"} 0
ssi_jobs{node="node1",state="running"} 2
ssi_jobs{node="node1",state="starting"} 0
# HELP ssi_migrations_total Migrations this node was the source of, by method and outcome.
# TYPE ssi_migrations_total counter
ssi_migrations_total{method="post-copy",node="node1",outcome="failed"} 1
ssi_migrations_total{method="post-copy",node="node1",outcome="succeeded"} 1
ssi_migrations_total{method="stop-and-copy",node="node1",outcome="succeeded"} 1
# HELP ssi_supervised_jobs Jobs this node's supervisor runs now.
# TYPE ssi_supervised_jobs gauge
ssi_supervised_jobs{node="node1"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "ssi_jobs", "ssi_migrations_total", "ssi_supervised_jobs"); err != nil {
		t.Error(err)
	}

	// Every family is there, with its node label, and the exposition
	// parses (testutil lints it).
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range fams {
		seen[f.GetName()] = true
	}
	for _, name := range []string{"ssi_spawns_total", "ssi_exits_total", "ssi_migrations_total", "ssi_migration_frozen_seconds",
		"ssi_migration_duration_seconds", "ssi_migration_image_bytes", "ssi_checkpoints_total", "ssi_checkpoint_size_bytes",
		"ssi_events_total", "ssi_balancer_decisions_total", "ssi_jobs", "ssi_supervised_jobs",
		"go_goroutines", "process_resident_memory_bytes"} {
		if !seen[name] {
			t.Errorf("family %s not gathered", name)
		}
	}
	if n := testutil.CollectAndCount(m.frozen); n != 2 {
		t.Errorf("frozen histograms: %d series, want 2 (one per method)", n)
	}
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "ssi_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

func TestEtcdInterceptor(t *testing.T) {
	m := New(Config{Node: "n"})
	ic := m.EtcdInterceptor()
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	bad := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "down")
	}
	_ = ic(context.Background(), "/etcdserverpb.KV/Range", nil, nil, nil, ok)
	_ = ic(context.Background(), "/etcdserverpb.KV/Range", nil, nil, nil, ok)
	if err := ic(context.Background(), "/etcdserverpb.KV/Txn", nil, nil, nil, bad); status.Code(err) != codes.Unavailable {
		t.Errorf("the interceptor changed the error: %v", err)
	}
	if n := testutil.CollectAndCount(m.etcd, "ssi_etcd_request_duration_seconds"); n != 2 {
		t.Errorf("etcd latency series = %d, want 2 (KV/Range, KV/Txn)", n)
	}
	if got := testutil.ToFloat64(m.etcdErrors.WithLabelValues("KV/Txn", "Unavailable")); got != 1 {
		t.Errorf("KV/Txn errors = %g, want 1", got)
	}
	for in, want := range map[string]string{"/etcdserverpb.KV/Range": "KV/Range", "/etcdserverpb.Lease/LeaseGrant": "Lease/LeaseGrant", "/x/y": "x/y"} {
		if got := shortMethod(in); got != want {
			t.Errorf("shortMethod(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.Spawned()
	m.Ended("exited")
	m.Migrated(Migration{})
	m.Checkpointed(true, 1, nil)
	m.Event("move")
	m.Balanced("move")
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	if err := m.EtcdInterceptor()(context.Background(), "/a.B/C", nil, nil, nil, ok); err != nil {
		t.Fatal(err)
	}
}

func TestHandler(t *testing.T) {
	m := New(Config{Node: "node1"})
	m.Spawned()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `ssi_spawns_total{node="node1"} 1`) {
		t.Errorf("GET /metrics: %d\n%s", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	m.Endpoint().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `ssi_spawns_total{node="node1"} 1`) {
		t.Errorf("Endpoint GET /metrics: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	m.Endpoint().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/procs", nil))
	if rec.Code != 404 {
		t.Errorf("Endpoint GET /v1/procs: %d, want 404", rec.Code)
	}
}

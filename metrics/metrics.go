package metrics

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/ssi-cluster/ssi/pidtable"
)

// Migration methods, the values of the method label of migrations.
const (
	StopAndCopy = "stop-and-copy"
	PostCopy    = "post-copy"
)

// Outcomes, the values of the outcome label.
const (
	Succeeded = "succeeded"
	Failed    = "failed"
)

// Config is what the scrape-time gauges read. Each function is called at
// every scrape and must be cheap and safe for concurrent use; a nil one
// leaves its metric out.
type Config struct {
	// Node is this node's name, a constant label of every ssi_ metric.
	Node string
	// JobStates counts the jobs whose records name this node, by state
	// (the agent's watched copy of them).
	JobStates func() map[string]int
	// Supervised is how many jobs this node's supervisor runs now.
	Supervised func() int
}

// Metrics is one agent's metrics. Make it with New.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	spawns          prometheus.Counter
	ends            *prometheus.CounterVec
	migrations      *prometheus.CounterVec
	frozen          *prometheus.HistogramVec
	total           *prometheus.HistogramVec
	imageBytes      *prometheus.HistogramVec
	checkpoints     *prometheus.CounterVec
	checkpointBytes *prometheus.HistogramVec
	events          *prometheus.CounterVec
	balancer        *prometheus.CounterVec
	etcd            *prometheus.HistogramVec
	etcdErrors      *prometheus.CounterVec
}

// Buckets. Freezes run from ~50 ms (a small job, post-copy) to tens of
// seconds (GiBs, stop-and-copy); images from KiBs to GiBs.
var (
	secondsBuckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}
	bytesBuckets   = prometheus.ExponentialBuckets(64<<10, 4, 10) // 64 KiB .. 16 GiB
	etcdBuckets    = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
)

// New returns the metrics of an agent, registered in a registry of their own.
func New(cfg Config) *Metrics {
	reg := prometheus.NewRegistry()
	r := prometheus.WrapRegistererWith(prometheus.Labels{"node": cfg.Node}, reg)
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		spawns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ssi_spawns_total", Help: "Jobs started on this node (ssi run, service replicas).",
		}),
		ends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ssi_exits_total", Help: "Jobs that ended on this node, by the state recorded (exited, lost).",
		}, []string{"state"}),
		migrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ssi_migrations_total", Help: "Migrations this node was the source of, by method and outcome.",
		}, []string{"method", "outcome"}),
		frozen: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ssi_migration_frozen_seconds", Help: "How long a migrated job was frozen, by method (succeeded migrations).", Buckets: secondsBuckets,
		}, []string{"method"}),
		total: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ssi_migration_duration_seconds", Help: "A migration's total time, from the request to the end (post-copy: the last page), by method (succeeded migrations).", Buckets: secondsBuckets,
		}, []string{"method"}),
		imageBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ssi_migration_image_bytes", Help: "Bytes of CRIU images a migration sent in the freeze, by method (succeeded migrations).", Buckets: bytesBuckets,
		}, []string{"method"}),
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ssi_checkpoints_total", Help: "Checkpoints taken on this node, by kind (manual, auto) and outcome.",
		}, []string{"kind", "outcome"}),
		checkpointBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ssi_checkpoint_size_bytes", Help: "Size of the checkpoints taken on this node (images and output), by kind.", Buckets: bytesBuckets,
		}, []string{"kind"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ssi_events_total", Help: "Events this node recorded in the cluster's event log (ssi events), by kind.",
		}, []string{"kind"}),
		balancer: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ssi_balancer_decisions_total", Help: "The balancer's decisions recorded by this node: move (started), moved, failed, rejected.",
		}, []string{"decision"}),
		etcd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ssi_etcd_request_duration_seconds", Help: "Latency of this agent's unary etcd requests, by gRPC method (KV/Range, KV/Txn, Lease/LeaseGrant...).", Buckets: etcdBuckets,
		}, []string{"method"}),
		etcdErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ssi_etcd_request_errors_total", Help: "This agent's unary etcd requests that failed, by gRPC method and status code.",
		}, []string{"method", "code"}),
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	r.MustRegister(m.spawns, m.ends, m.migrations, m.frozen, m.total, m.imageBytes,
		m.checkpoints, m.checkpointBytes, m.events, m.balancer, m.etcd, m.etcdErrors, &collector{cfg: cfg})
	return m
}

// Registry is where the metrics are registered (for tests, and to add more).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus' exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Endpoint is a whole server's handler: GET /metrics, and 404 for any other
// path (a --metrics-listen address serves nothing else).
func (m *Metrics) Endpoint() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler)
	return mux
}

// Spawned counts a job started on this node.
func (m *Metrics) Spawned() {
	if m == nil {
		return
	}
	m.spawns.Inc()
}

// Ended counts a job that ended on this node in state (exited, lost).
func (m *Metrics) Ended(state string) {
	if m == nil {
		return
	}
	m.ends.WithLabelValues(state).Inc()
}

// Migration is what a finished migration reports, from the source.
type Migration struct {
	PostCopy   bool
	Frozen     time.Duration
	Total      time.Duration
	ImageBytes int64
	Err        error
}

// Migrated counts a migration this node was the source of, and observes its
// times and image bytes if it succeeded.
func (m *Metrics) Migrated(mg Migration) {
	if m == nil {
		return
	}
	method := StopAndCopy
	if mg.PostCopy {
		method = PostCopy
	}
	if mg.Err != nil {
		m.migrations.WithLabelValues(method, Failed).Inc()
		return
	}
	m.migrations.WithLabelValues(method, Succeeded).Inc()
	m.frozen.WithLabelValues(method).Observe(mg.Frozen.Seconds())
	m.total.WithLabelValues(method).Observe(mg.Total.Seconds())
	m.imageBytes.WithLabelValues(method).Observe(float64(mg.ImageBytes))
}

// Checkpointed counts a checkpoint taken here (auto: by --checkpoint-every),
// and observes its size if it succeeded.
func (m *Metrics) Checkpointed(auto bool, size int64, err error) {
	if m == nil {
		return
	}
	kind := "manual"
	if auto {
		kind = "auto"
	}
	if err != nil {
		m.checkpoints.WithLabelValues(kind, Failed).Inc()
		return
	}
	m.checkpoints.WithLabelValues(kind, Succeeded).Inc()
	m.checkpointBytes.WithLabelValues(kind).Observe(float64(size))
}

// balancerDecisions are the event kinds that are the balancer's decisions
// (pidtable.EventMove and its kin).
var balancerDecisions = map[string]bool{
	pidtable.EventMove: true, pidtable.EventMoved: true, pidtable.EventFailed: true, pidtable.EventRejected: true,
}

// Event counts an event of kind recorded by this node.
func (m *Metrics) Event(kind string) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(kind).Inc()
}

// Balanced counts a decision of the balancer (an event of kind move, moved,
// failed or rejected that the balancer recorded here; others are not
// counted: a drain's moves are events of the same kinds).
func (m *Metrics) Balanced(kind string) {
	if m == nil || !balancerDecisions[kind] {
		return
	}
	m.balancer.WithLabelValues(kind).Inc()
}

// EtcdInterceptor times every unary request of a gRPC client (the agent's
// etcd client: clientv3.Config.DialOptions). Streams (watches, lease
// keep-alives) are not timed.
func (m *Metrics) EtcdInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		if m == nil {
			return err
		}
		name := shortMethod(method)
		m.etcd.WithLabelValues(name).Observe(time.Since(start).Seconds())
		if err != nil {
			m.etcdErrors.WithLabelValues(name, status.Code(err).String()).Inc()
		}
		return err
	}
}

// shortMethod turns "/etcdserverpb.KV/Range" into "KV/Range".
func shortMethod(full string) string {
	full = strings.TrimPrefix(full, "/")
	if i := strings.IndexByte(full, '.'); i >= 0 && i < strings.IndexByte(full, '/') {
		full = full[i+1:]
	}
	return full
}

// states are the values of ssi_jobs' state label.
var states = []pidtable.State{pidtable.Starting, pidtable.Running, pidtable.Migrating, pidtable.Checkpointing,
	pidtable.Exited, pidtable.Lost, pidtable.Checkpointed}

// collector reads the gauges at scrape time.
type collector struct{ cfg Config }

var (
	jobsDesc       = prometheus.NewDesc("ssi_jobs", "Jobs whose records name this node, by state (starting, running, migrating, checkpointing, and the ended ones kept for --retention: exited, lost, checkpointed).", []string{"state"}, nil)
	supervisedDesc = prometheus.NewDesc("ssi_supervised_jobs", "Jobs this node's supervisor runs now.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- jobsDesc
	ch <- supervisedDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.cfg.JobStates != nil {
		counts := c.cfg.JobStates()
		// Every state, 0 included, so that a dashboard's series do not gap.
		for _, state := range states {
			ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(counts[string(state)]), string(state))
		}
	}
	if c.cfg.Supervised != nil {
		ch <- prometheus.MustNewConstMetric(supervisedDesc, prometheus.GaugeValue, float64(c.cfg.Supervised()))
	}
}

package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/checkpoint/store"
	"github.com/ssi-cluster/ssi/dashboard"
	"github.com/ssi-cluster/ssi/metrics"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/nodes"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/service"
	"github.com/ssi-cluster/ssi/shim"
	"github.com/ssi-cluster/ssi/supervisor"
	"github.com/ssi-cluster/ssi/timer"
)

// ErrEtcdUnreachable is returned by Run when etcd cannot be contacted at start.
var ErrEtcdUnreachable = errors.New("agent: cannot reach etcd")

// ErrDuplicate is returned by Run when another live agent holds the node name.
var ErrDuplicate = errors.New("agent: node name already in use")

// Agent is a running node agent.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	instance string
	jobsDir  string

	etcd     *clientv3.Client
	store    *pidtable.Store
	embedded *pidtable.Embedded
	session  atomic.Pointer[concurrency.Session]

	// sup supervises this node's jobs (package supervisor), made in Run.
	sup *supervisor.Supervisor
	// mig is this node's part in migrations (package migrate), made in Run.
	mig *migrate.Migrator
	// ckpts are this node's checkpoints (package checkpoint/store), made in Run.
	ckpts *store.Store
	// cluster is the watched view of nodes and statuses that placement and
	// forwarding read (nodes); balancerView adds the live jobs, for the
	// balancer's rounds. Each runs only while it is used (pidtable.ClusterCache).
	cluster, balancerView *pidtable.ClusterCache
	// statusNow asks the status loop to publish at once (kickStatus).
	statusNow chan struct{}
	// status writes the node's status when it says something new.
	status pidtable.StatusGate
	// fencedAt is when the fence last killed jobs (failover.go); the
	// status loop takes no new lease until failover.Rejoin after it.
	fencedAt atomic.Pointer[time.Time]

	// criuPath and criuErr: the CRIU this node migrates with, and why it cannot.
	criuPath string
	criuErr  error

	rndMu sync.Mutex
	rnd   *mrand.Rand
	// recent are this agent's placements not yet in the nodes' figures.
	recent recentPlacements
	// served are the placements this node served (recent.go).
	served recentPlacements
	// cpu is this machine's CPU feature flags (migration prepare, checkpoints).
	cpu cpuInfo

	// events writes the cluster's event log.
	events *eventLog
	// own is the watched copy of the records that name this node (the
	// phantom check and the GC read it, not the table).
	own *pidtable.ProcCache

	// peer carries agent-to-agent traffic (migration steps, image streams,
	// checkpoint images) under the node's certificate. Clients are redirected,
	// never relayed.
	peer *http.Transport

	// node is this node's certificate and the cluster CA; nil with --insecure.
	node *pki.Node
	// access is who may do what here, and the certificates (package access;
	// access.go), made in Run.
	access *access.Control
	// nodeCtl carries out the admins' requests on nodes (nodes.go).
	nodeCtl *nodes.Control
	// services carries out users' requests on services (services.go).
	services *service.Requests
	timers   *timer.Requests
	// metrics are this agent's Prometheus metrics (package metrics), served
	// on --metrics-listen and GET /v1/metrics.
	metrics *metrics.Metrics
	// dash is the web dashboard (dashboard.go), made by routes.
	dash *dashboard.Server
	// natsURL is this node's broker's client URL (msg.go); empty: none.
	natsURL string
}

// New checks cfg and returns an agent ready to Run.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Log.With("node", cfg.Name),
		instance:  hex.EncodeToString(seed[:8]),
		jobsDir:   filepath.Join(cfg.DataDir, "jobs"),
		statusNow: make(chan struct{}, 1),
		rnd:       mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid()))),
		peer:      newTransport(),
	}
	a.events = &eventLog{a: a}
	a.metrics = metrics.New(metrics.Config{Node: cfg.Name, JobStates: a.jobStates, Supervised: a.supervised})
	return a, nil
}

// Run serves until ctx is cancelled. Jobs keep running after Run returns.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.jobsDir, 0o700); err != nil {
		return fmt.Errorf("agent: create data dir: %w", err)
	}
	lock, err := lockDataDir(a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := a.setupPKI(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("agent: --listen %s: %w", a.cfg.Listen, err)
	}
	if a.node != nil {
		ln = tls.NewListener(ln, a.node.ServerTLS(false))
	}
	defer ln.Close()
	metricsSrv, metricsLn, err := a.metricsServer()
	if err != nil {
		return err
	}
	if metricsLn != nil {
		defer metricsLn.Close()
	}
	if err := a.connectEtcd(ctx); err != nil {
		return err
	}
	defer a.closeEtcd()
	// Every background goroutine of the agent lives in loops: cancelled,
	// then waited for, when Run returns.
	var wg sync.WaitGroup
	loops, stop := context.WithCancel(ctx)
	defer stop()
	a.sup = a.newSupervisor(loops)
	a.cluster = a.store.NewClusterCache(loops, false, a.log)
	a.balancerView = a.store.NewClusterCache(loops, true, a.log)
	defer func() { stop(); a.sup.Wait(); a.cluster.Wait(); a.balancerView.Wait() }()
	if err := a.join(ctx); err != nil {
		return err
	}
	a.nodeCtl = a.newNodes()
	a.services = a.newServiceRequests()
	a.timers = a.newTimerRequests()
	a.access = a.newAccess()
	if err := a.access.Start(ctx); err != nil {
		return err
	}
	stopBroker, err := a.startBroker(loops) // the embedded NATS broker (msg.go)
	if err != nil {
		return err
	}
	defer stopBroker()
	a.probeCRIU(ctx)
	if _, err := os.Stat(filepath.Join(filepath.Dir(a.cfg.ShimExe), shim.InitBinary)); err != nil {
		a.log.Warn("no ssi-init beside ssi-shim: jobs get ssi-shim's Go init, which makes every move slower (~14 ms per dump) and every job ~0.8 MiB bigger; install bin/ssi-init (make build) beside it", "shim", a.cfg.ShimExe, "err", err)
	}
	a.mig = a.newMigrator(loops)
	a.ckpts = a.newCheckpoints()
	if err := a.reconcile(loops); err != nil {
		return err
	}
	// Publish again now that adopted jobs are known, instead of a second later.
	if err := a.publishStatus(ctx, a.measure()); err != nil {
		return err
	}
	srv := &http.Server{
		Handler: a.logPanics(a.routes()), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: maxHeaderBytes,
		BaseContext: func(net.Listener) context.Context { return ctx },
		// Failed handshakes (plain HTTP on the TLS port, unknown CAs) are the
		// clients' problem; they are told so, not the agent's log.
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	a.own = a.store.NewProcCache(func(p pidtable.Proc) bool { return p.Node == a.cfg.Name }, a.log)
	loopFuncs := []func(context.Context){a.own.Run, a.statusLoop, a.gcLoop, a.healLoop}
	if !a.cfg.NoBalancer {
		loopFuncs = append(loopFuncs, a.newBalancer().Run)
	}
	loopFuncs = append(loopFuncs, a.serviceLoop)
	loopFuncs = append(loopFuncs, a.timerLoop)          // the timer controller (timers.go)
	loopFuncs = append(loopFuncs, a.failoverLoops()...) // automatic checkpoints, failover controller (failover.go)
	loopFuncs = append(loopFuncs, a.nodeLoops()...)     // node lifecycle: drain controller, certificate record (nodes.go)
	loopFuncs = append(loopFuncs, a.access.Loops()...)  // revocations, renewal, refusals' events
	loopFuncs = append(loopFuncs, a.jobCredsLoop)       // jobs' credentials (jobcreds.go)
	for _, loop := range loopFuncs {
		wg.Add(1)
		go func() { defer wg.Done(); loop(loops) }()
	}
	serveErr := make(chan error, 2) // the API's server and the metrics'
	go func() { serveErr <- srv.Serve(ln) }()
	if metricsSrv != nil {
		go func() { serveErr <- fmt.Errorf("--metrics-listen: %w", metricsSrv.Serve(metricsLn)) }()
		defer metricsSrv.Close()
	}
	a.log.Info("agent ready", "addr", a.cfg.Advertise, "instance", a.instance, "jobs", a.sup.Count())
	var embeddedErr <-chan error
	if a.embedded != nil {
		embeddedErr = a.embedded.Err()
	}
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("agent: serve: %w", err)
	case err = <-embeddedErr:
		err = fmt.Errorf("agent: embedded etcd: %w", err)
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	stop()
	wg.Wait()
	a.sup.Wait()
	// A clean stop makes the node NotReady at once instead of after the TTL,
	// unless jobs with a failover copy stay here: NotReady, they would be
	// restored elsewhere Grace later while their shims run them on until the
	// lease's bound (shim/fence.go), and a restart in place (an upgrade)
	// would send them all elsewhere. Their lease runs out by itself; an
	// agent back within the TTL takes over (join) and they stay.
	// Not Session.Close: it revokes under the session's context, which the
	// agent's has already cancelled, so the revoke was never sent.
	if s := a.session.Load(); s != nil {
		if n := a.failoverJobsHere(); n > 0 {
			a.log.Info("lease not revoked at stop: jobs here have failover copies; the node stays Ready for the lease's TTL, and they stay here if the agent is back by then", "jobs", n, "ttl_s", a.cfg.LeaseTTL)
		} else if _, err := a.etcd.Revoke(shutdown, s.Lease()); err != nil {
			a.log.Warn("revoke the lease at stop; the node is NotReady after its TTL", "err", err)
		}
	}
	a.log.Info("agent stopped; jobs keep running", "jobs", a.sup.Count())
	return err
}

// join takes the node name (refusing if another live agent has it), registers
// the node and publishes a first status so the node is Ready.
func (a *Agent) join(ctx context.Context) error {
	name := a.cfg.Name
	st, lease, live, err := a.store.Status(ctx, name)
	if err != nil {
		return err
	}
	instFile := filepath.Join(a.cfg.DataDir, "instance")
	if live {
		prev, _ := os.ReadFile(instFile)
		if strings.TrimSpace(string(prev)) != st.Instance {
			return fmt.Errorf("%w: node %s has a live agent (instance %s) that is not this data dir's; stop it, or wait %ds for its lease to expire", ErrDuplicate, name, st.Instance, a.cfg.LeaseTTL)
		}
		// Our predecessor (we hold the data dir lock, so it is dead): drop its lease.
		if _, err := a.etcd.Revoke(ctx, lease); err != nil {
			a.log.Warn("revoke previous agent's lease", "lease", lease, "err", err)
		}
	}
	if err := os.WriteFile(instFile, []byte(a.instance+"\n"), 0o600); err != nil {
		return fmt.Errorf("agent: write %s: %w", instFile, err)
	}
	cpus, mem := a.cfg.CPUs, a.cfg.Memory
	if cpus == 0 {
		cpus = float64(runtime.NumCPU())
	}
	if mem == 0 {
		mem = memTotal()
	}
	if err := a.store.RegisterNode(ctx, pidtable.Node{
		Name: name, Addr: a.cfg.Advertise, CPUs: cpus, Memory: mem, Labels: a.cfg.Labels,
		Version: a.cfg.Version, Protocol: migrate.Protocol, Registered: time.Now().UTC(),
	}); err != nil {
		return err
	}
	a.waitAfterShimFence(ctx)
	if _, err := a.newSession(ctx); err != nil {
		return err
	}
	if a.node != nil && a.node.CA.Key != nil {
		if err := a.store.SetCANode(ctx, name); err != nil {
			return err
		}
	}
	return a.publishStatus(ctx, a.measure())
}

// newSession grants this node's etcd lease. The shims' fence bound
// (leaseDeadlineLoop) is moved to the new lease before anything can use it:
// until then the file holds the old lease's bound, long passed after a
// fence, and a job started in between would be killed by its shim at once.
func (a *Agent) newSession(ctx context.Context) (*concurrency.Session, error) {
	asked := shim.Monotonic()
	s, err := concurrency.NewSession(a.etcd, concurrency.WithTTL(a.cfg.LeaseTTL), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("agent: create etcd lease: %w", err)
	}
	// etcd grants at least the TTL asked for, counted from after asked.
	if err := shim.WriteLeaseDeadline(a.cfg.DataDir, asked+time.Duration(a.cfg.LeaseTTL)*time.Second); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("agent: the shims' lease deadline: %w", err)
	}
	a.session.Store(s)
	return s, nil
}

func (a *Agent) publishStatus(ctx context.Context, st pidtable.NodeStatus) error {
	s := a.session.Load()
	st.Instance = a.instance
	wrote, err := a.status.Publish(ctx, a.store, a.cfg.Name, st, s.Lease())
	if err != nil {
		return err
	}
	if wrote {
		a.events.ready(ctx, int64(s.Lease()))
	}
	return nil
}

// nodes is the cluster's nodes and their statuses, from the watched view
// (no etcd read once it runs).
func (a *Agent) nodes(ctx context.Context) (*pidtable.Snapshot, error) {
	return a.cluster.Snapshot(ctx)
}

// newSupervisor returns the supervisor of this node's jobs, whose watchers
// live as long as life; the store must be set up.
func (a *Agent) newSupervisor(life context.Context) *supervisor.Supervisor {
	return supervisor.New(life, supervisor.Config{
		Node: a.cfg.Name, JobsDir: a.jobsDir, CgroupParent: a.cfg.CgroupParent, CPUSet: a.cfg.CPUSet,
		ShimExe: a.cfg.ShimExe, Table: a.store, Log: a.log, Retention: a.cfg.Retention,
		Incoming: func(gpid uint64) bool { _, in := a.mig.IncomingSource(gpid); return in },
		Ended:    func(st pidtable.State) { a.metrics.Ended(string(st)) },
		JobCreds: a.jobCredsDir(),
		Env:      a.jobEnv,
	})
}

// lockDataDir takes an exclusive lock on the data dir for this agent's life.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "agent.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: open %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("%w: another ssi agent (pid %s) uses --data-dir %s", ErrDuplicate, strings.TrimSpace(string(pid)), dir)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	return f, nil
}

// memTotal returns the machine's memory in bytes.
func memTotal() int64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

func newTransport() *http.Transport {
	return &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second, DialContext: (&net.Dialer{Timeout: 3 * time.Second}).DialContext}
}

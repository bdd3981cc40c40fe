package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ssi-cluster/ssi/hollow"
	"github.com/ssi-cluster/ssi/pki"
)

// hollowFlags are the flags of ssi agent --hollow N.
type hollowFlags struct {
	nodes     int
	prefix    string
	jobs      int
	jobLife   time.Duration
	jobDemand float64
	api       string
}

func (h *hollowFlags) register(c interface {
	IntVar(*int, string, int, string)
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	Float64Var(*float64, string, float64, string)
}) {
	c.IntVar(&h.nodes, "hollow", 0, "TESTING: run N hollow nodes in this process instead of a real agent (package hollow): fake nodes that register, keep a lease and publish status as agents do, with fake jobs; --listen is then their control API (plain HTTP: use a loopback address)")
	c.StringVar(&h.prefix, "hollow-prefix", "hollow", "with --hollow: the nodes are named PREFIX-1 .. PREFIX-N")
	c.IntVar(&h.jobs, "hollow-jobs", 0, "with --hollow: fake jobs each hollow node keeps live")
	c.DurationVar(&h.jobLife, "hollow-job-life", 0, "with --hollow: how long a fake job runs before it exits 0 and is replaced (0: until its node stops)")
	c.Float64Var(&h.jobDemand, "hollow-job-demand", 0, "with --hollow: CPU demand, in cores, each running fake job reports")
	c.StringVar(&h.api, "hollow-api", "", "with --hollow: serve the hollow nodes' subset of the agent API (run, wait, logs, signal) with TLS on HOST:PORT and register it as their address; HOST must be an IP of --data-dir's node certificate (run the process where that node runs)")
}

// hollowConfig is what ssi agent --hollow takes of the agent's flags.
type hollowConfig struct {
	listen, advertise, dataDir string
	endpoints                  []string
	insecure                   bool
	cpus                       float64
	memory                     int64
	labels                     map[string]string
	retention                  time.Duration
	dialTimeout                time.Duration
	log                        *slog.Logger
}

// runHollow runs the hollow nodes until ctx ends, then stops them (their
// jobs end, their leases are revoked).
func runHollow(ctx context.Context, h hollowFlags, hc hollowConfig) error {
	if hc.listen == "" || hc.dataDir == "" {
		return usageErr("agent --hollow: --listen HOST:PORT (the hollow nodes' control API) and --data-dir DIR (whose pki/ holds a node certificate of the cluster, unless --insecure) are required")
	}
	cli, err := hollowEtcd(hc)
	if err != nil {
		return err
	}
	defer cli.Close()
	probe, cancel := context.WithTimeout(ctx, hc.dialTimeout)
	defer cancel()
	if _, err := cli.Get(probe, "/ssi/next-gpid"); err != nil {
		return fmt.Errorf("agent --hollow: cannot reach etcd at %s: %w (the hollow nodes join an existing cluster: give --etcd-endpoints)", strings.Join(cli.Endpoints(), ","), err)
	}
	ln, err := net.Listen("tcp", hc.listen)
	if err != nil {
		return fmt.Errorf("agent --hollow: --listen %s: %w", hc.listen, err)
	}
	defer ln.Close()
	addr := hc.advertise
	var apiLn net.Listener
	if h.api != "" {
		if hc.insecure {
			return usageErr("agent --hollow-api: needs the cluster's TLS (not --insecure): the API tells users apart by their certificates")
		}
		n, err := pki.LoadNode(filepath.Join(hc.dataDir, "pki"))
		if err != nil {
			return fmt.Errorf("agent --hollow-api: %w", err)
		}
		if apiLn, err = net.Listen("tcp", h.api); err != nil {
			return fmt.Errorf("agent --hollow-api %s: %w", h.api, err)
		}
		defer apiLn.Close()
		apiLn = tls.NewListener(apiLn, n.ServerTLS(false))
		if addr == "" {
			addr = h.api
		}
	}
	if addr == "" {
		addr = ln.Addr().String()
	}
	c, err := hollow.Start(ctx, hollow.Config{
		Etcd: cli, Prefix: h.prefix, Nodes: h.nodes, Addr: addr, CPUs: hc.cpus, Memory: hc.memory,
		Labels: hc.labels, Version: version, Jobs: h.jobs, JobLife: h.jobLife, JobDemand: h.jobDemand,
		Retention: hc.retention, Log: hc.log,
	})
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("agent --hollow: %w", err)}
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	if apiLn != nil {
		apiSrv := &http.Server{Handler: c.APIHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(hc.log.Handler(), slog.LevelDebug)}
		go func() { _ = apiSrv.Serve(apiLn) }()
		defer apiSrv.Close()
		hc.log.Info("hollow nodes' agent API (run, wait, logs, signal)", "addr", h.api)
	}
	hc.log.Info("hollow nodes' control API", "addr", ln.Addr().String(), "nodes", h.nodes)
	<-ctx.Done()
	_ = srv.Close()
	hc.log.Info("stopping the hollow nodes: their jobs end, their leases are revoked")
	_ = c.Stop("")
	c.Wait()
	return nil
}

// hollowEtcd is a client of the cluster's etcd: --etcd-endpoints, or those
// recorded when the node of --data-dir joined; with the node certificate
// of --data-dir/pki unless --insecure.
func hollowEtcd(hc hollowConfig) (*clientv3.Client, error) {
	dir := filepath.Join(hc.dataDir, "pki")
	eps := hc.endpoints
	if len(eps) == 0 {
		if b, err := os.ReadFile(filepath.Join(dir, "etcd.json")); err == nil {
			_ = json.Unmarshal(b, &eps)
		}
	}
	if len(eps) == 0 {
		return nil, usageErr("agent --hollow: no etcd to join: give --etcd-endpoints (hollow nodes never run an embedded etcd)")
	}
	cc := clientv3.Config{Endpoints: eps, DialTimeout: hc.dialTimeout, Logger: zap.NewNop()}
	if !hc.insecure {
		n, err := pki.LoadNode(dir)
		if err != nil {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("agent --hollow: %w (--data-dir must hold a node certificate of the cluster in pki/: a node's data dir, or a copy of its pki/)", err)}
		}
		cc.TLS = n.ClientTLS()
	}
	c, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("agent --hollow: etcd at %s: %w", strings.Join(eps, ","), err)
	}
	return c, nil
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/timer"
)

// Bounds and fixed times.
const (
	applyLimit = 10 * time.Minute
	warmup     = 10 * time.Second // from the apply's end to the window's start
	hz         = 100              // USER_HZ, the unit of /proc/PID/stat's times
	tickKeys   = "/ssi/timers/ticks/"
)

// bench is one benchmark run.
type bench struct {
	o   options
	log *slog.Logger
	rep report

	bins *benchkit.Binaries
	cl   *benchkit.Cluster
	etcd *clientv3.Client
	wd   string
}

func newBench(o options) *bench {
	return &bench{o: o, log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
}

// Run applies the timers on a cluster of its own, measures one window and
// tears the cluster down.
func (b *bench) Run(ctx context.Context) (err error) {
	prep, err := benchkit.Prepare(ctx, b.log, b.o.cluster)
	b.rep.machine = prep.Machine
	defer func() { b.rep.loadAfter = benchkit.LoadAvg() }()
	if err != nil {
		return err
	}
	defer prep.Release()
	b.bins = prep.Bins
	defer b.teardown()
	if b.wd, err = os.MkdirTemp("", b.o.cluster.Name+"-timers-"); err != nil {
		return err
	}
	_ = os.Chmod(b.wd, 0o777)
	if b.cl, err = benchkit.StartCluster(ctx, benchkit.ClusterConfig{Flags: b.o.cluster, Nodes: 3, Binary: b.bins.SSI, Log: b.log}); err != nil {
		return err
	}
	if _, err := b.cl.API.SetBalance(ctx, api.BalanceRequest{Enabled: false}); err != nil {
		return fmt.Errorf("switch the balancer off: %w", err)
	}
	if b.etcd, err = etcdClient(b.cl.Nodes[0].DataDir, b.cl.Nodes[0].IP); err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	b.rep.nodes = make([]string, len(b.cl.Nodes))
	for i, n := range b.cl.Nodes {
		b.rep.nodes[i] = n.Name
	}

	b.log.Info("CPU baseline, no timers", "window", b.o.idle)
	if b.rep.idleCPU, err = b.cpuOver(ctx, b.o.idle); err != nil {
		return err
	}

	units := filepath.Join(b.wd, "units")
	runLog := filepath.Join(b.wd, "runs.log")
	if err := os.Mkdir(units, 0o755); err != nil {
		return err
	}
	if err := writeUnits(units, b.o.timers, b.o.period, runLog); err != nil {
		return err
	}
	b.log.Info("applying", "timers", b.o.timers)
	if _, b.rep.apply, err = benchkit.Exec(ctx, applyLimit, b.cl.Env, b.bins.SSI, "apply", units); err != nil {
		return err
	}
	b.log.Info("applied", "timers", b.o.timers, "took", b.rep.apply)
	if err := benchkit.Sleep(ctx, warmup); err != nil {
		return err
	}
	if b.rep.leaderBefore, err = b.leader(ctx); err != nil {
		return err
	}
	b.rep.from = time.Now()
	b.log.Info("window", "from", b.rep.from.UTC().Format(time.TimeOnly), "length", b.o.window, "leader", b.rep.leaderBefore)
	if b.rep.windowCPU, err = b.cpuOver(ctx, b.o.window); err != nil {
		return err
	}
	b.rep.to = time.Now()
	if b.rep.leaderAfter, err = b.leader(ctx); err != nil {
		return err
	}
	b.log.Info("settling", "for", b.o.settle)
	if err := benchkit.Sleep(ctx, b.o.settle); err != nil {
		return err
	}
	if b.rep.ticks, err = b.readTicks(ctx); err != nil {
		return err
	}
	raw, err := os.ReadFile(runLog)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	b.rep.runs, b.rep.badLines = parseRunLog(string(raw))
	return nil
}

func (b *bench) teardown() {
	if b.etcd != nil {
		b.etcd.Close()
	}
	left, err := benchkit.StopCluster(b.o.cluster, b.log)
	if err != nil {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("teardown error: %v; run `ssi local down --name %s`", err, b.o.cluster.Name))
	}
	if len(left) > 0 {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("namespaces left behind after teardown: %v", left))
	}
	b.bins.Remove()
	if b.wd != "" {
		_ = os.RemoveAll(b.wd)
	}
}

// etcdClient opens node1's embedded etcd with node1's certificate.
func etcdClient(dataDir, ip string) (*clientv3.Client, error) {
	creds, err := pki.LoadNode(filepath.Join(dataDir, "pki"))
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{
		Endpoints: []string{"https://" + net.JoinHostPort(ip, "2379")}, TLS: creds.ClientTLS(),
		DialTimeout: 5 * time.Second, Logger: zap.NewNop(), MaxCallRecvMsgSize: 1 << 30,
	})
}

// leader is the node whose agent leads the timer controller's election.
func (b *bench) leader(ctx context.Context) (string, error) {
	resp, err := b.etcd.Get(ctx, timer.LeaderPrefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("read the timer election: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// cpuOver returns each agent's CPU over d, in % of one core.
func (b *bench) cpuOver(ctx context.Context, d time.Duration) ([]float64, error) {
	before := make([]int64, len(b.cl.Nodes))
	for i, n := range b.cl.Nodes {
		before[i] = cpuTicks(n.Agent.PID)
	}
	t0 := time.Now()
	if err := benchkit.Sleep(ctx, d); err != nil {
		return nil, err
	}
	secs := time.Since(t0).Seconds()
	out := make([]float64, len(b.cl.Nodes))
	for i, n := range b.cl.Nodes {
		out[i] = float64(cpuTicks(n.Agent.PID)-before[i]) / hz / secs * 100
	}
	return out, nil
}

// cpuTicks is a process's utime+stime in clock ticks (0 if unreadable).
func cpuTicks(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// readTicks reads every tick record, in pages.
func (b *bench) readTicks(ctx context.Context) ([]pidtable.Tick, error) {
	var out []pidtable.Tick
	key, end := tickKeys, clientv3.GetPrefixRangeEnd(tickKeys)
	for {
		resp, err := b.etcd.Get(ctx, key, clientv3.WithRange(end), clientv3.WithLimit(1000), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return nil, fmt.Errorf("read the ticks: %w", err)
		}
		for _, kv := range resp.Kvs {
			var t pidtable.Tick
			if err := json.Unmarshal(kv.Value, &t); err != nil {
				return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
			}
			out = append(out, t)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

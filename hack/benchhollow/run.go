package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/hollow"
	"github.com/ssi-cluster/ssi/pki"
)

// hollowPrefix names the hollow nodes: hl-1 .. hl-N.
const hollowPrefix = "hl"

type bench struct {
	o   options
	log *slog.Logger
	rep report
}

func newBench(o options) *bench {
	return &bench{o: o, log: slog.New(slog.NewTextHandler(os.Stderr, nil)), rep: report{}}
}

// Run brings up the cluster, measures every configuration on it, and tears
// it down.
func (b *bench) Run(ctx context.Context) (err error) {
	b.rep.machine = benchkit.ProbeMachine(ctx, "/usr/local/sbin/criu", b.o.cluster.Name)
	release, err := benchkit.ClaimName(b.o.cluster.StateDir, b.o.cluster.Name)
	if err != nil {
		return err
	}
	defer release()
	repo := b.o.cluster.Repo
	if repo == "" {
		if repo, err = benchkit.FindRepo("."); err != nil {
			return err
		}
	}
	b.rep.commit = benchkit.GitDescribe(repo)
	bins, err := benchkit.BuildBinaries(ctx, b.log, repo, b.o.cluster.Bin, b.o.cluster.Name, []string{"CGO_ENABLED=0"})
	if err != nil {
		return err
	}
	defer bins.Remove()
	real := []string{"--label", "kind=real"}
	cl, err := benchkit.StartCluster(ctx, benchkit.ClusterConfig{
		Flags: b.o.cluster, Nodes: 3, Binary: bins.SSI, Log: b.log,
		NodeArgs: map[string][]string{"node1": append([]string{"--balancer=false"}, real...), "node2": real, "node3": real},
	})
	defer func() {
		left, derr := benchkit.StopCluster(b.o.cluster, b.log)
		if derr != nil {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("teardown: %v; run `ssi local down --name %s`", derr, b.o.cluster.Name))
		}
		if len(left) > 0 {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("namespaces left behind: %v", left))
		}
	}()
	if err != nil {
		return err
	}
	// The measurements read etcd as node1 (its embedded member); the hollow
	// nodes write as node2, through a client of their own.
	m := &meter{cl: cl, ssi: bins.SSI, log: b.log}
	if m.etcd, err = etcdClient(cl.Nodes[0].DataDir, cl.Nodes[0].IP); err != nil {
		return err
	}
	defer m.etcd.Close()
	hc, err := etcdClient(cl.Nodes[1].DataDir, cl.Nodes[0].IP)
	if err != nil {
		return err
	}
	defer hc.Close()
	for _, c := range b.o.configs {
		r := &configResult{config: c}
		b.rep.results = append(b.rep.results, r)
		if err := b.config(ctx, m, hc, r); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	return nil
}

// config runs c's hollow nodes until its jobs are created, measures, and
// removes them.
func (b *bench) config(ctx context.Context, m *meter, hc *clientv3.Client, r *configResult) error {
	c := r.config
	life, stop := context.WithCancel(ctx)
	defer stop()
	b.log.Info("starting hollow nodes", "config", c.String())
	start := time.Now()
	hl, err := hollow.Start(life, hollow.Config{
		Etcd: hc, Prefix: hollowPrefix, Nodes: c.nodes, Addr: net.JoinHostPort(m.cl.Nodes[0].IP, "1"),
		CPUs: 2, Memory: 4 << 30, Version: "hollow", Jobs: c.records / c.nodes, Spawners: 64,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	names := hl.Names()
	defer func() {
		// Killed, not stopped: a stop would end every job, one write each.
		for _, n := range names {
			_ = hl.Kill(n)
		}
		hl.Wait()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		b.log.Info("removing hollow nodes", "config", c.String())
		if err := hollow.Remove(rctx, hc, names); err != nil {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s: removing the hollow nodes: %v", c, err))
		}
	}()
	r.ready = time.Since(start)
	want := (c.records / c.nodes) * c.nodes
	deadline := time.Now().Add(b.o.fillLimit)
	for hl.Created() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d jobs created after %s", hl.Created(), want, b.o.fillLimit)
		}
		if err := benchkit.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	r.fill = time.Since(start) - r.ready
	r.jobs = want
	b.log.Info("jobs created", "config", c.String(), "jobs", want, "took", r.fill.Round(time.Millisecond))
	if err := benchkit.Sleep(ctx, b.o.settle); err != nil {
		return err
	}
	return m.measure(ctx, hl, r, b.o)
}

// etcdClient opens node1's embedded etcd (at ip) with the certificate of
// the node whose data dir is dataDir.
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

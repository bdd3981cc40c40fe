package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// firstGPID is the gpid of the first synthetic record.
const firstGPID = 10_000_000

type bench struct {
	o   options
	log *slog.Logger
	rep report
}

func newBench(o options) *bench {
	return &bench{o: o, log: slog.New(slog.NewTextHandler(os.Stderr, nil)), rep: report{sizes: o.sizes}}
}

// Run measures every variant on a cluster of its own, one after the other.
func (b *bench) Run(ctx context.Context) error {
	b.rep.machine = benchkit.ProbeMachine(ctx, "/usr/local/sbin/criu", b.o.cluster.Name)
	release, err := benchkit.ClaimName(b.o.cluster.StateDir, b.o.cluster.Name)
	if err != nil {
		return err
	}
	defer release()
	for _, v := range b.o.variants {
		if err := b.variant(ctx, v); err != nil {
			return fmt.Errorf("%s: %w", v.label, err)
		}
	}
	return nil
}

// variant builds v, brings up its cluster, grows the table through the sizes
// and measures at each, and tears the cluster down.
func (b *bench) variant(ctx context.Context, v variant) (err error) {
	vr := &variantResult{label: v.label, commit: benchkit.GitDescribe(v.repo)}
	b.rep.variants = append(b.rep.variants, vr)
	bins, err := benchkit.BuildBinaries(ctx, b.log, v.repo, "", b.o.cluster.Name, []string{"CGO_ENABLED=0"})
	if err != nil {
		return err
	}
	defer bins.Remove()
	cl, err := benchkit.StartCluster(ctx, benchkit.ClusterConfig{
		Flags: b.o.cluster, Nodes: 3, Binary: bins.SSI, Log: b.log,
		NodeArgs: map[string][]string{"node1": {"--balancer=false"}},
	})
	last := v == b.o.variants[len(b.o.variants)-1]
	defer func() {
		if b.o.keep && last {
			b.log.Info("leaving the cluster up (-keep)", "down", "ssi local down --name "+b.o.cluster.Name+" --state-dir "+b.o.cluster.StateDir)
			return
		}
		left, derr := benchkit.StopCluster(b.o.cluster, b.log)
		if derr != nil {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s: teardown: %v; run `ssi local down --name %s`", v.label, derr, b.o.cluster.Name))
		}
		if len(left) > 0 {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("%s: namespaces left behind: %v", v.label, left))
		}
	}()
	if err != nil {
		return err
	}
	m := &meter{cl: cl, ssi: bins.SSI, log: b.log}
	if m.etcd, err = etcdClient(cl.Nodes[0].DataDir, cl.Nodes[0].IP); err != nil {
		return err
	}
	defer m.etcd.Close()
	written := 0
	for _, n := range b.o.sizes {
		b.log.Info("writing records", "variant", v.label, "from", written, "to", n)
		if err := writeRecords(ctx, m.etcd, written, n); err != nil {
			return err
		}
		written = n
		sr, err := m.measure(ctx, n, b.o.warmup, b.o.runs, b.o.cpuWindow)
		vr.sizes = append(vr.sizes, sr)
		if err != nil {
			return fmt.Errorf("%d records: %w", n, err)
		}
	}
	return nil
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

// syntheticProc is record i of the benchmark's table.
func syntheticProc(i int, now time.Time) pidtable.Proc {
	return pidtable.Proc{
		GPID: firstGPID + uint64(i), Node: fmt.Sprintf("fake%d", i%1000), Epoch: 1, State: pidtable.Running,
		PID: 1000 + i%30000, InitPID: 999 + i%30000, User: "root", Argv: []string{"sleep", "3600"}, Workdir: "/",
		Created: now, Started: now, Arrived: now,
	}
}

// writeRecords writes records from..to-1 in transactions of 128 puts.
func writeRecords(ctx context.Context, c *clientv3.Client, from, to int) error {
	now := time.Now().UTC()
	ops := make([]clientv3.Op, 0, 128)
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if _, err := c.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("write records: %w", err)
		}
		ops = ops[:0]
		return nil
	}
	for i := from; i < to; i++ {
		p := syntheticProc(i, now)
		val, err := json.Marshal(p)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(pidtable.ProcKey(p.GPID), string(val)))
		if len(ops) == cap(ops) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

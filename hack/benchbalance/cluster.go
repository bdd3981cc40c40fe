package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// bench is one benchmark run.
type bench struct {
	o   options
	log *slog.Logger
	rep report

	bins  *benchkit.Binaries
	cl    *benchkit.Cluster
	wd    string
	iters int // iterations of an equal job
}

func newBench(o options) *bench {
	return &bench{o: o, log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
}

// Run measures every workload, -runs rounds of off and on each, on a
// cluster of its own that it tears down before returning.
func (b *bench) Run(ctx context.Context) (err error) {
	b.rep.machine = benchkit.ProbeMachine(ctx, checkpoint.DefaultCRIUPath, b.o.cluster.Name)
	defer func() { b.rep.loadAfter = benchkit.LoadAvg() }()
	release, err := benchkit.ClaimName(b.o.cluster.StateDir, b.o.cluster.Name)
	if err != nil {
		return err
	}
	defer release()
	if err := b.build(ctx); err != nil {
		return err
	}
	defer b.teardown()
	if b.wd, err = os.MkdirTemp("", b.o.cluster.Name+"-wd-"); err != nil {
		return err
	}
	_ = os.Chmod(b.wd, 0o755)
	if err := b.up(ctx); err != nil {
		return err
	}
	if err := b.calibrate(ctx); err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	for _, w := range b.o.workloads {
		if err := b.measureWorkload(ctx, w); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) build(ctx context.Context) error {
	repo, err := benchkit.FindRepo(b.o.cluster.Repo)
	if err != nil {
		return err
	}
	b.rep.machine.Commit = benchkit.GitDescribe(repo)
	b.bins, err = benchkit.BuildBinaries(ctx, b.log, repo, b.o.cluster.Bin, b.o.cluster.Name, []string{"CGO_ENABLED=0"})
	return err
}

// up starts the two nodes, each confined to one CPU.
func (b *bench) up(ctx context.Context) (err error) {
	b.cl, err = benchkit.StartCluster(ctx, benchkit.ClusterConfig{
		Flags: b.o.cluster, Nodes: 2, Binary: b.bins.SSI, Log: b.log,
		NodeArgs: map[string][]string{"node1": {"--cpuset", "0"}, "node2": {"--cpuset", "1"}},
		CheckNode: func(n api.NodeInfo) error {
			if n.CPUs != 1 {
				return fmt.Errorf("node %s offers %g CPUs, want 1 (--cpuset)", n.Name, n.CPUs)
			}
			return nil
		},
	})
	return err
}

func (b *bench) teardown() {
	b.keepLogs()
	if b.o.keep {
		b.log.Info("leaving the cluster up (-keep)", "name", b.o.cluster.Name, "down", "ssi local down --name "+b.o.cluster.Name+" --state-dir "+b.o.cluster.StateDir)
		return
	}
	left, err := benchkit.StopCluster(b.o.cluster, b.log)
	if err != nil {
		b.log.Error("teardown", "err", err)
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

// keepLogs copies the agents' logs and the jobs' shim logs out of the data
// dir (which teardown removes) into /tmp/NAME-logs, for post-mortems.
func (b *bench) keepLogs() {
	if b.cl == nil {
		return
	}
	dst := filepath.Join(os.TempDir(), b.o.cluster.Name+"-logs")
	_ = os.RemoveAll(dst)
	for _, n := range b.cl.Nodes {
		logs, _ := filepath.Glob(filepath.Join(n.DataDir, "jobs", "*", "shim.log"))
		logs = append(logs, filepath.Join(n.DataDir, "agent.log"))
		for _, l := range logs {
			raw, err := os.ReadFile(l)
			if err != nil {
				continue
			}
			rel, _ := filepath.Rel(n.DataDir, l)
			out := filepath.Join(dst, n.Name, rel)
			_ = os.MkdirAll(filepath.Dir(out), 0o755)
			_ = os.WriteFile(out, raw, 0o644)
		}
	}
	b.rep.notes = append(b.rep.notes, "agent and shim logs kept in "+dst)
}

// waitIdle waits until the cluster has no live job.
func (b *bench) waitIdle(ctx context.Context) error {
	deadline := time.Now().Add(idleLimit)
	for {
		procs, err := b.cl.API.PS(ctx, "", false)
		if err == nil && len(procs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jobs still live after %s: %d (err %v)", idleLimit, len(procs), err)
		}
		if err := benchkit.Sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
}

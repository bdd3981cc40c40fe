package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// bench is one benchmark run.
type bench struct {
	o   options
	log *slog.Logger
	rep report

	bins *benchkit.Binaries
	cl   *benchkit.Cluster
	wd   string // working directory of every job (private, see Run)
	seq  int    // numbers /dev/shm dirs
}

func newBench(o options) *bench {
	return &bench{o: o, log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
}

// Run measures every size on a two-node cluster of its own, which it tears
// down before returning.
func (b *bench) Run(ctx context.Context) error {
	b.rep.machine = benchkit.ProbeMachine(ctx, b.o.criu, b.o.cluster.Name)
	b.versions()
	release, err := benchkit.ClaimName(b.o.cluster.StateDir, b.o.cluster.Name)
	if err != nil {
		return err
	}
	defer release()
	if err := b.build(ctx); err != nil {
		return err
	}
	defer b.teardown()
	// The raw job (rawRun) shares this machine's /proc, unlike an ssi job
	// (isolate.JobNamespaces), so CRIU's parasite mounts a proc at
	// "proc.crtools" in its working directory: a private one keeps that out
	// of everyone else's.
	if b.wd, err = os.MkdirTemp("", b.o.cluster.Name+"-wd-"); err != nil {
		return err
	}
	if err := b.up(ctx); err != nil {
		return err
	}
	for _, size := range b.o.sizes {
		if err := b.measureSize(ctx, size); err != nil {
			return fmt.Errorf("%d MiB: %w", size, err)
		}
	}
	return nil
}

// build finds the repository and builds ssi and ssi-shim (unless -bin).
func (b *bench) build(ctx context.Context) error {
	repo, err := benchkit.FindRepo(b.o.cluster.Repo)
	if err != nil {
		return err
	}
	b.rep.machine.Commit = benchkit.GitDescribe(repo)
	b.bins, err = benchkit.BuildBinaries(ctx, b.log, repo, b.o.cluster.Bin, b.o.cluster.Name, nil)
	return err
}

func (b *bench) up(ctx context.Context) (err error) {
	t0 := time.Now()
	b.cl, err = benchkit.StartCluster(ctx, benchkit.ClusterConfig{Flags: b.o.cluster, Nodes: 2, Binary: b.bins.SSI, Log: b.log})
	if err != nil {
		return err
	}
	b.log.Info("cluster up", "took", time.Since(t0).Round(time.Millisecond), "endpoint", b.cl.Endpoint())
	return nil
}

func (b *bench) teardown() {
	// What shmDir made (named after this process, so nobody else's).
	m, _ := filepath.Glob(filepath.Join("/dev/shm", fmt.Sprintf("%s-%d-*", b.o.cluster.Name, os.Getpid())))
	for _, d := range m {
		_ = os.RemoveAll(d)
	}
	left, err := benchkit.StopCluster(b.o.cluster, b.log)
	if err != nil {
		b.log.Error("teardown", "err", err)
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("teardown error: %v; run `ssi local down --name %s`", err, b.o.cluster.Name))
	}
	for _, ns := range left {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("namespace %s left behind after teardown", ns))
	}
	b.bins.Remove()
	if b.wd != "" {
		_ = os.RemoveAll(b.wd)
	}
}

// shmDir names a new directory in /dev/shm for one run's images.
func (b *bench) shmDir(what string) string {
	b.seq++
	return filepath.Join("/dev/shm", fmt.Sprintf("%s-%d-%s-%d", b.o.cluster.Name, os.Getpid(), what, b.seq))
}

// versions records the Python of the job and fs.pipe-max-size (post-copy
// raises it to 4 MiB) beside the machine's facts.
func (b *bench) versions() {
	if out, err := exec.Command(b.o.python, "--version").CombinedOutput(); err == nil {
		b.rep.python = strings.TrimSpace(string(out))
	}
	if raw, err := os.ReadFile("/proc/sys/fs/pipe-max-size"); err == nil {
		b.rep.pipeMaxSize = strings.TrimSpace(string(raw))
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/pki"
)

// bench is one benchmark run.
type bench struct {
	o   options
	log *slog.Logger
	rep *report

	bins *benchkit.Binaries
	ssi  string // ssi binary
	shim string // ssi-shim binary
	cl   *benchkit.Cluster
	env  []string // environment of CLI processes
	api  *api.Client
	hc   *http.Client
	wd   string // working directory sent with run requests

	fsyncDone bool
}

func newBench(o options) *bench {
	return &bench{o: o, log: slog.New(slog.NewTextHandler(os.Stderr, nil)), rep: &report{o: o}}
}

// Run takes the measurements asked for with -only on a cluster of its own,
// which it tears down before returning (unless -keep).
func (b *bench) Run(ctx context.Context) error {
	b.rep.machine = benchkit.ProbeMachine(ctx, checkpoint.DefaultCRIUPath, b.o.cluster.Name)
	release, err := benchkit.ClaimName(b.o.cluster.StateDir, b.o.cluster.Name)
	if err != nil {
		return err
	}
	defer release()
	if err := b.build(ctx); err != nil {
		return err
	}
	defer b.teardown()
	// A cluster of this name left by an earlier -keep run may hold other
	// binaries or jobs: up starts from nothing.
	if err := b.up(ctx, "cluster up"); err != nil {
		return err
	}
	if b.o.want(0) {
		if err := b.baseline(ctx); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
	}
	if b.o.want(1) {
		if err := b.latency(ctx); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	if b.o.want(2) && b.o.jobs > 0 {
		if err := b.throughput(ctx); err != nil {
			return fmt.Errorf("spawn throughput: %w", err)
		}
	}
	if b.o.want(3) && b.o.psJobs > 0 {
		if b.o.fresh && (b.o.want(1) || b.o.want(2)) {
			b.log.Info("restarting the cluster for the ps measurement")
			if err := b.up(ctx, "cluster up (fresh, before ps)"); err != nil {
				return err
			}
		} else if err := b.killAll(ctx); err != nil {
			return err
		}
		if err := b.psLatency(ctx); err != nil {
			return fmt.Errorf("ps latency: %w", err)
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
	if b.bins, err = benchkit.BuildBinaries(ctx, b.log, repo, b.o.cluster.Bin, b.o.cluster.Name, nil); err != nil {
		return err
	}
	if b.bins.Prebuilt {
		b.rep.machine.Commit = fmt.Sprintf("prebuilt binaries from -bin %s (working tree at %s)", b.o.cluster.Bin, b.rep.machine.Commit)
	}
	b.ssi, b.shim = b.bins.SSI, b.bins.Shim
	return nil
}

// up (re)starts the cluster from nothing and waits until every node is Ready.
func (b *bench) up(ctx context.Context, what string) (err error) {
	t0 := time.Now()
	b.cl, err = benchkit.StartCluster(ctx, benchkit.ClusterConfig{Flags: b.o.cluster, Nodes: b.o.nodes, Binary: b.ssi, Log: b.log})
	if err != nil {
		return err
	}
	b.env, b.api = b.cl.Env, b.cl.API
	b.wd, _ = os.Getwd()
	admin, err := pki.LoadClientConfig(b.cl.AdminConfig())
	if err != nil {
		return err
	}
	conf, err := admin.TLS()
	if err != nil {
		return err
	}
	b.hc = &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true, TLSClientConfig: conf,
		DialContext: (&net.Dialer{Timeout: 3 * time.Second}).DialContext}}
	b.rep.extra = append(b.rep.extra, kv{what, fmt.Sprintf("%.2f s (%d nodes, agents Ready)", time.Since(t0).Seconds(), len(b.cl.Nodes))})
	if !b.fsyncDone {
		b.fsyncDone = true
		if s, err := fsyncLatency(b.cl.Nodes[0].DataDir, 50); err == nil {
			b.rep.extra = append(b.rep.extra, kv{"fdatasync of a 4 KiB write in node1's data dir (etcd's WAL is there)", fmt.Sprintf("median %s, p90 %s, min %s, max %s (n=%d)", fmtDur(s.Median), fmtDur(s.P90), fmtDur(s.Min), fmtDur(s.Max), s.N)})
		} else {
			b.log.Warn("fsync latency", "err", err)
		}
	}
	return nil
}

// fsyncLatency times n appends of 4 KiB each followed by fdatasync in dir.
func fsyncLatency(dir string, n int) (stats, error) {
	f, err := os.CreateTemp(dir, ".fsync-probe-")
	if err != nil {
		return stats{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var ds []time.Duration
	for range n {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return stats{}, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return stats{}, err
		}
		ds = append(ds, time.Since(t0))
	}
	return benchkit.Summarize(ds), nil
}

func (b *bench) teardown() {
	name := b.o.cluster.Name
	if b.o.keep {
		b.log.Warn("-keep: leaving the cluster up", "down", fmt.Sprintf("%s local down --name %s --state-dir %s", b.ssi, name, b.o.cluster.StateDir), "binaries", b.bins.Dir)
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("-keep: cluster %s left up; tear it down with `%s local down --name %s`.", name, b.ssi, name))
		return
	}
	t0 := time.Now()
	left, err := benchkit.StopCluster(b.o.cluster, b.log)
	if err != nil {
		b.log.Error("teardown", "err", err)
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("teardown error: %v; run `ssi local down --name %s`", err, name))
	} else {
		b.rep.extra = append(b.rep.extra, kv{"cluster down (final)", fmt.Sprintf("%.2f s", time.Since(t0).Seconds())})
	}
	b.bins.Remove()
	if len(left) > 0 {
		b.log.Error("namespaces left behind", "netns", left)
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("namespaces left behind after teardown: %v", left))
	}
}

// rawGet sends GET path to node1's agent from this process over a kept-alive
// connection and returns the body's size.
func (b *bench) rawGet(ctx context.Context, path string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+b.cl.Endpoint()+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	return n, err
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Bounds of one measurement's steps.
const (
	startLimit = 3 * time.Minute  // the jobs running with their memory resident
	moveLimit  = 20 * time.Minute // node2 emptied
	idleLimit  = 2 * time.Minute  // the jobs gone after the kill
	pollEvery  = 50 * time.Millisecond
)

// bench is one benchmark run.
type bench struct {
	o   options
	log *slog.Logger
	rep report

	bins *benchkit.Binaries
	cl   *benchkit.Cluster
	wd   string
	// stayers are the CPU-bound jobs on node1 and node3 (-stayers).
	stayers []stayer
}

func newBench(o options) *bench {
	return &bench{o: o, log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
}

// variant is one way of emptying node2: parallel 0 is by hand, stop-and-copy
// or, with postCopy, post-copy.
type variant struct {
	parallel int
	postCopy bool
}

// byHand is the variant the others are compared with.
var byHand = variant{}

func (v variant) String() string {
	switch {
	case v.parallel == 0 && v.postCopy:
		return "by hand, post-copy (ssi migrate --postcopy)"
	case v.parallel == 0:
		return "by hand (ssi migrate, one at a time)"
	}
	return fmt.Sprintf("drain --parallel %d", v.parallel)
}

// Run measures every variant -runs times on a cluster of its own that it
// tears down before returning.
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
	if b.wd, err = os.MkdirTemp("", b.o.cluster.Name+"-wd-"); err != nil {
		return err
	}
	_ = os.Chmod(b.wd, 0o755)
	if b.cl, err = benchkit.StartCluster(ctx, benchkit.ClusterConfig{Flags: b.o.cluster, Nodes: 3, Binary: b.bins.SSI, Log: b.log}); err != nil {
		return err
	}
	if _, err := b.cl.API.SetBalance(ctx, api.BalanceRequest{Enabled: false}); err != nil {
		return fmt.Errorf("switch the balancer off: %w", err)
	}
	if b.rep.linkIdle, err = b.probeLink(ctx); err != nil {
		return fmt.Errorf("link probe: %w", err)
	}
	b.log.Info("link probe, idle", "MB/s", b.rep.linkIdle/1e6)
	if b.o.stayers {
		if err := b.startStayers(ctx); err != nil {
			return err
		}
		if b.rep.linkLoaded, err = b.probeLink(ctx); err != nil {
			return fmt.Errorf("link probe with the stayers running: %w", err)
		}
		b.log.Info("link probe, stayers running", "MB/s", b.rep.linkLoaded/1e6)
	}
	variants := b.variants()
	for round := 1; round <= b.o.runs; round++ {
		for i := range variants {
			v := variants[(i+round-1)%len(variants)]
			m, err := b.measure(ctx, round, v)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, v, err)
			}
			b.rep.runs = append(b.rep.runs, m)
			b.log.Info("measured", "round", round, "variant", v.String(), "total", m.total, "longest_freeze", m.longest(), "bytes", m.bytes)
		}
	}
	return nil
}

func (b *bench) teardown() {
	if b.o.keep {
		b.log.Info("leaving the cluster up (-keep)", "name", b.o.cluster.Name)
		return
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

// measurement is one emptying of node2.
type measurement struct {
	round   int
	variant variant
	total   time.Duration
	frozen  []time.Duration
	bytes   int64
	// postCopy counts the moves made post-copy (a drain's choice: by hand
	// is stop-and-copy, ssi migrate's default).
	postCopy int
	// start and end bound the emptying of node2 (end = start + total).
	start, end time.Time
	// stayers are the stayers' throughput without and during the emptying.
	stayers []stayerRate
}

func (m measurement) longest() time.Duration {
	if len(m.frozen) == 0 {
		return 0
	}
	return slices.Max(m.frozen)
}

// measure starts the jobs on node2, empties it as v says, and cleans up.
func (b *bench) measure(ctx context.Context, round int, v variant) (measurement, error) {
	m := measurement{round: round, variant: v}
	gpids, err := b.startJobs(ctx)
	defer b.cleanup(gpids)
	if err != nil {
		return m, err
	}
	// The baseline: the jobs in place on node2, nothing moving.
	var base [2]time.Time
	if len(b.stayers) > 0 {
		base[0] = time.Now()
		if err := benchkit.Sleep(ctx, b.o.baseline); err != nil {
			return m, err
		}
		base[1] = time.Now()
	}
	if v.parallel == 0 {
		m, err = b.moveByHand(ctx, m, gpids)
	} else {
		m, err = b.drain(ctx, m, gpids)
	}
	if err != nil || len(b.stayers) == 0 {
		return m, err
	}
	// The stayers write a sample every 100 ms: wait for the one after the end.
	if err := benchkit.Sleep(ctx, 300*time.Millisecond); err != nil {
		return m, err
	}
	m.stayers, err = b.stayerRates(base, [2]time.Time{m.start, m.end})
	return m, err
}

// startJobs starts -jobs memory holders on node2 and waits until each runs
// with its memory resident.
func (b *bench) startJobs(ctx context.Context) ([]uint64, error) {
	src := fmt.Sprintf("import time\nb = bytearray(b'ssi-drain' * (%d * 1024 * 1024 // 9))\nwhile True:\n    time.sleep(1)\n", b.o.mib)
	var gpids []uint64
	for i := range b.o.jobs {
		wd := filepath.Join(b.wd, fmt.Sprintf("job%d-%d", i, time.Now().UnixNano()))
		if err := os.MkdirAll(wd, 0o755); err != nil {
			return gpids, err
		}
		r, err := b.cl.API.Run(ctx, api.RunRequest{Argv: []string{"python3", "-c", src}, Node: "node2", Workdir: wd, WorkdirExplicit: true})
		if err != nil {
			return gpids, fmt.Errorf("start job %d: %w", i, err)
		}
		gpids = append(gpids, r.GPID)
	}
	want := int64(b.o.mib) << 20 * 9 / 10
	deadline := time.Now().Add(startLimit)
	for {
		procs, err := b.cl.API.PS(ctx, "", false)
		ready := 0
		for _, p := range procs {
			if slices.Contains(gpids, p.GPID) && p.Node == "node2" && p.State == pidtable.Running && p.Stats != nil && p.Stats.RSS >= want {
				ready++
			}
		}
		if err == nil && ready == len(gpids) {
			return gpids, nil
		}
		if time.Now().After(deadline) {
			return gpids, fmt.Errorf("only %d of %d jobs running with %d MiB resident after %s (last error: %v)", ready, len(gpids), b.o.mib, startLimit, err)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return gpids, err
		}
	}
}

// moveByHand moves the jobs one after another, to node1 and node3 in turn.
func (b *bench) moveByHand(ctx context.Context, m measurement, gpids []uint64) (measurement, error) {
	nodes, err := b.cl.API.Nodes(ctx)
	if err != nil {
		return m, err
	}
	i := slices.IndexFunc(nodes, func(n api.NodeInfo) bool { return n.Name == "node2" })
	if i < 0 {
		return m, fmt.Errorf("no node2 in %v", nodes)
	}
	src, err := b.cl.API.For(nodes[i].Addr)
	if err != nil {
		return m, err
	}
	mctx, cancel := context.WithTimeout(ctx, moveLimit)
	defer cancel()
	t0 := time.Now()
	m.start = t0
	for k, g := range gpids {
		to := []string{"node1", "node3"}[k%2]
		st, err := src.Migrate(mctx, g, api.MigrateRequest{Node: to, PostCopy: m.variant.postCopy}, nil)
		if err != nil {
			return m, fmt.Errorf("migrate gpid %d to %s: %w", g, to, err)
		}
		m.frozen = append(m.frozen, time.Duration(st.FrozenMS*float64(time.Millisecond)))
		m.bytes += st.ImageBytes
		if st.PostCopy {
			m.postCopy++
		}
	}
	m.end = time.Now()
	m.total = m.end.Sub(t0)
	return m, nil
}

// drain empties node2 with ssi node drain --parallel N.
func (b *bench) drain(ctx context.Context, m measurement, gpids []uint64) (measurement, error) {
	t0 := time.Now()
	m.start = t0
	if _, err := b.cl.API.Drain(ctx, "node2", api.DrainRequest{Parallel: m.variant.parallel, Deadline: moveLimit}); err != nil {
		return m, err
	}
	deadline := time.Now().Add(moveLimit)
	for {
		d, err := b.cl.API.DrainStatus(ctx, "node2")
		if err == nil && d.State != pidtable.DrainActive {
			m.end = time.Now()
			m.total = m.end.Sub(t0)
			if d.State != pidtable.DrainDone || d.Count()[pidtable.JobMoved] != len(gpids) {
				return m, fmt.Errorf("drain ended %s: %s", d.State, d.Message)
			}
			for _, j := range d.Jobs {
				m.frozen = append(m.frozen, j.Frozen)
				m.bytes += j.Bytes
				if j.PostCopy {
					m.postCopy++
				}
			}
			return m, nil
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("drain not done after %s (last error: %v)", moveLimit, err)
		}
		if err := benchkit.Sleep(ctx, pollEvery); err != nil {
			return m, err
		}
	}
}

// cleanup uncordons node2, kills the jobs and waits until they are gone
// (the stayers stay).
func (b *bench) cleanup(gpids []uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), idleLimit)
	defer cancel()
	_, _ = b.cl.API.CancelDrain(ctx, "node2")
	_, _ = b.cl.API.Uncordon(ctx, "node2")
	for _, g := range gpids {
		_ = b.cl.API.Signal(ctx, g, "KILL")
	}
	for ctx.Err() == nil {
		procs, err := b.cl.API.PS(ctx, "", false)
		if err == nil && !slices.ContainsFunc(procs, func(p api.ProcInfo) bool { return slices.Contains(gpids, p.GPID) }) {
			return
		}
		_ = benchkit.Sleep(ctx, 200*time.Millisecond)
	}
	b.log.Warn("jobs still live after the cleanup", "limit", idleLimit)
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Bounds of one run's steps.
const (
	settleFor   = 6 * time.Second  // healthy before a kill
	loopBefore  = 1 * time.Second  // the loop runs this long before the kill
	loopAfter   = 8 * time.Second  // and this long after it
	rejoinLimit = 60 * time.Second // 3 healthy voting members after the restart
	callLimit   = 30 * time.Second // one ssi ps -A
)

// bench is one benchmark run.
type bench struct {
	o   options
	log *slog.Logger
	rep report

	bins *benchkit.Binaries
	cl   *benchkit.Cluster
}

func newBench(o options) *bench {
	return &bench{o: o, log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
}

// report is what the run found.
type report struct {
	machine   benchkit.Machine
	loadAfter string
	runs      []measurement
	notes     []string
}

// measurement is one leader kill.
type measurement struct {
	run            int
	killed, reader string
	calls, failed  int
	firstFailure   string
	window, rejoin time.Duration
	// runs and runsFailed count the attached `ssi run -- true` of the second
	// loop; longestRun is the slowest.
	runs, runsFailed int
	longestRun       time.Duration
}

// Run measures -runs leader kills on a cluster of its own that it tears
// down before returning.
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
	if b.cl, err = benchkit.StartCluster(ctx, benchkit.ClusterConfig{Flags: b.o.cluster, Nodes: 3, EtcdMembers: 3, Binary: b.bins.SSI, Log: b.log}); err != nil {
		return err
	}
	for _, n := range b.cl.Nodes {
		if _, _, err := benchkit.Exec(ctx, callLimit, b.cl.Env, b.bins.SSI, "run", "-d", "--node", n.Name, "--", "sleep", "100000"); err != nil {
			return err
		}
	}
	for run := 1; run <= b.o.runs; run++ {
		if err := benchkit.Sleep(ctx, settleFor); err != nil {
			return err
		}
		m, err := b.measure(ctx, run)
		if err != nil {
			return fmt.Errorf("run %d: %w", run, err)
		}
		b.rep.runs = append(b.rep.runs, m)
		b.log.Info("measured", "run", run, "killed", m.killed, "window", m.window, "failed", m.failed, "rejoin", m.rejoin)
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
}

// measure kills the leader's agent once while a client loops ps -A through
// another node, then starts the agent again.
func (b *bench) measure(ctx context.Context, run int) (measurement, error) {
	m := measurement{run: run}
	members, err := b.healthy(ctx)
	if err != nil {
		return m, err
	}
	for _, mem := range members {
		if mem.Leader {
			m.killed = mem.Name
		} else if m.reader == "" {
			m.reader = mem.Name
		}
	}
	var readerAPI string
	for _, n := range b.cl.Nodes {
		if n.Name == m.reader {
			readerAPI = n.API()
		}
	}
	env := append(append([]string(nil), b.cl.Env...), "SSI_ENDPOINT="+readerAPI)
	type answer struct {
		end time.Time
		err error
	}
	var (
		mu      sync.Mutex
		answers []answer
		wg      sync.WaitGroup
	)
	loop, stop := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for loop.Err() == nil {
			_, _, err := benchkit.Exec(ctx, callLimit, env, b.bins.SSI, "ps", "-A")
			mu.Lock()
			answers = append(answers, answer{time.Now(), err})
			mu.Unlock()
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for loop.Err() == nil {
			_, took, err := benchkit.Exec(ctx, callLimit, env, b.bins.SSI, "run", "--node", m.reader, "--", "true")
			mu.Lock()
			m.runs++
			m.longestRun = max(m.longestRun, took)
			if err != nil {
				m.runsFailed++
				if m.firstFailure == "" {
					m.firstFailure = err.Error()
				}
			}
			mu.Unlock()
			_ = benchkit.Sleep(loop, 200*time.Millisecond)
		}
	}()
	if err := benchkit.Sleep(ctx, loopBefore); err != nil {
		stop()
		wg.Wait()
		return m, err
	}
	killed := time.Now()
	if err := b.cl.StopAgent(m.killed, syscall.SIGKILL); err != nil {
		stop()
		wg.Wait()
		return m, err
	}
	err = benchkit.Sleep(ctx, loopAfter)
	stop()
	wg.Wait()
	if err != nil {
		return m, err
	}
	var last time.Time
	for _, a := range answers {
		m.calls++
		if a.err != nil {
			m.failed++
			if m.firstFailure == "" {
				m.firstFailure = a.err.Error()
			}
			continue
		}
		if !last.IsZero() && a.end.After(killed) && last.Before(killed.Add(loopAfter)) {
			m.window = max(m.window, a.end.Sub(last))
		}
		last = a.end
	}
	start := time.Now()
	if err := b.cl.StartAgent(ctx, m.killed); err != nil {
		return m, err
	}
	deadline := time.Now().Add(rejoinLimit)
	for {
		if _, err := b.healthy(ctx); err == nil {
			break
		} else if time.Now().After(deadline) {
			return m, fmt.Errorf("%s's member did not rejoin within %s: %w", m.killed, rejoinLimit, err)
		}
		if err := benchkit.Sleep(ctx, 50*time.Millisecond); err != nil {
			return m, err
		}
	}
	m.rejoin = time.Since(start)
	return m, nil
}

// healthy returns the members when there are 3 started, healthy, voting
// ones with a leader.
func (b *bench) healthy(ctx context.Context) ([]pidtable.Member, error) {
	members, err := b.cl.EtcdStatus(ctx)
	if err != nil {
		return nil, err
	}
	ok, leader := 0, false
	for _, m := range members {
		if m.Started() && m.Healthy && !m.Learner {
			ok++
		}
		leader = leader || m.Leader
	}
	if ok != 3 || len(members) != 3 || !leader {
		return nil, fmt.Errorf("%d members, %d healthy voting, leader %v", len(members), ok, leader)
	}
	return members, nil
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + " ms" }

// WriteMarkdown writes the report.
func (b *bench) WriteMarkdown(w io.Writer, err error) {
	r := &b.rep
	fmt.Fprintf(w, "## HA control plane: leader loss (%s)\n\n", r.machine.Started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- command: `%s`\n", benchkit.Command("benchha"))
	fmt.Fprintf(w, "- commit: %s; machine: %s\n", r.machine.Commit, r.machine)
	fmt.Fprintf(w, "- cluster: 3 nodes on this machine, each agent holding a member of a 3-member etcd; the leader's agent SIGKILLed per run\n")
	fmt.Fprintf(w, "- load average before: %s, after: %s\n\n", r.machine.LoadAvg, r.loadAfter)
	runs := benchkit.NewTable("run", "killed (leader)", "through", "ps -A calls", "failed", "window", "runs", "failed", "longest run", "rejoin")
	var windows, rejoins, longestRuns []time.Duration
	failed := 0
	for _, m := range r.runs {
		runs.Add(strconv.Itoa(m.run), m.killed, m.reader, strconv.Itoa(m.calls), strconv.Itoa(m.failed), ms(m.window),
			strconv.Itoa(m.runs), strconv.Itoa(m.runsFailed), ms(m.longestRun), ms(m.rejoin))
		windows, rejoins, longestRuns = append(windows, m.window), append(rejoins, m.rejoin), append(longestRuns, m.longestRun)
		failed += m.failed + m.runsFailed
		if m.firstFailure != "" {
			r.notes = append(r.notes, fmt.Sprintf("run %d: first failed call: %s", m.run, m.firstFailure))
		}
	}
	_ = runs.Write(w)
	fmt.Fprintln(w)
	sum := benchkit.NewTable("figure", "n", "median", "p90", "min", "max")
	for _, f := range []struct {
		name string
		ds   []time.Duration
	}{{"window (longest gap between two ps -A answers)", windows}, {"longest ssi run", longestRuns}, {"rejoin (restart to 3 healthy voting members)", rejoins}} {
		st := benchkit.Summarize(f.ds)
		sum.Add(f.name, strconv.Itoa(st.N), ms(st.Median), ms(st.P90), ms(st.Min), ms(st.Max))
	}
	_ = sum.Write(w)
	fmt.Fprintf(w, "\n- failed ps -A calls and ssi runs, all runs: %d\n", failed)
	for _, n := range r.notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	if err != nil {
		fmt.Fprintf(w, "\n**Incomplete:** %v\n", err)
	}
	fmt.Fprintln(w)
}

// Result returns the figures for the JSON result file.
func (b *bench) Result() benchkit.Result {
	res := benchkit.Result{Machine: b.rep.machine, Notes: b.rep.notes}
	var windows, rejoins, failed []float64
	for _, m := range b.rep.runs {
		windows = append(windows, m.window.Seconds())
		rejoins = append(rejoins, m.rejoin.Seconds())
		failed = append(failed, float64(m.failed+m.runsFailed))
	}
	res.Series = append(res.Series,
		benchkit.NewSeries("leader loss", "window", "s", windows),
		benchkit.NewSeries("leader loss", "rejoin", "s", rejoins),
		benchkit.NewSeries("leader loss", "failed calls", "calls", failed))
	return res
}

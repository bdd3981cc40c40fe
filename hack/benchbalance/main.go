// Command benchbalance measures the automatic balancer: the makespan of a batch
// of CPU-bound jobs all submitted to one node, with the balancer off and on. It
// is a benchmark harness, not a timed test: it brings up a private two-node
// local cluster (namespaces named sbal-node*, see package localcluster) whose
// nodes are each confined to one CPU (node1: `ssi agent --cpuset 0`, node2:
// `--cpuset 1`, so each offers 1 CPU), measures, prints a markdown report on
// stdout and tears the cluster down again, also on error and on Ctrl-C. Progress
// goes to stderr. Run it as root from the repository:
//
//	go run ./hack/benchbalance                  (8 jobs, 3 rounds, equal and unequal lengths)
//	go run ./hack/benchbalance -runs 1 -solo 4s (a quick pass)
//
// # Method
//
// The job is a shell busy loop (`sh -c 'i=0; while [ $i -lt N ]; do
// i=$((i+1)); done'`, about 1 MiB resident): pure CPU, single-threaded, no
// output. Every job runs in a private working directory (CRIU mounts a proc in
// the dumped task's working directory; a shared one would collide with other
// users' dumps on this machine).
//
// Calibration: the loop is run with 2,000,000 iterations by the harness itself
// and its CPU time (user + system) measured; N is scaled so that one job needs
// -solo of CPU time (default 15 s). CPU time rather than wall time, because
// the machine is shared: what the jobs get of their CPUs depends on what else
// runs, and the report gives the load average.
//
// A round submits -jobs jobs (default 8) through the API, all with Node
// "node1" (what `ssi run --node node1` sends), as fast as it can, then waits
// for all of them to end. Makespan: from just before the first submission to
// the latest Ended time of the jobs' records (the nodes share this machine's
// clock). Every job must end with exit code 0, else the round fails. Two
// workloads: "equal" (every job N iterations) and "unequal" (job k of J gets
// N·2k/(J+1) iterations: the same total work as equal, lengths from 2/(J+1) to
// 2J/(J+1) of a solo job). For each workload, -runs rounds, each measuring
// "off" then "on" (the order alternates from round to round, so slow drifts of
// the machine hit both alike). The balancer is switched with the API of `ssi
// balance on|off`, with its default tuning unless -residency is given. Between
// measurements the harness waits until no job is live.
//
// Migrations: the `moved` and `failed` events the balancer wrote during the
// measurement (ssi events). After a move, the harness reads the CPU affinity
// (Cpus_allowed_list in /proc/PID/status) of a moved job on node2 and reports
// it: it must be node2's cpuset ("1").
//
// Reported: the makespans, their medians, the ratio of the medians (on/off;
// ideal 0.5 for equal jobs, target <= 0.6), the lower bound of the makespan
// with a perfect balancer that moves at no cost (half the total work, or the
// longest job), migrations made and failed, and the machine's load average
// before and after (the two CPUs are shared with whatever else runs here).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/localcluster"
	"github.com/ssi-cluster/ssi/pidtable"
)

const (
	calibrateIters = 2_000_000
	readyLimit     = 60 * time.Second
	roundLimit     = 15 * time.Minute // one measurement
	idleLimit      = 2 * time.Minute  // jobs of an aborted measurement gone
	pollEvery      = 200 * time.Millisecond
)

type options struct {
	runs      int
	jobs      int
	solo      time.Duration
	workloads []string
	residency time.Duration
	name      string
	subnet    string
	stateDir  string
	dataDir   string
	bin       string
	repo      string
	timeout   time.Duration
	keep      bool
}

func parseFlags() (options, error) {
	var o options
	var workloads string
	flag.IntVar(&o.runs, "runs", 3, "rounds per workload (each measures off and on)")
	flag.IntVar(&o.jobs, "jobs", 8, "jobs per batch, all submitted to node1")
	flag.DurationVar(&o.solo, "solo", 15*time.Second, "CPU time of one equal job (calibrated)")
	flag.StringVar(&workloads, "workloads", "equal,unequal", "workloads to measure: equal, unequal")
	flag.DurationVar(&o.residency, "residency", 0, "balancer residency override (0: the policy's default)")
	flag.StringVar(&o.name, "name", "sbal", "cluster name; must start with sbal (never another cluster's)")
	flag.StringVar(&o.subnet, "subnet", "10.215.0.0/24", "cluster subnet")
	flag.StringVar(&o.stateDir, "state-dir", "/run/ssi-local", "state dir of local clusters")
	flag.StringVar(&o.dataDir, "data-dir", "", "data dir of the cluster (default /var/lib/ssi-local/NAME)")
	flag.StringVar(&o.bin, "bin", "", "directory holding prebuilt ssi and ssi-shim (default: build them into a temporary directory)")
	flag.StringVar(&o.repo, "repo", "", "repository root (default: found from the working directory)")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Minute, "bound on the whole benchmark (teardown comes after it)")
	flag.BoolVar(&o.keep, "keep", false, "leave the cluster up at the end (remove it with: ssi local down --name NAME)")
	flag.Parse()
	if o.dataDir == "" {
		o.dataDir = filepath.Join("/var/lib/ssi-local", o.name)
	}
	for _, w := range strings.Split(workloads, ",") {
		w = strings.TrimSpace(w)
		if w != "equal" && w != "unequal" {
			return o, fmt.Errorf("-workloads %q: want equal and/or unequal, comma-separated", workloads)
		}
		o.workloads = append(o.workloads, w)
	}
	online, err := isolate.OnlineCPUs()
	switch {
	case os.Geteuid() != 0:
		return o, errors.New("needs root (network namespaces, cgroups, CRIU): run it with sudo")
	case !strings.HasPrefix(o.name, "sbal"):
		return o, fmt.Errorf("-name %q: must start with sbal, so that no other cluster is touched", o.name)
	case o.runs < 1 || o.jobs < 2 || o.jobs > 64:
		return o, errors.New("-runs must be >= 1, -jobs 2 to 64")
	case o.solo < time.Second || o.solo > 5*time.Minute:
		return o, errors.New("-solo: want 1s to 5m")
	case err != nil:
		return o, err
	case !slices.Contains(online, 0) || !slices.Contains(online, 1):
		return o, fmt.Errorf("needs CPUs 0 and 1 online (online: %s)", isolate.FormatCPUList(online))
	}
	return o, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchbalance: %v\n", err)
		os.Exit(2)
	}
	os.Exit(run(o))
}

func run(o options) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Caught until the process exits: a second Ctrl-C must not cut teardown short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	b := &bench{o: o, log: log}
	b.rep.command = "go run ./hack/benchbalance " + strings.Join(os.Args[1:], " ")
	b.rep.loadBefore = benchkit.LoadAvg()
	b.rep.started = time.Now()
	err := b.run(ctx) // tears the cluster down before returning
	b.rep.loadAfter = benchkit.LoadAvg()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", err, ctx.Err())
	}
	b.rep.print(os.Stdout, o, err)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchbalance: %v\n", err)
		return 1
	}
	return 0
}

type bench struct {
	o   options
	log *slog.Logger
	rep report

	binDir string
	ssi    string
	st     *localcluster.State
	api    *api.Client
	wd     string
	iters  int // iterations of an equal job
}

func (b *bench) run(ctx context.Context) error {
	if err := b.build(ctx); err != nil {
		return err
	}
	defer b.teardown()
	var err error
	if b.wd, err = os.MkdirTemp("", b.o.name+"-wd-"); err != nil {
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
		iters := b.workload(w)
		for r := range b.o.runs {
			modes := []bool{false, true}
			if r%2 == 1 {
				modes = []bool{true, false}
			}
			for _, on := range modes {
				m, err := b.measure(ctx, iters, on)
				m.workload, m.round = w, r+1
				if err != nil {
					return fmt.Errorf("%s round %d, balancer %s: %w", w, r+1, onOff(on), err)
				}
				b.rep.runs = append(b.rep.runs, m)
				b.log.Info("measured", "workload", w, "round", r+1, "balancer", onOff(on), "makespan", m.makespan.Round(10*time.Millisecond), "moves", m.moved, "failed", m.failed)
			}
		}
	}
	return nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// workload returns the iterations of each job of a batch.
func (b *bench) workload(w string) []int {
	out := make([]int, b.o.jobs)
	for k := range out {
		out[k] = b.iters
		if w == "unequal" {
			out[k] = b.iters * 2 * (k + 1) / (b.o.jobs + 1)
		}
	}
	// Longest first would favour the balancer (MOSIX moves old jobs);
	// submission order is shortest first.
	return out
}

func (b *bench) build(ctx context.Context) error {
	repo := b.o.repo
	if repo == "" {
		var err error
		if repo, err = benchkit.FindRepo(""); err != nil {
			return err
		}
	}
	b.rep.commit = benchkit.GitDescribe(repo)
	if b.o.bin != "" {
		b.binDir = b.o.bin
	} else {
		var err error
		if b.binDir, err = os.MkdirTemp("", b.o.name+"-bin-"); err != nil {
			return err
		}
		_ = os.Chmod(b.binDir, 0o755)
		for _, t := range [][2]string{{"ssi", "./cmd/ssi"}, {"ssi-shim", "./cmd/ssi-shim"}} {
			b.log.Info("building", "binary", t[0], "dir", b.binDir)
			cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			cmd := exec.CommandContext(cctx, "go", "build", "-o", filepath.Join(b.binDir, t[0]), t[1])
			cmd.Dir, cmd.Stdout, cmd.Stderr = repo, os.Stderr, os.Stderr
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			err := cmd.Run()
			cancel()
			if err != nil {
				return fmt.Errorf("go build %s: %w", t[1], err)
			}
		}
	}
	b.ssi = filepath.Join(b.binDir, "ssi")
	return nil
}

func (b *bench) up(ctx context.Context) error {
	if err := localcluster.Down(ctx, b.o.stateDir, b.o.name, b.log); err != nil {
		return fmt.Errorf("remove the previous %s cluster: %w", b.o.name, err)
	}
	b.log.Info("starting cluster", "name", b.o.name, "subnet", b.o.subnet)
	st, _, err := localcluster.Up(ctx, localcluster.Config{
		Name: b.o.name, Nodes: 2, Subnet: b.o.subnet, Binary: b.ssi,
		DataDir: b.o.dataDir, StateDir: b.o.stateDir, Log: b.log,
		NodeArgs: map[string][]string{"node1": {"--cpuset", "0"}, "node2": {"--cpuset", "1"}},
	})
	b.st = st
	if err != nil {
		return fmt.Errorf("cluster up: %w", err)
	}
	if b.api, err = st.Client(); err != nil {
		return err
	}
	deadline := time.Now().Add(readyLimit)
	for {
		nodes, err := b.api.Nodes(ctx)
		ready := 0
		for _, n := range nodes {
			if n.Ready {
				ready++
				if n.CPUs != 1 {
					return fmt.Errorf("node %s offers %g CPUs, want 1 (--cpuset)", n.Name, n.CPUs)
				}
			}
		}
		if err == nil && ready == 2 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of 2 nodes Ready after %s (last error: %v)", ready, readyLimit, err)
		}
		if err := benchkit.Sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) teardown() {
	b.keepLogs()
	if b.o.keep {
		b.log.Info("leaving the cluster up (-keep)", "name", b.o.name, "down", "ssi local down --name "+b.o.name+" --state-dir "+b.o.stateDir)
		return
	}
	b.log.Info("tearing the cluster down", "name", b.o.name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := localcluster.Down(ctx, b.o.stateDir, b.o.name, b.log); err != nil {
		b.log.Error("teardown", "err", err)
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("teardown error: %v; run `ssi local down --name %s`", err, b.o.name))
	}
	if b.o.bin == "" && b.binDir != "" {
		_ = os.RemoveAll(b.binDir)
	}
	if b.wd != "" {
		_ = os.RemoveAll(b.wd)
	}
}

// keepLogs copies the agents' logs and the jobs' shim logs out of the data
// dir (which teardown removes) into /tmp/NAME-logs, for post-mortems.
func (b *bench) keepLogs() {
	if b.st == nil {
		return
	}
	dst := filepath.Join(os.TempDir(), b.o.name+"-logs")
	_ = os.RemoveAll(dst)
	for _, n := range b.st.Nodes {
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

func (b *bench) setBalancer(ctx context.Context, on bool) error {
	req := api.BalanceRequest{Enabled: on}
	if b.o.residency != 0 {
		req.Residency = &b.o.residency
	}
	_, err := b.api.SetBalance(ctx, req)
	return err
}

func (b *bench) argv(iters int) []string {
	return []string{"sh", "-c", "i=0; while [ $i -lt " + strconv.Itoa(iters) + " ]; do i=$((i+1)); done"}
}

// calibrate runs the job's loop here, outside the cluster, and scales the
// iterations so that a job needs -solo of CPU time. CPU time, not wall time:
// the machine is shared, and a wall-clock calibration would depend on what
// else ran at that moment.
func (b *bench) calibrate(ctx context.Context) error {
	argv := b.argv(calibrateIters)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if err := cmd.Run(); err != nil {
		return err
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if cpu <= 0 {
		return fmt.Errorf("the calibration loop used no CPU time")
	}
	b.iters = int(float64(calibrateIters) * float64(b.o.solo) / float64(cpu))
	b.rep.calibration = fmt.Sprintf("%d iterations used %s of CPU; an equal job is %d iterations (%s of CPU)", calibrateIters, cpu.Round(10*time.Millisecond), b.iters, b.o.solo)
	b.log.Info("calibrated", "iterations", b.iters, "solo", b.o.solo)
	return nil
}

// measurement is one batch's outcome.
type measurement struct {
	workload string
	round    int
	on       bool
	makespan time.Duration
	moved    int
	failed   int
	// back counts moves node2 -> node1.
	back  int
	start time.Time
	// work is the sum of the jobs' CPU times (from the iterations), longest
	// the longest job's.
	work, longest time.Duration
}

func (b *bench) measure(ctx context.Context, iters []int, on bool) (measurement, error) {
	if err := b.waitIdle(ctx); err != nil {
		return measurement{}, err
	}
	if err := b.setBalancer(ctx, on); err != nil {
		return measurement{}, err
	}
	_, since, err := b.api.Events(ctx, 0, 0, 1)
	if err != nil {
		return measurement{}, err
	}
	m, err := b.batch(ctx, iters)
	m.on = on
	if err != nil {
		return m, err
	}
	evs, _, err := b.api.Events(ctx, since, 0, 10000)
	if err != nil {
		return m, err
	}
	for _, ev := range evs {
		if ev.Kind == pidtable.EventMove || ev.Kind == pidtable.EventMoved || ev.Kind == pidtable.EventFailed {
			b.log.Info("event", "kind", ev.Kind, "gpid", ev.GPID, "from", ev.From, "to", ev.To, "reason", ev.Reason, "took", ev.Took, "frozen", ev.Frozen, "at", ev.Time.Sub(m.start).Round(10*time.Millisecond))
		}
		switch ev.Kind {
		case pidtable.EventMoved:
			m.moved++
			if ev.To == "node1" {
				m.back++
			}
		case pidtable.EventFailed:
			m.failed++
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("failed move of gpid %d %s -> %s: %s", ev.GPID, ev.From, ev.To, ev.Reason))
		}
	}
	for _, it := range iters {
		d := time.Duration(float64(b.o.solo) * float64(it) / float64(b.iters))
		if b.iters == 0 {
			d = 0
		}
		m.work += d
		m.longest = max(m.longest, d)
	}
	return m, nil
}

// batch submits one job per entry of iters to node1 and waits for all to end.
func (b *bench) batch(ctx context.Context, iters []int) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, roundLimit)
	defer cancel()
	t0 := time.Now()
	gpids := make([]uint64, 0, len(iters))
	for _, it := range iters {
		resp, err := b.api.Run(ctx, api.RunRequest{Argv: b.argv(it), Node: "node1", Workdir: b.wd, WorkdirExplicit: true})
		if err != nil {
			return measurement{}, fmt.Errorf("submit: %w", err)
		}
		gpids = append(gpids, resp.GPID)
	}
	affinityChecked := false
	var m measurement
	for _, g := range gpids {
		for {
			wctx, wcancel := context.WithTimeout(ctx, time.Second)
			st, err := b.api.Wait(wctx, g)
			wcancel()
			if err == nil {
				if st.State != pidtable.Exited || st.Code != 0 {
					return m, fmt.Errorf("gpid %d ended %s with code %d: %s", g, st.State, st.Code, st.Error)
				}
				break
			}
			if ctx.Err() != nil {
				return m, fmt.Errorf("wait for gpid %d: %w", g, ctx.Err())
			}
			if !affinityChecked {
				affinityChecked = b.checkAffinity(ctx, gpids)
			}
		}
	}
	var end time.Time
	for _, g := range gpids {
		p, err := b.api.Proc(ctx, g)
		if err != nil {
			return m, err
		}
		if p.Ended.After(end) {
			end = p.Ended
		}
	}
	m.makespan, m.start = end.Sub(t0), t0
	return m, nil
}

// checkAffinity reports, once per benchmark, the CPUs a job moved to node2 may
// run on. It returns true once it has looked at one.
func (b *bench) checkAffinity(ctx context.Context, gpids []uint64) bool {
	if b.rep.affinity != "" {
		return true
	}
	for _, g := range gpids {
		p, err := b.api.Proc(ctx, g)
		if err != nil || p.Node != "node2" || p.State != pidtable.Running || p.PID == 0 {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				b.rep.affinity = fmt.Sprintf("gpid %d, moved to node2 (--cpuset 1): Cpus_allowed_list %s", g, strings.TrimSpace(v))
				return true
			}
		}
	}
	return false
}

// waitIdle waits until the cluster has no live job.
func (b *bench) waitIdle(ctx context.Context) error {
	deadline := time.Now().Add(idleLimit)
	for {
		procs, err := b.api.PS(ctx, "", false)
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

// ---- report ----

type report struct {
	command     string
	commit      string
	started     time.Time
	loadBefore  string
	loadAfter   string
	calibration string
	affinity    string
	runs        []measurement
	notes       []string
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s" }

func (r *report) print(w io.Writer, o options, err error) {
	fmt.Fprintf(w, "## Balancer benchmark (%s)\n\n", r.started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- command: `%s`\n", r.command)
	fmt.Fprintf(w, "- commit: %s; %d CPUs, %s\n", r.commit, runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(w, "- cluster: 2 nodes, node1 `--cpuset 0`, node2 `--cpuset 1` (1 CPU each); %d jobs per batch, all `--node node1`\n", o.jobs)
	if o.residency != 0 {
		fmt.Fprintf(w, "- balancer tuning: residency %s (else defaults)\n", o.residency)
	} else {
		fmt.Fprintf(w, "- balancer tuning: the policy's defaults\n")
	}
	if r.calibration != "" {
		fmt.Fprintf(w, "- calibration: %s\n", r.calibration)
	}
	fmt.Fprintf(w, "- load average before: %s, after: %s\n", r.loadBefore, r.loadAfter)
	if r.affinity != "" {
		fmt.Fprintf(w, "- CPU affinity after a move: %s\n", r.affinity)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | round | balancer | makespan | moves done | of which node2 -> node1 | moves failed |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, m := range r.runs {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %d | %d | %d |\n", m.workload, m.round, onOff(m.on), secs(m.makespan), m.moved, m.back, m.failed)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | median off | median on | on/off | CPU work (sum of jobs) | perfect balancer (max(work/2, longest job)) | moves per batch (median) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, wl := range o.workloads {
		var off, on []time.Duration
		var moves []time.Duration
		var work, longest time.Duration
		for _, m := range r.runs {
			if m.workload != wl {
				continue
			}
			work, longest = m.work, m.longest
			if m.on {
				on = append(on, m.makespan)
				moves = append(moves, time.Duration(m.moved))
			} else {
				off = append(off, m.makespan)
			}
		}
		if len(off) == 0 || len(on) == 0 {
			continue
		}
		mo, mn := median(off), median(on)
		bound := max(work/2, longest)
		fmt.Fprintf(w, "| %s | %s | %s | %.2f | %s | %s | %d |\n", wl, secs(mo), secs(mn), mn.Seconds()/mo.Seconds(), secs(work), secs(bound), int64(median(moves)))
	}
	for _, n := range r.notes {
		fmt.Fprintf(w, "\n- note: %s", n)
	}
	if err != nil {
		fmt.Fprintf(w, "\n\n**The benchmark did not complete:** %v\n", err)
	}
	fmt.Fprintln(w)
}

// Command bench is the benchmark harness of the ssi cluster core. It is not a
// timed test: it brings up a private local cluster (network namespaces named
// sbench-node*, see package localcluster), measures it, prints a markdown
// results table on stdout and tears the cluster down again, also on error and on
// Ctrl-C (SIGINT, SIGTERM and SIGHUP are caught; a second Ctrl-C does not cut the
// teardown short). Progress goes to stderr. Run it as root from the repository:
//
//	go run ./hack/bench                  (what `make bench` runs)
//	go run ./hack/bench -runs 20 -jobs 100 -reps 1 -ps-jobs 200   (a quick pass)
//
// # Method
//
// Everything a user would type is measured as a whole CLI process: the wall time
// from just before fork+exec of the ssi binary until wait(2) returns, taken by
// this harness with os/exec from the root network namespace, talking to node1's
// agent (SSI_ENDPOINT=http://<node1>:7070) as a user's shell would. Stdout of
// every timed process, baselines included, goes to a pipe read by the harness.
// The harness builds its own ssi and ssi-shim from the working tree into a
// temporary directory, so it neither uses nor disturbs bin/.
//
// Latency rows are measured interleaved: after -warmup rounds, -runs rounds are
// taken, each running every variant of the section once in a fixed order, so
// that background noise hits all variants alike. Each row reports n, median,
// p90 (nearest rank), min and max. Sections also report where the CPU time went
// while they ran (from /proc/stat, getrusage of the harness's children, and
// /proc/PID/stat of the agents, shims and inits), so that load from other
// processes on a shared machine shows up as "everything else".
//
//  0. Requests on an empty table: `ssi ps -A`, `ssi nodes`, and GET /v1/healthz,
//     /v1/nodes and /v1/procs sent from this process over a kept-alive
//     connection (the agent's own cost, without a CLI process).
//  1. Latency of `ssi run --node node2 -- true` (attached: spawn on a node that is
//     not the endpoint, stream the output, exit with the job's status). Peer
//     baselines in the same rounds are the local spawns `true` (fork+exec), `sh -c
//     true` and `ip netns exec sbench-node2 true`. To show where the time goes:
//     `ssi-shim` without arguments (start-up of a small Go binary), `ssi
//     --version` (CLI start-up alone), `ssi nodes` (start-up plus one API call),
//     `ssi run -d --node node2 -- true` (start-up plus spawn, no output stream),
//     `ssi run --node node1 -- true` (no agent-to-agent forwarding), and spawns
//     and an attached run done in-process through package api. The package
//     initialisers of the ssi binary are timed with GODEBUG=inittrace=1.
//  2. Spawn throughput: -jobs detached `ssi run -d -- sleep 3600` (no --node:
//     random placement) submitted by -concurrency workers, each running one CLI
//     process after the other; jobs/s = gpids returned / (time from the start of
//     the first submission to the return of the last gpid). Repeated -reps times
//     on the same cluster; between repetitions every job is killed with `ssi kill
//     -s KILL` (sent to the owning node's agent) and the harness waits until `ssi
//     ps -A` lists nothing. Ended jobs stay in the table (retention 1 h), so the
//     table grows from one repetition to the next; its size is reported, and 2b
//     repeats the requests of 0 on the table left behind. CPU per job is split
//     into the CLI processes, the agents (node1's with etcd) and the jobs' shims
//     and inits. Memory per job is taken after the last submission: RSS and PSS
//     (/proc/PID/smaps_rollup) of the ssi-shim processes (the shim, a child of
//     an agent, and the job's init, a child of the shim) and the drop of
//     MemAvailable, divided by the number of jobs.
//  3. `ssi ps -A` and `ssi ps -A -o json` latency with -ps-jobs running `sleep
//     3600` jobs, on a fresh cluster (-fresh) so that the table holds exactly
//     those jobs, interleaved with GET /v1/procs in-process (raw response size).
//     3b then repeats other requests with that table (`ssi nodes`, GET
//     /v1/nodes, a spawn, `ssi run --node node2 -- true`), to show how their cost
//     grows with the table. Submission stops early when MemAvailable falls below
//     -min-free-mib or at the time limit, with a note in the results.
//
// Every loop is bounded by a count and a time limit, every command by a
// timeout, the whole run by -timeout.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/joblog"
	"github.com/ssi-cluster/ssi/localcluster"
	"github.com/ssi-cluster/ssi/pki"
)

// Bounds of single operations.
const (
	cmdTimeout   = 60 * time.Second // one CLI process
	latencyLimit = 10 * time.Minute // one interleaved latency measurement
	spawnLimit   = 10 * time.Minute // one spawn repetition
	drainLimit   = 3 * time.Minute  // waiting for killed jobs to be gone
	readyLimit   = 60 * time.Second // waiting for nodes / stats
	killChunk    = 200              // gpids per `ssi kill` process
)

type options struct {
	runs, warmup      int
	jobs, reps        int
	psJobs            int
	concurrency       int
	nodes             int
	keep, fresh       bool
	name, subnet      string
	stateDir, dataDir string
	bin, repo         string
	only              string
	minFreeMiB        int64
	timeout           time.Duration
}

func parseFlags() options {
	var o options
	flag.IntVar(&o.runs, "runs", 50, "measured runs per latency row (>= 20 for the report)")
	flag.IntVar(&o.warmup, "warmup", 3, "warm-up rounds before each latency measurement")
	flag.IntVar(&o.jobs, "jobs", 500, "detached jobs per spawn-throughput repetition (0 skips)")
	flag.IntVar(&o.reps, "reps", 3, "spawn-throughput repetitions")
	flag.IntVar(&o.psJobs, "ps-jobs", 1000, "running jobs in the table for the ps measurement (0 skips)")
	flag.IntVar(&o.concurrency, "concurrency", 8, "concurrent CLI processes submitting jobs")
	flag.IntVar(&o.nodes, "nodes", 3, "nodes of the benchmark cluster (>= 2)")
	flag.BoolVar(&o.keep, "keep", false, "keep the cluster (and its jobs) when done; tear down with 'ssi local down --name NAME'")
	flag.BoolVar(&o.fresh, "fresh", true, "restart the cluster before the ps measurement so the table holds only its jobs")
	flag.StringVar(&o.name, "name", "sbench", "cluster name; must start with sbench (never another cluster's)")
	flag.StringVar(&o.subnet, "subnet", "10.212.0.0/24", "cluster subnet")
	flag.StringVar(&o.stateDir, "state-dir", "/run/ssi-local", "state dir of local clusters")
	flag.StringVar(&o.dataDir, "data-dir", "", "data dir of the cluster (default /var/lib/ssi-local/NAME)")
	flag.StringVar(&o.bin, "bin", "", "directory holding prebuilt ssi and ssi-shim (default: build them into a temporary directory)")
	flag.StringVar(&o.repo, "repo", "", "repository root (default: found from the working directory)")
	flag.StringVar(&o.only, "only", "0,1,2,3", "measurements to run, comma-separated (0 empty table, 1 run latency, 2 spawn throughput, 3 ps)")
	flag.Int64Var(&o.minFreeMiB, "min-free-mib", 4096, "stop submitting jobs when MemAvailable falls below this")
	flag.DurationVar(&o.timeout, "timeout", time.Hour, "bound on the whole benchmark (teardown comes after it)")
	flag.Parse()
	if o.dataDir == "" {
		o.dataDir = filepath.Join("/var/lib/ssi-local", o.name)
	}
	return o
}

func main() {
	o := parseFlags()
	os.Exit(run(o))
}

func run(o options) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := o.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	// Caught until the process exits: a second Ctrl-C must not interrupt teardown.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	b := &bench{o: o, log: log, rep: &report{}}
	err := b.run(ctx) // tears the cluster down before returning
	switch {
	case err == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("%w (-timeout %s reached)", err, o.timeout)
	case ctx.Err() != nil:
		err = fmt.Errorf("%w (interrupted by a signal)", err)
	}
	b.rep.print(os.Stdout, o, err)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

// want reports whether measurement n was asked for with -only.
func (o options) want(n int) bool {
	for _, f := range strings.Split(o.only, ",") {
		if strings.TrimSpace(f) == strconv.Itoa(n) {
			return true
		}
	}
	return false
}

func (o options) validate() error {
	switch {
	case os.Geteuid() != 0:
		return errors.New("needs root (network namespaces, cgroups): run it with sudo")
	case !strings.HasPrefix(o.name, "sbench"):
		return fmt.Errorf("-name %q: must start with sbench, so that no other cluster is touched", o.name)
	case o.runs < 1 || o.warmup < 0 || o.reps < 1 || o.jobs < 0 || o.psJobs < 0:
		return errors.New("-runs and -reps must be >= 1; -warmup, -jobs, -ps-jobs >= 0")
	case o.concurrency < 1 || o.concurrency > 256:
		return errors.New("-concurrency: want 1 to 256")
	case o.nodes < 2:
		return errors.New("-nodes: want at least 2 (the latency run targets node2)")
	}
	for _, f := range strings.Split(o.only, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err != nil || n < 0 || n > 3 {
			return fmt.Errorf("-only %q: want a comma-separated list of 0, 1, 2, 3", o.only)
		}
	}
	return nil
}

// bench is one benchmark run.
type bench struct {
	o   options
	log *slog.Logger
	rep *report

	repo   string
	binDir string
	ssi    string // ssi binary
	shim   string // ssi-shim binary
	st     *localcluster.State
	env    []string // environment of CLI processes
	api    *api.Client
	hc     *http.Client
	user   string
	uid    int
	wd     string // working directory sent with run requests

	fsyncDone bool
}

func (b *bench) run(ctx context.Context) (err error) {
	b.rep.machine = machineInfo()
	if err := b.build(ctx); err != nil {
		return err
	}
	defer b.teardown()
	// A cluster of this name left by an earlier -keep run may hold other
	// binaries or jobs: start from nothing.
	if err := localcluster.Down(ctx, b.o.stateDir, b.o.name, b.log); err != nil {
		return err
	}
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
			if err := localcluster.Down(ctx, b.o.stateDir, b.o.name, b.log); err != nil {
				return err
			}
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
	repo, err := benchkit.FindRepo(b.o.repo)
	if err != nil {
		return err
	}
	b.repo = repo
	b.rep.machine.commit = benchkit.GitDescribe(repo)
	if b.o.bin != "" {
		if b.binDir, err = filepath.Abs(b.o.bin); err != nil {
			return err
		}
		b.rep.machine.commit = fmt.Sprintf("prebuilt binaries from -bin %s (working tree at %s)", b.o.bin, b.rep.machine.commit)
	} else {
		if b.binDir, err = os.MkdirTemp("", b.o.name+"-bin-"); err != nil {
			return err
		}
		for _, t := range [][2]string{{"ssi", "./cmd/ssi"}, {"ssi-shim", "./cmd/ssi-shim"}} {
			b.log.Info("building", "binary", t[0], "dir", b.binDir)
			cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			cmd := exec.CommandContext(cctx, "go", "build", "-o", filepath.Join(b.binDir, t[0]), t[1])
			cmd.Dir, cmd.Stdout, cmd.Stderr = repo, os.Stderr, os.Stderr
			err := cmd.Run()
			cancel()
			if err != nil {
				_ = os.RemoveAll(b.binDir)
				return fmt.Errorf("go build %s: %w", t[1], err)
			}
		}
	}
	b.ssi, b.shim = filepath.Join(b.binDir, "ssi"), filepath.Join(b.binDir, "ssi-shim")
	for _, p := range []string{b.ssi, b.shim} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("binary: %w", err)
		}
	}
	return nil
}

func (b *bench) up(ctx context.Context, what string) error {
	t0 := time.Now()
	b.log.Info("starting cluster", "name", b.o.name, "nodes", b.o.nodes, "subnet", b.o.subnet)
	st, _, err := localcluster.Up(ctx, localcluster.Config{
		Name: b.o.name, Nodes: b.o.nodes, Subnet: b.o.subnet, Binary: b.ssi,
		DataDir: b.o.dataDir, StateDir: b.o.stateDir, Log: b.log,
	})
	if err != nil {
		return fmt.Errorf("cluster up: %w", err)
	}
	b.st = st
	b.env = append(os.Environ(), "SSI_CONFIG="+st.AdminConfig(), "SSI_ENDPOINT="+st.Endpoint())
	b.user, b.uid = "root", os.Geteuid()
	b.wd, _ = os.Getwd()
	if b.api, err = st.Client(); err != nil {
		return err
	}
	admin, err := pki.LoadClientConfig(st.AdminConfig())
	if err != nil {
		return err
	}
	conf, err := admin.TLS()
	if err != nil {
		return err
	}
	b.hc = &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true, TLSClientConfig: conf,
		DialContext: (&net.Dialer{Timeout: 3 * time.Second}).DialContext}}
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	b.rep.extra = append(b.rep.extra, kv{what, fmt.Sprintf("%.2f s (%d nodes, agents Ready)", time.Since(t0).Seconds(), len(st.Nodes))})
	if !b.fsyncDone {
		b.fsyncDone = true
		if s, err := fsyncLatency(st.Nodes[0].DataDir, 50); err == nil {
			b.rep.extra = append(b.rep.extra, kv{"fdatasync of a 4 KiB write in node1's data dir (etcd's WAL is there)", fmt.Sprintf("median %s, p90 %s, min %s, max %s (n=%d)", fmtDur(s.med), fmtDur(s.p90), fmtDur(s.min), fmtDur(s.max), s.n)})
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
	return summarize(ds), nil
}

// waitReady waits until every node is Ready.
func (b *bench) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(readyLimit)
	for {
		nodes, err := b.api.Nodes(ctx)
		ready := 0
		for _, n := range nodes {
			if n.Ready {
				ready++
			}
		}
		if err == nil && ready == b.o.nodes {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d nodes Ready after %s (last error: %v)", ready, b.o.nodes, readyLimit, err)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

func (b *bench) teardown() {
	if b.o.keep {
		b.log.Warn("-keep: leaving the cluster up", "down", fmt.Sprintf("%s local down --name %s --state-dir %s", b.ssi, b.o.name, b.o.stateDir), "binaries", b.binDir)
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("-keep: cluster %s left up; tear it down with `%s local down --name %s`.", b.o.name, b.ssi, b.o.name))
		return
	}
	b.log.Info("tearing the cluster down", "name", b.o.name)
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := localcluster.Down(ctx, b.o.stateDir, b.o.name, b.log); err != nil {
		b.log.Error("teardown", "err", err)
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("teardown error: %v; run `ssi local down --name %s`", err, b.o.name))
	} else {
		b.rep.extra = append(b.rep.extra, kv{"cluster down (final)", fmt.Sprintf("%.2f s", time.Since(t0).Seconds())})
	}
	if b.o.bin == "" && b.binDir != "" {
		_ = os.RemoveAll(b.binDir)
	}
	if left := leftoverNamespaces(b.o.name + "-"); len(left) > 0 {
		b.log.Error("namespaces left behind", "netns", left)
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("namespaces left behind after teardown: %v", left))
	}
}

// ---- variants ----

// execVariant times a whole process; okCode is the exit code that counts as
// success (0, or 2 for ssi-shim without arguments). Stdout is captured through
// a pipe for every variant alike; its size is reported.
func (b *bench) execVariant(name string, okCode int, bin string, args ...string) variant {
	return variant{name: name, fn: func(ctx context.Context) (time.Duration, int, error) {
		d, out, err := timedExec(ctx, b.env, bin, args...)
		if ee := (*exec.ExitError)(nil); okCode != 0 && errors.As(err, &ee) && ee.ExitCode() == okCode {
			err = nil
		}
		return d, len(out), err
	}}
}

// cli is an ssi CLI variant.
func (b *bench) cli(name string, args ...string) variant {
	return b.execVariant(name, 0, b.ssi, args...)
}

// getVariant is a GET on node1's agent from this process (kept-alive
// connection, no CLI): what the agent itself costs. The body size is reported.
func (b *bench) getVariant(path string) variant {
	return variant{name: fmt.Sprintf("GET %s in-process (no CLI)", path), fn: func(ctx context.Context) (time.Duration, int, error) {
		t0 := time.Now()
		size, err := b.rawGet(ctx, path)
		return time.Since(t0), int(size), err
	}}
}

// spawnVariant starts `true` on node, detached, through package api.
func (b *bench) spawnVariant(node string) variant {
	return variant{name: fmt.Sprintf("in-process api: spawn `true` on %s, detached (no CLI)", node), fn: func(ctx context.Context) (time.Duration, int, error) {
		ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
		defer cancel()
		t0 := time.Now()
		_, err := b.api.Run(ctx, api.RunRequest{Argv: []string{"true"}, Node: node, Workdir: b.wd})
		return time.Since(t0), 0, err
	}}
}

// pausedSpawnVariant is spawnVariant after an untimed pause, so that the
// agents and the CPUs are idle when the request arrives, as they are between
// a user's commands.
func (b *bench) pausedSpawnVariant(node string, pause time.Duration) variant {
	v := b.spawnVariant(node)
	v.name = fmt.Sprintf("in-process api: spawn `true` on %s, detached, after an untimed %s pause (no CLI)", node, pause)
	fn := v.fn
	v.fn = func(ctx context.Context) (time.Duration, int, error) {
		if err := benchkit.Sleep(ctx, pause); err != nil {
			return 0, 0, err
		}
		return fn(ctx)
	}
	return v
}

// tableSize returns the number of records in the process table, ended ones
// included (-1 on error).
func (b *bench) tableSize(ctx context.Context) int {
	procs, err := b.api.PS(ctx, "", true)
	if err != nil {
		return -1
	}
	return len(procs)
}

// attachedVariant does what an attached `ssi run --node node -- true` does,
// through package api.
func (b *bench) attachedVariant(node string) variant {
	return variant{name: fmt.Sprintf("in-process api: run `true` on %s + follow to exit (no CLI)", node), fn: func(ctx context.Context) (time.Duration, int, error) {
		t0 := time.Now()
		err := b.apiRunAttached(ctx, node)
		return time.Since(t0), 0, err
	}}
}

// interleaved measures vs as one section.
func (b *bench) interleaved(ctx context.Context, title string, showSize bool, vs []variant) (*section, error) {
	b.log.Info("measuring", "section", title, "variants", len(vs), "runs", b.o.runs, "warmup", b.o.warmup)
	sec := &section{title: title, showSize: showSize}
	m0 := b.mark()
	rows, err := measureInterleaved(ctx, vs, b.o.warmup, b.o.runs, latencyLimit)
	sec.rows = rows
	sec.cpu = m0.until(b.mark())
	b.rep.sections = append(b.rep.sections, sec)
	return sec, err
}

// ---- measurement 0: requests on an empty table ----

func (b *bench) baseline(ctx context.Context) error {
	_, err := b.interleaved(ctx, "0. Requests on an empty table (fresh cluster, no job ever started)", true, []variant{
		b.cli("`ssi ps -A`", "ps", "-A"),
		b.cli("`ssi nodes`", "nodes"),
		b.getVariant("/v1/healthz"),
		b.getVariant("/v1/nodes"),
		b.getVariant("/v1/procs"),
	})
	return err
}

// ---- measurement 1: run latency ----

func (b *bench) latency(ctx context.Context) error {
	node1, node2 := b.st.Nodes[0].Name, b.st.Nodes[1].Name
	ns2 := b.st.Nodes[1].Namespace
	trueBin, err := exec.LookPath("true")
	if err != nil {
		return err
	}
	target := fmt.Sprintf("`ssi run --node %s -- true`", node2)
	base := "`sh -c true` (local)"
	sec, err := b.interleaved(ctx, "1. `ssi run` latency (whole CLI process, from the root namespace)", false, []variant{
		b.execVariant("`true` (local fork+exec)", 0, trueBin),
		b.execVariant(base, 0, "sh", "-c", "true"),
		b.execVariant(fmt.Sprintf("`ip netns exec %s true` (local, in node2's netns)", ns2), 0, "ip", "netns", "exec", ns2, "true"),
		b.execVariant("`ssi-shim` without arguments (start-up of a small Go binary; exits 2)", 2, b.shim),
		b.cli("`ssi --version` (CLI start-up, no network)", "--version"),
		b.cli("`ssi nodes` (CLI + one API call)", "nodes"),
		b.cli(fmt.Sprintf("`ssi run -d --node %s -- true` (spawn, no attach)", node2), "run", "-d", "--node", node2, "--", "true"),
		b.cli(fmt.Sprintf("`ssi run --node %s -- true` (endpoint's own node, no forwarding)", node1), "run", "--node", node1, "--", "true"),
		b.spawnVariant(node1),
		b.spawnVariant(node2),
		b.pausedSpawnVariant(node2, 50*time.Millisecond),
		b.attachedVariant(node2),
		b.cli(target, "run", "--node", node2, "--", "true"),
	})
	if err == nil {
		lo, hi := findRow(sec.rows, base), findRow(sec.rows, target)
		if lo != nil && hi != nil && lo.st.n > 0 && hi.st.n > 0 {
			sec.notes = append(sec.notes, fmt.Sprintf("**%s: median %s**, %s more than `sh -c true` (%.0f×).",
				target, fmtDur(hi.st.med), fmtDur(hi.st.med-lo.st.med), float64(hi.st.med)/float64(lo.st.med)))
		}
		if hi != nil && len(hi.durs) >= 20 {
			k := 10
			sec.notes = append(sec.notes, fmt.Sprintf("Every round adds ended records to the table (%d after this section); %s: median of the first %d runs %s, of the last %d %s.",
				b.tableSize(ctx), target, k, fmtDur(summarize(hi.durs[:k]).med), k, fmtDur(summarize(hi.durs[len(hi.durs)-k:]).med)))
		}
	}
	if it, ierr := b.initTrace(ctx); ierr == nil {
		sec.notes = append(sec.notes, it)
	} else {
		b.log.Warn("inittrace", "err", ierr)
	}
	return err
}

// apiRunAttached does what an attached `ssi run` does, in-process.
func (b *bench) apiRunAttached(ctx context.Context, node string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	resp, err := b.api.Run(ctx, api.RunRequest{Argv: []string{"true"}, Node: node, Workdir: b.wd})
	if err != nil {
		return err
	}
	body, err := b.api.Logs(ctx, resp.GPID, true, 0)
	if err != nil {
		return err
	}
	defer body.Close()
	jr := joblog.NewReader(body)
	for {
		rec, err := jr.Next()
		if err != nil {
			return fmt.Errorf("gpid %d: output stream: %w", resp.GPID, err)
		}
		switch rec.Kind {
		case joblog.Exit:
			var st api.ExitStatus
			if err := json.Unmarshal(rec.Data, &st); err != nil {
				return err
			}
			if st.Code != 0 {
				return fmt.Errorf("gpid %d exited %d %s", resp.GPID, st.Code, st.Error)
			}
			return nil
		case joblog.Error:
			return fmt.Errorf("gpid %d: agent: %s", resp.GPID, rec.Data)
		}
	}
}

// initTrace times the ssi binary's package initialisers (median of 11 runs).
func (b *bench) initTrace(ctx context.Context) (string, error) {
	type trace struct {
		total, end time.Duration // sum of init clocks; end of the last init
		top        map[string]time.Duration
	}
	var traces []trace
	for range 11 {
		cctx, cancel := context.WithTimeout(ctx, cmdTimeout)
		cmd := exec.CommandContext(cctx, b.ssi, "--version")
		cmd.Env = append(slices.Clone(b.env), "GODEBUG=inittrace=1")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		cancel()
		if err != nil {
			return "", err
		}
		t := trace{top: map[string]time.Duration{}}
		sc := bufio.NewScanner(&errb)
		for sc.Scan() {
			// init go.etcd.io/etcd/server/v3/storage/mvcc @8.1 ms, 0.79 ms clock, 21096 bytes, 245 allocs
			f := strings.Fields(sc.Text())
			if len(f) < 7 || f[0] != "init" || f[6] != "clock," {
				continue
			}
			ms, err := strconv.ParseFloat(f[4], 64)
			if err != nil {
				continue
			}
			d := time.Duration(ms * float64(time.Millisecond))
			t.total += d
			if at, err := strconv.ParseFloat(strings.TrimPrefix(f[2], "@"), 64); err == nil {
				t.end = max(t.end, time.Duration(at*float64(time.Millisecond))+d)
			}
			t.top[groupPkg(f[1])] += d
		}
		traces = append(traces, t)
	}
	slices.SortFunc(traces, func(a, b trace) int { return cmp.Compare(a.total, b.total) })
	med := traces[len(traces)/2]
	type pd struct {
		pkg string
		d   time.Duration
	}
	var top []pd
	for k, v := range med.top {
		top = append(top, pd{k, v})
	}
	slices.SortFunc(top, func(a, b pd) int { return cmp.Compare(b.d, a.d) })
	var parts []string
	for _, p := range top[:min(4, len(top))] {
		parts = append(parts, fmt.Sprintf("%s %s", p.pkg, fmtDur(p.d)))
	}
	size := "?"
	if fi, err := os.Stat(b.ssi); err == nil {
		size = fmtSize(int(fi.Size()))
	}
	return fmt.Sprintf("Package initialisers of the ssi binary (%s; GODEBUG=inittrace=1, `ssi --version`, median of %d runs): %s of init work in total, the last one ends %s after process start; largest: %s.",
		size, len(traces), fmtDur(med.total), fmtDur(med.end), strings.Join(parts, ", ")), nil
}

// groupPkg folds a package path into its module-ish prefix for the init summary.
func groupPkg(p string) string {
	for _, pre := range []string{"go.etcd.io/etcd/", "google.golang.org/grpc", "google.golang.org/protobuf", "github.com/prometheus/", "go.opentelemetry.io/", "go.uber.org/zap", "github.com/spf13/", "golang.org/x/net"} {
		if strings.HasPrefix(p, pre) {
			return strings.TrimSuffix(pre, "/") + "*"
		}
	}
	return p
}

// ---- measurement 2: spawn throughput ----

func (b *bench) throughput(ctx context.Context) error {
	sec := &section{title: fmt.Sprintf("2. Spawn throughput: %d × `ssi run -d -- sleep 3600` (random placement), %d concurrent CLI processes", b.o.jobs, b.o.concurrency)}
	b.rep.sections = append(b.rep.sections, sec)
	m0 := b.mark()
	var rates []float64
	for rep := 1; rep <= b.o.reps; rep++ {
		b.log.Info("measurement 2: spawn throughput", "rep", rep, "of", b.o.reps, "jobs", b.o.jobs, "concurrency", b.o.concurrency)
		before := b.sampleMem()
		table, _ := b.api.PS(ctx, "", true)
		sr := b.spawnMany(ctx, b.o.jobs, spawnLimit)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sr.tableBefore = len(table)
		// Memory: right after the last submission, the jobs are idle sleepers.
		after := b.sampleMem()
		after.availDrop = before.avail - after.avail
		if rep == b.o.reps && sr.ok > 0 {
			sec.mem = append(sec.mem, memRow{label: fmt.Sprintf("after %d jobs (repetition %d)", sr.ok, rep), jobs: sr.ok, m: after})
		}
		sr.perNode = b.perNode(ctx)
		t0 := time.Now()
		err := b.killAll(ctx)
		sr.drain = time.Since(t0)
		sec.spawns = append(sec.spawns, sr)
		if err != nil {
			return err
		}
		if sr.ok == 0 {
			return fmt.Errorf("no job could be started: %s", sr.firstErr)
		}
		rates = append(rates, sr.rate())
	}
	sec.cpu = m0.until(b.mark())
	slices.Sort(rates)
	sec.notes = append(sec.notes, fmt.Sprintf("**Median throughput over %d repetitions: %.1f jobs/s** (min %.1f, max %.1f).",
		len(rates), medianF(rates), rates[0], rates[len(rates)-1]))

	// The emptied table still holds every ended record (retention 1 h).
	table, err := b.api.PS(ctx, "", true)
	if err != nil {
		return err
	}
	_, err = b.interleaved(ctx, fmt.Sprintf("2b. Requests after measurement 2: 0 running jobs, %d ended records in the table", len(table)), true, []variant{
		b.cli("`ssi ps -A`", "ps", "-A"),
		b.cli("`ssi nodes`", "nodes"),
		b.getVariant("/v1/nodes"),
		b.getVariant("/v1/procs"),
		b.getVariant("/v1/procs?exited=1"),
	})
	return err
}

type spawnResult struct {
	requested, ok, failed int
	wall                  time.Duration // first submission start → last gpid returned
	perCall               []time.Duration
	stopped               string
	firstErr              string
	tableBefore           int
	drain                 time.Duration
	perNode               map[string]int
	// CPU seconds spent while submitting: by the CLI processes, by the agents
	// (node1's includes etcd), by the new jobs' shims and inits.
	cpuCLI, cpuAgents, cpuJobs float64
}

func (s spawnResult) rate() float64 {
	if s.wall <= 0 {
		return 0
	}
	return float64(s.ok) / s.wall.Seconds()
}

// spawnMany submits n detached sleep jobs with b.o.concurrency CLI processes.
// Submission stops early on the time limit or when memory runs low.
func (b *bench) spawnMany(ctx context.Context, n int, limit time.Duration) spawnResult {
	res := spawnResult{requested: n}
	var (
		next    atomic.Int64
		halt    atomic.Bool
		mu      sync.Mutex
		last    time.Time
		wg      sync.WaitGroup
		stopMsg atomic.Value
	)
	stopWith := func(msg string) {
		if halt.CompareAndSwap(false, true) {
			stopMsg.Store(msg)
		}
	}
	timer := time.AfterFunc(limit, func() { stopWith(fmt.Sprintf("time limit %s reached", limit)) })
	defer timer.Stop()
	guardDone := make(chan struct{})
	go func() { // memory guard
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-guardDone:
				return
			case <-t.C:
				if avail := memAvailable(); avail > 0 && avail < b.o.minFreeMiB<<20 {
					stopWith(fmt.Sprintf("MemAvailable fell to %d MiB (< -min-free-mib %d)", avail>>20, b.o.minFreeMiB))
				}
			}
		}
	}()
	m0 := b.mark()
	start := time.Now()
	for range b.o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !halt.Load() && ctx.Err() == nil {
				if next.Add(1) > int64(n) {
					return
				}
				d, out, err := timedExec(ctx, b.env, b.ssi, "run", "-d", "--", "sleep", "3600")
				end := time.Now()
				if err == nil {
					_, err = strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
				}
				mu.Lock()
				if err != nil {
					res.failed++
					if res.firstErr == "" {
						res.firstErr = err.Error()
					}
				} else {
					res.ok++
					res.perCall = append(res.perCall, d)
					if end.After(last) {
						last = end
					}
				}
				done := res.ok + res.failed
				mu.Unlock()
				if done%100 == 0 {
					b.log.Info("submitted", "jobs", done, "of", n)
				}
			}
		}()
	}
	wg.Wait()
	close(guardDone)
	m1 := b.mark()
	res.cpuCLI = m1.children - m0.children
	res.cpuAgents = m1.agentsOwn - m0.agentsOwn
	res.cpuJobs = m1.jobs - m0.jobs
	if !last.IsZero() {
		res.wall = last.Sub(start)
	}
	if m, ok := stopMsg.Load().(string); ok && res.ok+res.failed < n {
		res.stopped = m
	}
	if ctx.Err() != nil {
		res.stopped = "interrupted"
	}
	return res
}

// perNode counts running jobs per node.
func (b *bench) perNode(ctx context.Context) map[string]int {
	procs, err := b.api.PS(ctx, "", false)
	if err != nil {
		return nil
	}
	m := map[string]int{}
	for _, p := range procs {
		m[p.Node]++
	}
	return m
}

// killAll kills every running job with `ssi kill -s KILL` sent to the owning
// node's agent and waits until `ps -A` lists nothing.
func (b *bench) killAll(ctx context.Context) error {
	procs, err := b.api.PS(ctx, "", false)
	if err != nil {
		return err
	}
	byNode := map[string][]string{}
	for _, p := range procs {
		byNode[p.Node] = append(byNode[p.Node], strconv.FormatUint(p.GPID, 10))
	}
	addr := map[string]string{}
	for _, n := range b.st.Nodes {
		addr[n.Name] = n.API()
	}
	b.log.Info("killing jobs", "jobs", len(procs))
	for node, gpids := range byNode {
		ep, ok := addr[node]
		if !ok {
			ep = b.st.Endpoint()
		}
		for len(gpids) > 0 {
			chunk := gpids[:min(killChunk, len(gpids))]
			gpids = gpids[len(chunk):]
			args := append([]string{"--endpoint", ep, "kill", "-s", "KILL"}, chunk...)
			if _, _, err := timedExec(ctx, b.env, b.ssi, args...); err != nil {
				// A job that ended meanwhile makes kill exit 1; the drain below decides.
				b.log.Warn("kill", "node", node, "err", err)
			}
		}
	}
	deadline := time.Now().Add(drainLimit)
	for {
		left, err := b.api.PS(ctx, "", false)
		if err == nil && len(left) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d jobs still listed %s after kill (last error: %v)", len(left), drainLimit, err)
		}
		if err := benchkit.Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// ---- measurement 3: ps latency with many jobs ----

func (b *bench) psLatency(ctx context.Context) error {
	n := b.o.psJobs
	sec := &section{title: fmt.Sprintf("3. `ssi ps -A` with %d running jobs in the table", n), showSize: true}
	b.rep.sections = append(b.rep.sections, sec)
	idleCPU := b.agentCPU(ctx, 5*time.Second)
	before := b.sampleMem()
	// Will it fit? Estimate from the cost per job measured in measurement 2.
	perJob := int64(12 << 20)
	for _, s := range b.rep.sections {
		for _, m := range s.mem {
			if m.jobs > 0 && m.m.availDrop > 0 {
				perJob = m.m.availDrop / int64(m.jobs)
			}
		}
	}
	if room := before.avail - b.o.minFreeMiB<<20; room < int64(n)*perJob {
		fit := int(max(room, 0) / perJob)
		sec.notes = append(sec.notes, fmt.Sprintf("Memory: MemAvailable %d MiB, ~%.1f MiB per job: only %d of %d jobs fit above -min-free-mib %d; submitting %d.",
			before.avail>>20, float64(perJob)/(1<<20), fit, n, b.o.minFreeMiB, fit))
		n = fit
	}
	if n == 0 {
		return errors.New("not enough memory for the ps measurement")
	}
	b.log.Info("measurement 3: filling the table", "jobs", n)
	sr := b.spawnMany(ctx, n, 2*spawnLimit)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	sr.perNode = b.perNode(ctx)
	sec.spawns = append(sec.spawns, sr)
	running, err := b.waitStats(ctx, sr.ok)
	if err != nil {
		return err
	}
	after := b.sampleMem()
	after.availDrop = before.avail - after.avail
	sec.mem = append(sec.mem, memRow{label: fmt.Sprintf("with %d running jobs", running), jobs: running, m: after})
	busyCPU := b.agentCPU(ctx, 5*time.Second)
	sec.notes = append(sec.notes, fmt.Sprintf("Agents' CPU while idle (sum of %d agents, node1's includes the embedded etcd, 5 s sample): %.1f%% of one core with 0 jobs, %.1f%% with %d running jobs.",
		len(b.st.Nodes), idleCPU, busyCPU, running))

	b.log.Info("measurement 3: ps latency", "running", running, "runs", b.o.runs)
	m0 := b.mark()
	sec.rows, err = measureInterleaved(ctx, []variant{
		b.cli("`ssi ps -A`", "ps", "-A"),
		b.cli("`ssi ps -A -o json`", "ps", "-A", "-o", "json"),
		b.getVariant("/v1/procs"),
	}, b.o.warmup, b.o.runs, latencyLimit)
	sec.cpu = m0.until(b.mark())
	if err != nil {
		return err
	}
	// Requests that do not list jobs, with the full table. The spawns add ended
	// records, so this comes after the ps rows.
	node2 := b.st.Nodes[1].Name
	_, err = b.interleaved(ctx, fmt.Sprintf("3b. Other requests with %d running jobs in the table", running), true, []variant{
		b.cli("`ssi nodes`", "nodes"),
		b.getVariant("/v1/healthz"),
		b.getVariant("/v1/nodes"),
		b.spawnVariant(node2),
		b.cli(fmt.Sprintf("`ssi run --node %s -- true`", node2), "run", "--node", node2, "--", "true"),
	})
	return err
}

// waitStats waits until every running job has live stats in ps (the agents
// publish them every second) and returns the number of running jobs.
func (b *bench) waitStats(ctx context.Context, want int) (int, error) {
	deadline := time.Now().Add(readyLimit)
	for {
		procs, err := b.api.PS(ctx, "", false)
		withStats := 0
		for _, p := range procs {
			if p.Stats != nil {
				withStats++
			}
		}
		if err == nil && withStats >= len(procs) && len(procs) >= want {
			return len(procs), nil
		}
		if time.Now().After(deadline) {
			b.log.Warn("not every job has stats yet", "jobs", len(procs), "with_stats", withStats, "err", err)
			return len(procs), err
		}
		if err := benchkit.Sleep(ctx, 500*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

func (b *bench) rawGet(ctx context.Context, path string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+b.st.Endpoint()+path, nil)
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

// ---- CPU accounting ----

// cpuMark is a snapshot of CPU time counters, in seconds.
type cpuMark struct {
	busy, all float64 // machine-wide, summed over CPUs (/proc/stat)
	self      float64 // this process
	children  float64 // its reaped children: the CLI and baseline processes
	agentsOwn float64 // the live agents (node1's runs etcd)
	agentsKid float64 // their reaped children: ended shims (with inits and jobs)
	jobs      float64 // live shims and inits, with their reaped children
}

const clkTck = 100 // USER_HZ on Linux

func (b *bench) mark() cpuMark {
	var m cpuMark
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal guest guest_nice
		for i := 1; i < len(f) && i <= 8; i++ {
			v, _ := strconv.ParseFloat(f[i], 64)
			m.all += v / clkTck
			if i != 4 && i != 5 { // idle, iowait
				m.busy += v / clkTck
			}
		}
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		m.self = tv(ru.Utime) + tv(ru.Stime)
	}
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) == nil {
		m.children = tv(ru.Utime) + tv(ru.Stime)
	}
	if b.st == nil {
		return m
	}
	for _, n := range b.st.Nodes {
		own, kids := cpuTicks(n.Agent.PID)
		m.agentsOwn += float64(own) / clkTck
		m.agentsKid += float64(kids) / clkTck
	}
	shims, inits := b.jobProcs()
	for _, pid := range append(shims, inits...) {
		m.jobs += taskCPU(pid)
	}
	return m
}

// taskCPU returns the CPU time of a live process's threads in seconds, summed
// from /proc/PID/task/*/schedstat (nanoseconds). /proc/PID/stat rounds down to
// clock ticks (10 ms), which a shim's few milliseconds do not reach.
func taskCPU(pid int) float64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			ns += v
		}
	}
	return float64(ns) / 1e9
}

// cpuUse is what happened between two marks.
type cpuUse struct {
	wall                    float64 // seconds
	cpus                    int
	busy, ours, cli, agents float64 // CPU seconds
}

func (m0 cpuMark) until(m1 cpuMark) cpuUse {
	cpus := runtime.NumCPU()
	u := cpuUse{cpus: cpus, wall: (m1.all - m0.all) / float64(cpus), busy: m1.busy - m0.busy}
	u.cli = m1.children - m0.children
	u.agents = (m1.agentsOwn - m0.agentsOwn) + (m1.agentsKid - m0.agentsKid) + (m1.jobs - m0.jobs)
	u.ours = (m1.self - m0.self) + u.cli + u.agents
	return u
}

func (u cpuUse) String() string {
	if u.wall <= 0 {
		return ""
	}
	capacity := u.wall * float64(u.cpus)
	pct := func(x float64) string { return fmt.Sprintf("%.0f%%", 100*max(x, 0)/capacity) }
	return fmt.Sprintf("CPU over these %.1f s (%d CPUs = 100%%): machine busy %s; this benchmark %s (CLI and baseline processes %s, agents with etcd and jobs %s, harness %s); **everything else on the machine %s**.",
		u.wall, u.cpus, pct(u.busy), pct(u.ours), pct(u.cli), pct(u.agents), pct(u.ours-u.cli-u.agents), pct(u.busy-u.ours))
}

// ---- process and memory sampling ----

type memSample struct {
	shims, inits     int
	shimRSS, initRSS int64 // bytes, summed
	shimPSS, initPSS int64
	agentRSS         int64 // summed over agents
	avail            int64 // MemAvailable
	availDrop        int64 // MemAvailable before - after (set by the caller)
}

// jobProcs finds the cluster's ssi-shim processes: shims are children of the
// agents running our ssi-shim binary, inits children of those shims.
func (b *bench) jobProcs() (shims, inits []int) {
	agents := map[int]bool{}
	for _, n := range b.st.Nodes {
		agents[n.Agent.PID] = true
	}
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := ppid(pid); pp > 0 {
			children[pp] = append(children[pp], pid)
		}
	}
	isShim := func(pid int) bool {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		return err == nil && exe == b.shim
	}
	for a := range agents {
		for _, sp := range children[a] {
			if !isShim(sp) {
				continue
			}
			shims = append(shims, sp)
			for _, ip := range children[sp] {
				if isShim(ip) {
					inits = append(inits, ip)
				}
			}
		}
	}
	return shims, inits
}

func (b *bench) sampleMem() memSample {
	s := memSample{avail: memAvailable()}
	if b.st == nil {
		return s
	}
	for _, n := range b.st.Nodes {
		rss, _ := smapsRollup(n.Agent.PID)
		s.agentRSS += rss
	}
	shims, inits := b.jobProcs()
	for _, pid := range shims {
		rss, pss := smapsRollup(pid)
		s.shims++
		s.shimRSS += rss
		s.shimPSS += pss
	}
	for _, pid := range inits {
		rss, pss := smapsRollup(pid)
		s.inits++
		s.initRSS += rss
		s.initPSS += pss
	}
	return s
}

// agentCPU returns the CPU use of all agents over d, in percent of one core.
func (b *bench) agentCPU(ctx context.Context, d time.Duration) float64 {
	ticks := func() (t int64) {
		for _, n := range b.st.Nodes {
			own, _ := cpuTicks(n.Agent.PID)
			t += own
		}
		return t
	}
	t0, w0 := ticks(), time.Now()
	if benchkit.Sleep(ctx, d) != nil {
		return math.NaN()
	}
	return 100 * float64(ticks()-t0) / clkTck / time.Since(w0).Seconds()
}

func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:])) // [0] is field 3 (state)
}

func ppid(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// cpuTicks returns a process's own CPU time (utime+stime) and that of its
// reaped children (cutime+cstime), in clock ticks.
func cpuTicks(pid int) (own, kids int64) {
	f := statFields(pid)
	if len(f) < 15 {
		return 0, 0
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	return n(11) + n(12), n(13) + n(14) // fields 14-17
}

// smapsRollup returns a process's RSS and PSS in bytes.
func smapsRollup(pid int) (rss, pss int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			rss = v << 10
		case "Pss:":
			pss = v << 10
		}
	}
	return rss, pss
}

func meminfo(key string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

func memAvailable() int64 { return meminfo("MemAvailable") }

func leftoverNamespaces(prefix string) []string {
	ents, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// ---- timing ----

// timedExec runs a command to completion and returns its wall time, from just
// before fork+exec until wait returns.
func timedExec(ctx context.Context, env []string, name string, args ...string) (time.Duration, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	err := cmd.Wait()
	d := time.Since(t0)
	if err != nil {
		return d, out.Bytes(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return d, out.Bytes(), nil
}

// variant is one thing timed by measureInterleaved; fn returns the duration,
// an output size (0 if not meaningful) and an error.
type variant struct {
	name string
	fn   func(context.Context) (time.Duration, int, error)
}

type row struct {
	name  string
	durs  []time.Duration
	size  int // output size of the last successful run
	errs  int
	first string // first error
	st    stats
	cut   string // why it has fewer runs than asked
}

// measureInterleaved runs warmup rounds, then up to runs rounds; each round
// calls every variant once in order. It stops at the time limit.
func measureInterleaved(ctx context.Context, vs []variant, warmup, runs int, limit time.Duration) ([]*row, error) {
	rows := make([]*row, len(vs))
	for i, v := range vs {
		rows[i] = &row{name: v.name}
	}
	deadline := time.Now().Add(limit)
	for round := 0; round < warmup+runs; round++ {
		if err := ctx.Err(); err != nil {
			return rows, err
		}
		if time.Now().After(deadline) {
			for _, r := range rows {
				r.cut = fmt.Sprintf("time limit %s reached after %d runs", limit, len(r.durs))
			}
			break
		}
		for i, v := range vs {
			d, size, err := v.fn(ctx)
			if ctx.Err() != nil {
				return rows, ctx.Err()
			}
			r := rows[i]
			if round < warmup {
				continue
			}
			if err != nil {
				r.errs++
				if r.first == "" {
					r.first = err.Error()
				}
				continue
			}
			r.durs = append(r.durs, d)
			r.size = size
		}
	}
	for _, r := range rows {
		r.st = summarize(r.durs)
		if r.errs > 0 && r.errs*2 > runs {
			return rows, fmt.Errorf("%s failed %d of %d runs: %s", r.name, r.errs, runs, r.first)
		}
	}
	return rows, nil
}

func findRow(rows []*row, name string) *row {
	for _, r := range rows {
		if r.name == name {
			return r
		}
	}
	return nil
}

type stats struct {
	n                  int
	med, p90, min, max time.Duration
}

func summarize(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	rank := int(math.Ceil(0.9*float64(n))) - 1 // nearest rank
	return stats{n: n, med: med, p90: s[max(rank, 0)], min: s[0], max: s[n-1]}
}

func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}

// ---- environment ----

type machine struct {
	cpus          int
	cpuModel      string
	memTotal      int64
	kernel        string
	goVersion     string
	commit        string
	started       time.Time
	load          string
	otherClusters []string
}

func machineInfo() machine {
	m := machine{cpus: runtime.NumCPU(), memTotal: meminfo("MemTotal"), goVersion: runtime.Version(), started: time.Now(), load: benchkit.LoadAvg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	// Namespaces of other local clusters: their agents share the CPUs.
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "sbench") {
			m.otherClusters = append(m.otherClusters, e.Name())
		}
	}
	return m
}

// ---- report ----

type kv struct{ k, v string }

type memRow struct {
	label string
	jobs  int
	m     memSample
}

type section struct {
	title    string
	showSize bool
	cpu      cpuUse
	rows     []*row
	spawns   []spawnResult
	mem      []memRow
	notes    []string
}

type report struct {
	machine  machine
	sections []*section
	extra    []kv
	notes    []string
}

func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f ms", ms)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func fmtSize(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (r *report) print(w io.Writer, o options, runErr error) {
	m := r.machine
	fmt.Fprintf(w, "# ssi benchmark results\n\n")
	fmt.Fprintf(w, "- date: %s, duration %s\n", m.started.Format(time.RFC3339), time.Since(m.started).Round(time.Second))
	fmt.Fprintf(w, "- machine: %d CPUs (%s), %s RAM, kernel %s, %s; commit %s\n", m.cpus, m.cpuModel, mib(m.memTotal), m.kernel, m.goVersion, m.commit)
	fmt.Fprintf(w, "- cluster: %s, %d nodes (network namespaces on this machine), %d runs after %d warm-up rounds per latency row, concurrency %d\n", o.name, o.nodes, o.runs, o.warmup, o.concurrency)
	fmt.Fprintf(w, "- load average (1, 5, 15 min) at start: %s\n", m.load)
	if len(m.otherClusters) > 0 {
		fmt.Fprintf(w, "- other network namespaces on the machine (other clusters share the CPUs): %s\n", strings.Join(m.otherClusters, ", "))
	}
	if runErr != nil {
		fmt.Fprintf(w, "\n**The benchmark did not complete: %v. Results below are partial.**\n", runErr)
	}
	for _, s := range r.sections {
		fmt.Fprintf(w, "\n## %s\n\n", s.title)
		if c := s.cpu.String(); c != "" {
			fmt.Fprintf(w, "%s\n\n", c)
		}
		if len(s.rows) > 0 {
			showSize := s.showSize
			fmt.Fprint(w, "| what | n | median | p90 | min | max |")
			if showSize {
				fmt.Fprint(w, " output |")
			}
			fmt.Fprint(w, "\n|---|--:|--:|--:|--:|--:|")
			if showSize {
				fmt.Fprint(w, "--:|")
			}
			fmt.Fprintln(w)
			for _, rw := range s.rows {
				st := rw.st
				name := rw.name
				if rw.errs > 0 {
					name += fmt.Sprintf(" (%d failed: %s)", rw.errs, trunc(rw.first, 120))
				}
				if st.n == 0 {
					fmt.Fprintf(w, "| %s | 0 | - | - | - | - |", name)
				} else {
					fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s |", name, st.n, fmtDur(st.med), fmtDur(st.p90), fmtDur(st.min), fmtDur(st.max))
				}
				if showSize {
					if rw.size > 0 {
						fmt.Fprintf(w, " %s |", fmtSize(rw.size))
					} else {
						fmt.Fprint(w, " |")
					}
				}
				fmt.Fprintln(w)
				if rw.cut != "" {
					s.notes = append(s.notes, fmt.Sprintf("%s: %s.", rw.name, rw.cut))
				}
			}
			fmt.Fprintln(w)
		}
		if len(s.spawns) > 0 {
			fmt.Fprintln(w, "| run | jobs started / asked | failed | records in table before | wall (first submit → last gpid) | **jobs/s** | CLI latency median | p90 | max | CPU per job: CLI / agents+etcd / shim+init | per node | kill + drain |")
			fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|")
			for i, sr := range s.spawns {
				st := summarize(sr.perCall)
				nodes := make([]string, 0, len(sr.perNode))
				for k, v := range sr.perNode {
					nodes = append(nodes, fmt.Sprintf("%s %d", k, v))
				}
				slices.Sort(nodes)
				drain := "-"
				if sr.drain > 0 {
					drain = fmt.Sprintf("%.1f s", sr.drain.Seconds())
				}
				cpu := "-"
				if sr.ok > 0 {
					per := func(sec float64) string { return fmt.Sprintf("%.1f", 1000*sec/float64(sr.ok)) }
					cpu = fmt.Sprintf("%s / %s / %s ms", per(sr.cpuCLI), per(sr.cpuAgents), per(sr.cpuJobs))
				}
				fmt.Fprintf(w, "| %d | %d / %d | %d | %d | %.2f s | **%.1f** | %s | %s | %s | %s | %s | %s |\n",
					i+1, sr.ok, sr.requested, sr.failed, sr.tableBefore, sr.wall.Seconds(), sr.rate(),
					fmtDur(st.med), fmtDur(st.p90), fmtDur(st.max), cpu, strings.Join(nodes, ", "), drain)
				if sr.firstErr != "" {
					s.notes = append(s.notes, fmt.Sprintf("run %d: first failure: %s", i+1, trunc(sr.firstErr, 300)))
				}
				if sr.stopped != "" {
					s.notes = append(s.notes, fmt.Sprintf("run %d stopped early: %s", i+1, sr.stopped))
				}
			}
			fmt.Fprintln(w)
		}
		if len(s.mem) > 0 {
			fmt.Fprintln(w, "| memory | shims | inits | RSS shim (avg) | RSS init (avg) | **RSS per job** | PSS per job | MemAvailable drop per job | agents' RSS (sum) | MemAvailable |")
			fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
			for _, mr := range s.mem {
				x := mr.m
				avg := func(sum int64, n int) string {
					if n == 0 {
						return "-"
					}
					return mib(sum / int64(n))
				}
				fmt.Fprintf(w, "| %s | %d | %d | %s | %s | **%s** | %s | %s | %s | %s |\n", mr.label, x.shims, x.inits,
					avg(x.shimRSS, x.shims), avg(x.initRSS, x.inits), avg(x.shimRSS+x.initRSS, mr.jobs),
					avg(x.shimPSS+x.initPSS, mr.jobs), avg(x.availDrop, mr.jobs), mib(x.agentRSS), mib(x.avail))
			}
			fmt.Fprintln(w)
		}
		for _, n := range s.notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
	if len(r.extra) > 0 {
		fmt.Fprintf(w, "\n## Other timings\n\n")
		for _, e := range r.extra {
			fmt.Fprintf(w, "- %s: %s\n", e.k, e.v)
		}
	}
	for _, n := range r.notes {
		fmt.Fprintf(w, "\n**Note:** %s\n", n)
	}
}

func trunc(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

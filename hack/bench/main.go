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
// timeout, the whole run by -timeout. -json FILE also writes the figures as
// JSON (package benchkit's Result: every timed value, with n, median, p90,
// min and max).
//
// Files: main.go (flags), cluster.go (the cluster, its teardown, requests
// from this process), variants.go (the timed things and the interleaved
// rounds), latency.go (measurements 0 and 1), throughput.go (2), ps.go (3),
// procs.go (CPU and memory accounting from /proc), report.go (markdown and
// JSON).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
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
	runs, warmup int
	jobs, reps   int
	psJobs       int
	concurrency  int
	nodes        int
	keep, fresh  bool
	cluster      benchkit.ClusterFlags
	only         string
	minFreeMiB   int64
	timeout      time.Duration
	json         string
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
	o.cluster.Register(flag.CommandLine, "sbench", "10.212.0.0/24")
	flag.StringVar(&o.only, "only", "0,1,2,3", "measurements to run, comma-separated (0 empty table, 1 run latency, 2 spawn throughput, 3 ps)")
	flag.Int64Var(&o.minFreeMiB, "min-free-mib", 4096, "stop submitting jobs when MemAvailable falls below this")
	flag.DurationVar(&o.timeout, "timeout", time.Hour, "bound on the whole benchmark (teardown comes after it)")
	flag.StringVar(&o.json, "json", "", "also write the results as JSON to this file")
	flag.Parse()
	return o
}

func main() {
	o := parseFlags()
	if err := o.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	os.Exit(benchkit.Main(benchkit.Config{Program: "bench", Timeout: o.timeout, JSON: o.json}, newBench(o)))
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

func (o *options) validate() error {
	if err := o.cluster.Check("sbench"); err != nil {
		return err
	}
	switch {
	case os.Geteuid() != 0:
		return errors.New("needs root (network namespaces, cgroups): run it with sudo")
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

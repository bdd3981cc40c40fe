// Command benchhollow measures the control plane against the number of nodes
// and of processes, with hollow nodes (package hollow) beside a real 3-node
// local cluster: `ssi run` latency on a real node, how soon a killed node is
// noticed NotReady against its lease TTL, the balancer leader's CPU and its
// round's duration at steady state, etcd's CPU and db size. It is a
// benchmark harness, not a timed test: it builds ssi from this repository,
// brings up a private 3-node local cluster (namespaces named hlb-node*,
// subnet 10.218.41.0/24, see package localcluster), runs each
// configuration's hollow nodes in this process against the cluster's etcd,
// measures, removes them (hollow.Remove) before the next configuration, and
// tears the cluster down at the end, also on error and on Ctrl-C; then it
// prints a markdown report on stdout and writes an SVG plot. Run it as root
// from the repository:
//
//	go run ./hack/benchhollow -svg docs/bench-hollow.svg
//	go run ./hack/benchhollow -configs 10x1000 -runs 3 -kills 2   (a quick pass)
//
// # Method
//
// Configurations (-configs, NODESxRECORDS): each runs NODES hollow nodes, each
// keeping RECORDS/NODES fake jobs running (no job ends during the
// measurement: steady state, every record a running job of a Ready node, as
// the balancer sees them). The hollow nodes are what package hollow makes:
// each its own etcd session and lease (TTL 5 s), its status published every
// second (the agent's rate, with one entry per running job, as a real
// node's), its jobs created from its own gpid block and started by the real
// transitions, through one etcd client with node2's certificate. Every
// configuration starts from a table without hollow records (the previous
// ones are removed), so the records are the configuration's own.
//
// The real nodes: node1 runs the embedded etcd and is kept out of the
// balancer's election (--balancer=false), so the leader is node2 or node3
// and its CPU is its own; the balancer is on, as by default, and every real
// node carries the label kind=real. The hollow jobs report no CPU demand, so
// the balancer plans no move: what is measured is the cost of watching and
// planning over the whole cluster, not of migrations.
//
// At each configuration, once its jobs are all created (the fill's rate, in
// jobs/s over all hollow nodes, is reported) and -settle has passed:
//  1. -runs times, `ssi run --constraint kind=real -- true` as a CLI process
//     (SSI_ENDPOINT node1's agent): wall time from fork to wait(2), which
//     includes placement over every node (the constraint keeps it off the
//     hollow ones, which serve no API), the spawn on a real node, the job's
//     exit and its status;
//  2. over -cpu-window: the balancer leader's CPU and node1's (etcd and its
//     agent) from /proc/PID/stat (utime+stime, in % of one core), this
//     process's own (the hollow nodes), and every round's duration as the
//     leader publishes it (BalancerStatus.RoundTook, sampled every 250 ms,
//     each round once);
//  3. -kills times, a different hollow node is killed as in a crash (it stops
//     renewing its lease, revokes nothing): the time until node1's agent
//     lists it NotReady (GET /v1/nodes every 100 ms), against its TTL; and,
//     read just before the kill, the TTL its lease had left (etcd's
//     TimeToLive, whole seconds): the notice minus that is the lag from the
//     lease's expiry to NotReady in the API (etcd's expiry, the watch, the
//     agent's view, the poll). A lease renewed on time has between 2/3 of
//     the TTL and all of it left; less says the keep-alives run late. The
//     hollow nodes' leases lost before the kills (a renewal too late: the
//     node was NotReady until its next session) and the hollow nodes
//     NotReady at the window's start are reported too;
//  4. etcd's db size and the part in use (Maintenance.Status).
//
// Each figure reports n, median, min and max. The plot shows the medians
// against the number of nodes.
//
// Files: main.go (flags), run.go (the cluster, a configuration's hollow
// nodes), measure.go (the figures), report.go (markdown, JSON, SVG).
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

// config is one configuration: hollow nodes and process records.
type config struct{ nodes, records int }

func (c config) String() string { return fmt.Sprintf("%dx%d", c.nodes, c.records) }

type options struct {
	configs   []config
	runs      int
	kills     int
	settle    time.Duration
	cpuWindow time.Duration
	fillLimit time.Duration
	svg       string
	cluster   benchkit.ClusterFlags
	timeout   time.Duration
	json      string
	// replot: the -json files of earlier runs to plot instead of measuring.
	replot []string
}

func parseFlags() (options, error) {
	var o options
	var configs string
	flag.StringVar(&configs, "configs", "10x1000,100x10000,1000x100000", "configurations NODESxRECORDS, comma-separated: hollow nodes and the running jobs they hold in all")
	flag.IntVar(&o.runs, "runs", 5, "ssi run rounds per configuration")
	flag.IntVar(&o.kills, "kills", 3, "hollow nodes killed per configuration (each measured once)")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "wait after a configuration's jobs are created, before measuring")
	flag.DurationVar(&o.cpuWindow, "cpu-window", 20*time.Second, "how long CPU and balancer rounds are measured per configuration")
	flag.DurationVar(&o.fillLimit, "fill-limit", 15*time.Minute, "bound on creating one configuration's jobs")
	flag.StringVar(&o.svg, "svg", "", "write the plot of the figures against the number of nodes to this SVG file")
	o.cluster.Register(flag.CommandLine, "hlb", "10.218.41.0/24")
	flag.DurationVar(&o.timeout, "timeout", 90*time.Minute, "bound on the whole benchmark (teardown comes after it)")
	flag.StringVar(&o.json, "json", "", "also write the results as JSON to this file")
	var replotFiles string
	flag.StringVar(&replotFiles, "replot", "", "measure nothing: write the -svg plot of the results in these -json files of earlier runs, comma-separated, in order")
	flag.Parse()
	if replotFiles != "" {
		o.replot = strings.Split(replotFiles, ",")
		if o.svg == "" {
			return o, errors.New("-replot: give -svg FILE to write the plot to")
		}
		return o, nil
	}
	if err := o.cluster.Check("hlb"); err != nil {
		return o, err
	}
	for _, s := range strings.Split(configs, ",") {
		n, r, ok := strings.Cut(strings.TrimSpace(s), "x")
		nodes, err1 := strconv.Atoi(n)
		records, err2 := strconv.Atoi(r)
		if !ok || err1 != nil || err2 != nil || nodes < 1 || nodes > 10_000 || records < nodes || records > 1_000_000 {
			return o, fmt.Errorf("-configs %q: want NODESxRECORDS entries (1 to 10000 nodes, at least one record per node, at most 1000000), comma-separated", configs)
		}
		o.configs = append(o.configs, config{nodes, records})
	}
	switch {
	case os.Geteuid() != 0:
		return o, errors.New("needs root (network namespaces, cgroups): run it with sudo")
	case o.runs < 1 || o.kills < 1:
		return o, errors.New("-runs and -kills must be >= 1")
	case o.cpuWindow < time.Second:
		return o, errors.New("-cpu-window: want 1s or more")
	}
	return o, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchhollow: %v\n", err)
		os.Exit(2)
	}
	if len(o.replot) > 0 {
		b := newBench(o)
		if b.rep.results, err = replot(o.replot); err == nil {
			b.rep.commit = "runs " + strings.Join(o.replot, ", ")
			err = os.WriteFile(o.svg, []byte(b.svg()), 0o644)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchhollow: -replot: %v\n", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(benchkit.Main(benchkit.Config{Program: "benchhollow", Timeout: o.timeout, JSON: o.json}, newBench(o)))
}

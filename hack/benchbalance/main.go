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
// -json FILE also writes the figures as JSON (package benchkit's Result).
//
// Files: main.go (flags), cluster.go (the cluster and its teardown),
// measure.go (calibration and one measured batch), report.go (markdown and
// JSON).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/isolate"
)

type options struct {
	runs      int
	jobs      int
	solo      time.Duration
	workloads []string
	residency time.Duration
	cluster   benchkit.ClusterFlags
	timeout   time.Duration
	keep      bool
	json      string
}

func parseFlags() (options, error) {
	var o options
	var workloads string
	flag.IntVar(&o.runs, "runs", 3, "rounds per workload (each measures off and on)")
	flag.IntVar(&o.jobs, "jobs", 8, "jobs per batch, all submitted to node1")
	flag.DurationVar(&o.solo, "solo", 15*time.Second, "CPU time of one equal job (calibrated)")
	flag.StringVar(&workloads, "workloads", "equal,unequal", "workloads to measure: equal, unequal")
	flag.DurationVar(&o.residency, "residency", 0, "balancer residency override (0: the policy's default)")
	o.cluster.Register(flag.CommandLine, "sbal", "10.215.0.0/24")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Minute, "bound on the whole benchmark (teardown comes after it)")
	flag.BoolVar(&o.keep, "keep", false, "leave the cluster up at the end (remove it with: ssi local down --name NAME)")
	flag.StringVar(&o.json, "json", "", "also write the results as JSON to this file")
	flag.Parse()
	if err := o.cluster.Check("sbal"); err != nil {
		return o, err
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
	os.Exit(benchkit.Main(benchkit.Config{Program: "benchbalance", Timeout: o.timeout, JSON: o.json}, newBench(o)))
}

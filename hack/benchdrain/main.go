// Command benchdrain measures ssi node drain: the time to empty a node of J
// jobs holding M MiB each by live migration, with --parallel 1, 2 and 4,
// against the same jobs moved one at a time by hand (ssi migrate), in the
// same run; and what the emptying costs the jobs that stay put on the
// target nodes (their CPU throughput). It is a benchmark harness, not a
// timed test: it brings up a private three-node local cluster (namespaces
// named sdrn-node*, see package localcluster), measures, prints a markdown report on stdout and tears the
// cluster down again, also on error and on Ctrl-C. Progress goes to stderr.
// Run it as root from the repository:
//
//	go run ./hack/benchdrain                      (20 jobs of 64 MiB, 1 round)
//	go run ./hack/benchdrain -jobs 4 -mib 1024    (4 jobs of 1 GiB)
//
// # Method
//
// The job is a Python process that fills -mib MiB with a pattern (so every
// page is resident and private) and sleeps; each runs in a private working
// directory (CRIU mounts a proc in a dumped task's working directory). A
// measurement starts -jobs such jobs on node2, waits until each is running
// with its memory resident (its RSS in node2's status), then empties node2:
//
//   - "by hand": one `ssi migrate` after another (the migrate API at node2's
//     agent), to node1 and node3 in turn; total from the first request to the
//     last answer;
//   - "by hand, post-copy" (-hand-postcopy): the same with `ssi migrate
//     --postcopy`, what the drain chooses for a job whose stop-and-copy
//     freeze it expects to exceed the max freeze (2 s);
//   - "drain pN": `ssi node drain node2 --parallel N` (the API), total from
//     the request to the drain record saying done (polled every 50 ms).
//
// Each job's frozen time is its migration's (MigrateStats.FrozenMS by hand;
// the drain record's per-job Frozen for a drain). After a measurement node2
// is uncordoned and the jobs are killed. Variants run in a rotating order
// from round to round. The balancer is off throughout.
//
// The link: before the rounds, a raw TCP copy of 1 GiB from node2's network
// namespace to node1's over the cluster's bridge (a Python socket sender
// under ip netns exec node2's namespace, a receiver in node1's that answers
// one byte after the last, so the sender's clock covers the whole copy),
// three times, median; once before the stayers start (idle) and once with
// them running. The second is the rate in the conditions the emptyings run
// in: "images / link" in the summary is the jobs' bytes over it (the median
// images shipped by hand, which are stop-and-copy and hold all of each
// job's memory; a post-copy move's images leave its memory out), the time
// the goal "the drain's total close to the sum of the bytes over the
// link's bandwidth" names. It bounds the copy only: a migration also
// dumps and restores, on the same two cores.
//
// The stayers (-stayers, on by default): one CPU-bound job on each target
// node, node1 and node3, started once before the rounds and left running.
// Each is a pure-Python busy loop that appends "UNIX-TIME ITERATIONS" (the
// cumulative count, from time.time()) to a file in its working directory
// every 100 ms; the harness reads the file and takes the throughput over a
// window as the iterations between the first and the last sample inside it
// over the seconds between them (no figure for a window with fewer than two
// samples 200 ms apart). The baseline window is -baseline (5 s) right
// before each emptying, the jobs resident on node2 and nothing moving; the
// "during" window is the emptying, from the first request to the last answer
// (by hand) or to the drain record saying done. Reported: each stayer's
// iterations/s in both and the ratio during / baseline, and per variant the
// median, min and max ratio over nodes and rounds. The loop's throughput is
// the CPU time the kernel gives it over wall time, so it falls with
// anything else that wants the cores: the migration's CRIU dump on node2 and
// restore on node1 and node3, the agents, the copy, and other processes on
// the machine, which the load average before and after shows. The stayers
// also compete with the emptying for the cores, so with them running the
// emptyings' times are those of a busy cluster; -stayers=false measures
// them without.
//
// Reported: per variant, the total time, the longest and the median freeze,
// how many moves were post-copy (the drain picks post-copy for a job whose
// expected freeze exceeds the balancer's max freeze, 2 s by default; by hand
// is stop-and-copy, ssi migrate's default),
// the images shipped and the rate they imply (bytes over the total), and the
// ratio of each drain's total to the by-hand total. Each job's images must
// have moved (the drain's table says moved for every job), else the
// measurement fails. -json FILE also writes the figures as JSON.
//
// Files: main.go (flags), bench.go (cluster and measurements), stayer.go
// (the stayers and the link probe), report.go (markdown and JSON).
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

type options struct {
	runs     int
	jobs     int
	mib      int
	parallel []int
	cluster  benchkit.ClusterFlags
	timeout  time.Duration
	keep     bool
	json     string
	stayers  bool
	baseline time.Duration
	// handPostCopy adds the variant by hand with ssi migrate --postcopy.
	handPostCopy bool
}

func parseFlags() (options, error) {
	var o options
	var parallel string
	flag.IntVar(&o.runs, "runs", 1, "rounds (each measures every variant once)")
	flag.IntVar(&o.jobs, "jobs", 20, "jobs on the drained node")
	flag.IntVar(&o.mib, "mib", 64, "memory each job holds, MiB")
	flag.StringVar(&parallel, "parallel", "1,2,4", "drain --parallel values to measure, comma-separated")
	o.cluster.Register(flag.CommandLine, "sdrn", "10.216.0.0/24")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Minute, "bound on the whole benchmark (teardown comes after it)")
	flag.BoolVar(&o.keep, "keep", false, "leave the cluster up at the end (remove it with: ssi local down --name NAME)")
	flag.StringVar(&o.json, "json", "", "also write the results as JSON to this file")
	flag.BoolVar(&o.stayers, "stayers", true, "run a CPU-bound job on node1 and node3 and measure its throughput without and during each emptying")
	flag.BoolVar(&o.handPostCopy, "hand-postcopy", false, "also move the jobs by hand post-copy (ssi migrate --postcopy), the drain's choice for big jobs")
	flag.DurationVar(&o.baseline, "baseline", 5*time.Second, "the stayers' baseline window before each emptying")
	flag.Parse()
	if err := o.cluster.Check("sdrn"); err != nil {
		return o, err
	}
	for _, p := range strings.Split(parallel, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 64 {
			return o, fmt.Errorf("-parallel %q: want numbers from 1 to 64, comma-separated", parallel)
		}
		o.parallel = append(o.parallel, n)
	}
	switch {
	case os.Geteuid() != 0:
		return o, errors.New("needs root (network namespaces, cgroups, CRIU): run it with sudo")
	case o.runs < 1 || o.jobs < 1 || o.jobs > 200:
		return o, errors.New("-runs must be >= 1, -jobs 1 to 200")
	case o.baseline < time.Second:
		return o, errors.New("-baseline: want at least 1s")
	case o.mib < 1 || o.mib > 16384:
		return o, errors.New("-mib: want 1 to 16384")
	case int64(o.jobs)*int64(o.mib)<<20 > benchkit.MemInfo("MemAvailable")/2:
		return o, fmt.Errorf("-jobs %d × -mib %d: more than half the available memory (%d MiB)", o.jobs, o.mib, benchkit.MemInfo("MemAvailable")>>20)
	}
	return o, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchdrain: %v\n", err)
		os.Exit(2)
	}
	os.Exit(benchkit.Main(benchkit.Config{Program: "benchdrain", Timeout: o.timeout, JSON: o.json}, newBench(o)))
}

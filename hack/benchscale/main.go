// Command benchscale measures the control plane against the size of the
// process table: `ssi ps -A` and what it costs, the agents' memory and the
// balancer leader's CPU, with 1,000 to 100,000 process records. It is a
// benchmark harness, not a timed test: for each variant (a build of ssi, from
// a repository directory) it brings up a private 3-node local cluster
// (namespaces named scl-node*, subnet 10.219.0.0/24, see package
// localcluster), measures, and tears the cluster down again, also on error and
// on Ctrl-C; then it prints a markdown report on stdout and writes an SVG plot.
// Progress goes to stderr. Run it as root from the repository:
//
//	git worktree add /tmp/ssi-base main         (the code to compare with)
//	go run ./hack/benchscale -variants before=/tmp/ssi-base,after=. -svg docs/bench-scale.svg
//	go run ./hack/benchscale -sizes 1000,10000 -runs 3   (a quick pass of this tree)
//
// # Method
//
// Records: the harness writes synthetic process records straight into the
// cluster's etcd (node1's embedded member, with node1's certificate), in the
// layout pidtable writes (/ssi/procs/<gpid, 12 digits>, the JSON of
// pidtable.Proc): state running, one of 1,000 node names that have no agent
// (fake0..fake999), user root, argv `sleep 3600`, in transactions of 128. The
// table grows from one size to the next (1 k, then 9 k more, then 90 k more)
// on the same cluster, and gpids start at 10,000,000 so that no real job's
// gpid meets them. node1 (which runs etcd) is kept out of the balancer's
// election (--balancer=false), so the leader is node2 or node3 and its CPU is
// its own; the balancer is on, as by default.
//
// At each size, after -warmup rounds, -runs rounds each measure, in this
// order: `ssi ps -A` as a CLI process (SSI_ENDPOINT node1's agent, stdout to a
// pipe the harness reads and discards): wall time from fork to wait(2), and
// the CLI's peak RSS (GNU time's %M, ru_maxrss); then the raw etcd
// read of the prefix alone from the harness (one range read of
// /ssi/procs/, values included, nothing decoded) and the streamed read the
// new agent does (etcd's RangeStream of the prefix at one revision). Then, once: every
// agent's RSS (VmRSS; node1's includes the embedded etcd), the balancer
// leader's CPU over -cpu-window (utime+stime of its agent process from
// /proc/PID/stat, in % of one core), node1's CPU over the same window (etcd
// serving it), and etcd's db size (Maintenance.Status: the file, and in use).
// Each figure reports n, median, min and max; the plot shows the medians of
// `ssi ps -A` and of the raw read against the table's size, for each variant.
//
// Files: main.go (flags), run.go (a variant's cluster and its records),
// measure.go (the figures), report.go (markdown, JSON, SVG).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// variant is one build of ssi to measure: a label and its repository.
type variant struct{ label, repo string }

type options struct {
	variants  []variant
	sizes     []int
	runs      int
	warmup    int
	cpuWindow time.Duration
	svg       string
	cluster   benchkit.ClusterFlags
	timeout   time.Duration
	keep      bool
	json      string
}

func parseFlags() (options, error) {
	var o options
	var variants, sizes string
	flag.StringVar(&variants, "variants", "this=.", "builds to measure, LABEL=REPO_DIR, comma-separated (e.g. before=/tmp/ssi-base,after=.)")
	flag.StringVar(&sizes, "sizes", "1000,10000,100000", "table sizes (records), increasing, comma-separated")
	flag.IntVar(&o.runs, "runs", 5, "measured rounds per size")
	flag.IntVar(&o.warmup, "warmup", 1, "unmeasured rounds per size, first")
	flag.DurationVar(&o.cpuWindow, "cpu-window", 30*time.Second, "how long the leader's CPU is measured at each size")
	flag.StringVar(&o.svg, "svg", "", "write the plot of ssi ps -A time against the table's size to this SVG file")
	o.cluster.Register(flag.CommandLine, "scl", "10.219.0.0/24")
	flag.DurationVar(&o.timeout, "timeout", 90*time.Minute, "bound on the whole benchmark (teardown comes after it)")
	flag.BoolVar(&o.keep, "keep", false, "leave the last variant's cluster up at the end (remove it with: ssi local down --name NAME)")
	flag.StringVar(&o.json, "json", "", "also write the results as JSON to this file")
	flag.Parse()
	if err := o.cluster.Check("scl"); err != nil {
		return o, err
	}
	if o.cluster.Bin != "" {
		return o, errors.New("-bin: not used; each -variants entry names a repository to build")
	}
	for _, v := range strings.Split(variants, ",") {
		label, repo, ok := strings.Cut(strings.TrimSpace(v), "=")
		if !ok || label == "" || repo == "" {
			return o, fmt.Errorf("-variants %q: want LABEL=REPO_DIR entries, comma-separated", variants)
		}
		abs, err := filepath.Abs(repo)
		if err != nil {
			return o, err
		}
		o.variants = append(o.variants, variant{label, abs})
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1_000_000 || (len(o.sizes) > 0 && n <= o.sizes[len(o.sizes)-1]) {
			return o, fmt.Errorf("-sizes %q: want increasing record counts from 1 to 1000000, comma-separated", sizes)
		}
		o.sizes = append(o.sizes, n)
	}
	switch {
	case os.Geteuid() != 0:
		return o, errors.New("needs root (network namespaces, cgroups): run it with sudo")
	case o.runs < 1 || o.warmup < 0:
		return o, errors.New("-runs must be >= 1 and -warmup >= 0")
	case o.cpuWindow < time.Second:
		return o, errors.New("-cpu-window: want 1s or more")
	}
	return o, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchscale: %v\n", err)
		os.Exit(2)
	}
	os.Exit(benchkit.Main(benchkit.Config{Program: "benchscale", Timeout: o.timeout, JSON: o.json}, newBench(o)))
}

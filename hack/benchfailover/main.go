// Command benchfailover measures failover from checkpoints (package
// failover, issue 9's Measure): how long a checkpointed job is away when its
// node dies or is cut off, what its checkpoints cost meanwhile, and how long
// a 3-replica service is short of a replica after a node kill. It is a
// benchmark harness, not a timed test: it brings up a private four-node
// local cluster (namespaces named fobbench-node*, subnet 10.217.1.0/24, see
// package localcluster), measures, prints a markdown report on stdout and
// tears the cluster down again, also on error and on Ctrl-C. Progress goes
// to stderr. Run it as root from the repository:
//
//	go run ./hack/benchfailover                 (5 rounds of every variant)
//	go run ./hack/benchfailover -runs 1 -mib 64 (one quick round)
//
// # Method
//
// Four nodes (node1 runs etcd and is never hit; the balancer is off). The
// victim is node3 for the jobs; each round runs every variant once, in a
// rotating order; the figures are the median (and p90, min, max) of -runs
// rounds.
//
//   - "node kill, M MiB" (each -mib): a Python process that fills M MiB with
//     a pattern (every page resident and private) and sleeps, started on
//     node3 with --checkpoint-every 10s (CheckpointEvery). Once it is
//     resident and copies of two of its automatic checkpoints are Ready on
//     another node, node3 dies: its links to every other node cut with
//     blackhole routes (both ways, as e2e's partition helper does), its agent
//     SIGKILLed, every process of the job's cgroup SIGKILLed; t0 is just
//     before the first of these. Then, polled every 50 ms through node1's
//     API: node3 NotReady (its lease expired, 5 s TTL) and the job Running on
//     another node. From the failover event (`ssi events`): the restore
//     duration (its reason's "in N ms") and the controller's restore call
//     (the event's time minus that duration, from t0). Checkpoint cost: each
//     automatic checkpoint's frozen time and bytes from node3's agent log
//     ("checkpointed ... bytes=... frozen=..."), and the copy's bytes (the
//     restored checkpoint's size in `ssi checkpoints`).
//   - "partition": the same job (the first -mib), node3's links cut, its
//     agent alive. Kill-to-running as above, and the gap from the fence
//     (node3's agent log "fenced: ...", time of the line) to the restored
//     copy running (the failover event's time, written once the restore
//     returned): positive means the old copy was killed before the new one
//     ran.
//   - "service": `ssi apply` of a unit with Replicas=3 and Spread=node (one
//     replica on three of the four nodes), then a node kill, as above, of a
//     node (not node1) that holds a replica: t0 to 3 replicas Running on
//     Ready, distinct nodes other than the victim (polled every 50 ms). The
//     goal is the lease TTL + 1 s = 6 s.
//
// After each measurement the links are healed, the agent started again, the
// job killed and its checkpoints removed, and the victim waited for Ready.
// -json FILE also writes the figures as JSON.
//
// Files: main.go (flags), bench.go (cluster and rounds), fault.go (the
// measurements), report.go (markdown and JSON).
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
	runs      int
	mib       []int
	every     time.Duration
	noService bool
	cluster   benchkit.ClusterFlags
	timeout   time.Duration
	keep      bool
	json      string
}

func parseFlags() (options, error) {
	var o options
	var mib string
	flag.IntVar(&o.runs, "runs", 5, "rounds (each measures every variant once)")
	flag.StringVar(&mib, "mib", "64,512", "memory of the checkpointed job, MiB, comma-separated (the first also for the partition)")
	flag.DurationVar(&o.every, "checkpoint-every", 10*time.Second, "the job's --checkpoint-every")
	flag.BoolVar(&o.noService, "no-service", false, "skip the service variant")
	o.cluster.Register(flag.CommandLine, "fobbench", "10.217.1.0/24")
	flag.DurationVar(&o.timeout, "timeout", 90*time.Minute, "bound on the whole benchmark (teardown comes after it)")
	flag.BoolVar(&o.keep, "keep", false, "leave the cluster up at the end (remove it with: ssi local down --name NAME)")
	flag.StringVar(&o.json, "json", "", "also write the results as JSON to this file")
	flag.Parse()
	if err := o.cluster.Check("fobbench"); err != nil {
		return o, err
	}
	for _, p := range strings.Split(mib, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 8192 {
			return o, fmt.Errorf("-mib %q: want numbers from 1 to 8192, comma-separated", mib)
		}
		o.mib = append(o.mib, n)
	}
	switch {
	case os.Geteuid() != 0:
		return o, errors.New("needs root (network namespaces, cgroups, CRIU): run it with sudo")
	case o.runs < 1:
		return o, errors.New("-runs must be >= 1")
	case o.every < time.Second:
		return o, errors.New("-checkpoint-every: at least 1s")
	}
	return o, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchfailover: %v\n", err)
		os.Exit(2)
	}
	os.Exit(benchkit.Main(benchkit.Config{Program: "benchfailover", Timeout: o.timeout, JSON: o.json}, newBench(o)))
}

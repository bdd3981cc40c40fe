// Command benchha measures the HA control plane: how long a client of the
// cluster waits when an etcd member is lost. It is a benchmark harness, not
// a timed test: it brings up a private three-node local cluster whose agents
// each hold a member of a 3-member etcd (ssi local up --etcd-members 3;
// namespaces named sha-node*, see package localcluster), measures, prints a
// markdown report on stdout and tears the cluster down again, also on error
// and on Ctrl-C. Progress goes to stderr. Run it as root from the repository:
//
//	go run ./hack/benchha              (7 runs)
//	go run ./hack/benchha -runs 11
//
// # Method
//
// One job runs on every node. Each run finds the etcd leader (its own
// status, asked through every member) and SIGKILLs the agent of the node
// that holds it, by the PID localcluster started it under: the leader's
// member dies with it. Meanwhile a client loops `ssi ps -A` (the CLI, one
// process per call, back to back) through the agent of another node. The
// window is the longest gap between two answers of that loop around the
// kill (the last answer before it to the first after it, so it includes one
// ordinary call); failed calls are counted (they must be 0: a read meets a
// pause, not an error). A second client loops attached `ssi run --node
// READER -- true` (200 ms apart) through the same agent: its failures (must
// be 0) and its slowest run are reported. Then the agent is started again and the rejoin time
// is from that start until etcd lists 3 started, healthy, voting members.
// The next run starts 6 s after that (etcd's leader must have been in touch
// with a majority for 5 s before it accepts a change). Runs rotate over the
// nodes, as the leadership moves.
//
// Reported: per run, the node killed, the calls and failures of the loop,
// the window and the rejoin time; then the median, p90, min and max of the
// window. -json FILE also writes the figures as JSON.
//
// Files: main.go (flags), bench.go (cluster and measurements).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

type options struct {
	runs    int
	cluster benchkit.ClusterFlags
	timeout time.Duration
	keep    bool
	json    string
}

func parseFlags() (options, error) {
	var o options
	flag.IntVar(&o.runs, "runs", 7, "leader kills to measure")
	o.cluster.Register(flag.CommandLine, "sha", "10.218.0.0/24")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "bound on the whole benchmark (teardown comes after it)")
	flag.BoolVar(&o.keep, "keep", false, "leave the cluster up at the end (remove it with: ssi local down --name NAME)")
	flag.StringVar(&o.json, "json", "", "also write the results as JSON to this file")
	flag.Parse()
	if err := o.cluster.Check("sha"); err != nil {
		return o, err
	}
	switch {
	case os.Geteuid() != 0:
		return o, errors.New("needs root (network namespaces, cgroups): run it with sudo")
	case o.runs < 1 || o.runs > 100:
		return o, errors.New("-runs: want 1 to 100")
	}
	return o, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchha: %v\n", err)
		os.Exit(2)
	}
	os.Exit(benchkit.Main(benchkit.Config{Program: "benchha", Timeout: o.timeout, JSON: o.json}, newBench(o)))
}

// Command benchmsg measures messages between two jobs on different nodes
// through ssi's embedded NATS brokers, against the same nats-server version
// run bare on the same nodes in the same run, and the agent's idle memory
// with the broker on and off (issue 18). It is a benchmark harness: it
// brings up a private three-node local cluster (-name, -subnet; package
// localcluster), measures, prints a markdown report on stdout (progress on
// stderr) and tears everything down, also on error and Ctrl-C. As root,
// from the repository:
//
//	go run ./hack/benchmsg -name sbm -subnet 10.232.0.0/24
//	go run ./hack/benchmsg -runs 1 -rss-runs 0     (a quick pass)
//
// # Peers
//
//   - ssi: the subscriber is an ssi job on node2, the publisher an ssi job
//     on node1 (`ssi run --node`, pinned; -sub-node, -pub-node: others). Each connects as a job does
//     (package msg's Dial with SSI_NATS_URL, its node's broker first, and
//     the job's own credential from SSI_CONFIG: TLS 1.3 with a client
//     certificate, checked by ssi's authenticator), so the messages go
//     node1's broker → route (TLS) → node2's broker.
//   - bare: three nats-servers of the module version in go.mod
//     (github.com/nats-io/nats-server/v2, embedded in this program: `benchmsg
//     server`), one started in each node's network namespace, clustered
//     with routes as ssi's brokers are (each lists all three), JetStream on,
//     no TLS and no authentication (as nats-server runs by default); the
//     subscriber and the publisher are this program started in node2's and
//     node1's network namespaces (not jobs), connected to their node's
//     server.
//   - bare TLS (-bare-tls, on by default): three more such servers with TLS
//     1.3 for clients (a client certificate required) and routes, from a
//     throwaway CA, as ssi's brokers have; it tells the cost of TLS apart
//     from the rest of ssi's path (its authenticator and permissions, the
//     job's cgroup and namespaces, the agents beside the broker).
//   - ssi, clients not in jobs (-ssi-direct, off by default): ssi's
//     brokers, the clients started as the bare peers' are, connecting
//     with msg.Dial and the admin's config to their node's broker; it
//     tells the job's share (its cgroup, namespaces, credential) apart
//     from the broker's.
//
// The client is this program too (`benchmsg client sub|pub|jspub`, built
// into the run's working directory): there is no `nats` CLI on the
// machine, so it replaces `nats bench`, and the same client runs against
// every peer.
//
// # Method
//
// Each round measures every row below once on each peer in turn (the
// order of the peers rotates from round to round), -runs rounds (default
// 5). Reported: per row and peer, the median over the rounds of each
// figure (n = rounds), the ratio ssi / bare of the medians (goal: at least
// 0.8 for throughput; for latency, the ratio bare / ssi, so that it reads
// the same way), the same against bare TLS, and every round's figures.
//
//   - core throughput, -core-sizes (128 B and 16 KiB payloads): the
//     publisher sends -core-n messages (scaled down for big payloads to
//     -core-bytes) as fast as it can, at most -window-bytes ahead of the
//     subscriber, which acknowledges every quarter window on a subject of
//     its own (end-to-end flow control, so that no server drops a slow
//     consumer); msgs/s and MB/s are the subscriber's: messages received
//     over the time from the first to the last.
//   - core latency: the publisher sends -lat-n messages of 128 B paced at
//     -lat-rate per second, each carrying its send time (the nodes are
//     namespaces of one kernel: one clock); the subscriber takes receipt
//     less send time: one-way latency, p50 and p99 of the round's messages.
//   - durable publish with 3 replicas: ssi, a topic made with `ssi topic
//     create benchjs --replicas 3 --max-bytes 512M` (a JetStream stream of
//     file storage on three brokers); bare, a stream of the same config
//     (3 replicas, file storage, 512 MiB, discard old) created on the bare
//     cluster. Throughput: -js-n messages (scaled as for core) published as
//     fast as acknowledgements allow with -js-window unacknowledged
//     (PublishAsync), from the first publication to the last
//     acknowledgement. Latency: -js-lat-n publications one at a time paced
//     at -js-lat-rate, each timed until its acknowledgement (all three
//     replicas' quorum: the leader and one follower).
//
// Agent memory (-rss-runs, default 2 each): a fresh one-node cluster of the
// same name, embedded etcd, broker on (default flags) or off (--nats=false),
// alternately; the agent's VmRSS (/proc/PID/status) -rss-idle (25 s) after
// its node is Ready. It runs after the message rows, once the three-node
// cluster is down. The report also gives node2's and node3's agents' RSS
// (broker on, no etcd) idle before the first round.
//
// Files: main.go (flags), client.go (the client and bare server roles),
// tls.go (the bare TLS peer's PKI), bench.go (cluster, peers, rounds),
// report.go (markdown and JSON).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

type options struct {
	runs int
	// coreSizes are the core throughput payload sizes; coreN the messages
	// of a row, capped at coreBytes of payload.
	coreSizes        []int
	coreN, coreBytes int
	windowBytes      int
	latN             int
	latRate          float64
	jsSizes          []int
	jsN, jsBytes     int
	jsWindow         int
	jsLatN           int
	jsLatRate        float64
	bareTLS          bool
	ssiDirect        bool
	// pubNode and subNode are the publisher's and subscriber's nodes (1-3).
	pubNode, subNode int
	rssRuns          int
	rssIdle          time.Duration
	cluster          benchkit.ClusterFlags
	timeout          time.Duration
	json             string
}

func parseSizes(flagName, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < headerLen || n > 1<<20 {
			return nil, fmt.Errorf("%s %q: want sizes from %d to 1048576 bytes, comma-separated", flagName, s, headerLen)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseFlags(fs *flag.FlagSet, args []string) (options, error) {
	var o options
	var coreSizes, jsSizes string
	fs.IntVar(&o.runs, "runs", 5, "rounds (each measures every row once on both peers)")
	fs.StringVar(&coreSizes, "core-sizes", "128,16384", "core throughput payload sizes, bytes")
	fs.IntVar(&o.coreN, "core-n", 200000, "messages of a core throughput row")
	fs.IntVar(&o.coreBytes, "core-bytes", 256<<20, "at most this much payload a core throughput row (fewer messages for big payloads)")
	fs.IntVar(&o.windowBytes, "window-bytes", 8<<20, "core throughput: payload the publisher may be ahead of the subscriber")
	fs.IntVar(&o.latN, "lat-n", 3000, "messages of a core latency row")
	fs.Float64Var(&o.latRate, "lat-rate", 1000, "core latency: messages per second")
	fs.StringVar(&jsSizes, "js-sizes", "128,16384", "durable throughput payload sizes, bytes")
	fs.IntVar(&o.jsN, "js-n", 20000, "messages of a durable throughput row")
	fs.IntVar(&o.jsBytes, "js-bytes", 128<<20, "at most this much payload a durable throughput row")
	fs.IntVar(&o.jsWindow, "js-window", 256, "durable throughput: publications awaiting acknowledgement")
	fs.IntVar(&o.jsLatN, "js-lat-n", 500, "publications of a durable latency row")
	fs.Float64Var(&o.jsLatRate, "js-lat-rate", 200, "durable latency: publications per second")
	fs.BoolVar(&o.ssiDirect, "ssi-direct", false, "also measure ssi's brokers with the clients outside jobs (in the nodes' namespaces, the admin's config): the job's share of the cost")
	fs.IntVar(&o.pubNode, "pub-node", 1, "the publisher's node, 1 to 3 (node1 also runs the cluster's etcd in its agent)")
	fs.IntVar(&o.subNode, "sub-node", 2, "the subscriber's node, 1 to 3, not the publisher's")
	fs.BoolVar(&o.bareTLS, "bare-tls", true, "also measure bare servers with TLS 1.3 and client certificates for clients and routes (as ssi's brokers)")
	fs.IntVar(&o.rssRuns, "rss-runs", 2, "agent memory: one-node clusters per variant (broker on, off); 0: skip")
	fs.DurationVar(&o.rssIdle, "rss-idle", 25*time.Second, "agent memory: idle time after Ready before reading VmRSS")
	o.cluster.Register(fs, "sbm", "10.232.0.0/24")
	fs.DurationVar(&o.timeout, "timeout", 40*time.Minute, "bound on the whole benchmark (teardown comes after it)")
	fs.StringVar(&o.json, "json", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := o.cluster.Check("sbm"); err != nil {
		return o, err
	}
	var err error
	if o.coreSizes, err = parseSizes("-core-sizes", coreSizes); err != nil {
		return o, err
	}
	if o.jsSizes, err = parseSizes("-js-sizes", jsSizes); err != nil {
		return o, err
	}
	switch {
	case o.runs < 1:
		return o, fmt.Errorf("-runs %d: want at least 1", o.runs)
	case o.coreN < 1 || o.latN < 1 || o.jsN < 1 || o.jsLatN < 1:
		return o, errors.New("-core-n, -lat-n, -js-n and -js-lat-n: want at least 1")
	case o.coreBytes < 1<<20 || o.jsBytes < 1<<20:
		return o, errors.New("-core-bytes and -js-bytes: want at least 1 MiB")
	case o.windowBytes < 64<<10:
		return o, errors.New("-window-bytes: want at least 64 KiB")
	case o.latRate <= 0 || o.latRate > 100000 || o.jsLatRate <= 0 || o.jsLatRate > 100000:
		return o, errors.New("-lat-rate and -js-lat-rate: want more than 0 and at most 100000 per second")
	case o.jsWindow < 1 || o.jsWindow > 65536:
		return o, fmt.Errorf("-js-window %d: want 1 to 65536", o.jsWindow)
	case o.pubNode < 1 || o.pubNode > 3 || o.subNode < 1 || o.subNode > 3 || o.pubNode == o.subNode:
		return o, fmt.Errorf("-pub-node %d, -sub-node %d: want two different nodes from 1 to 3", o.pubNode, o.subNode)
	case o.rssRuns < 0 || o.rssIdle < 0:
		return o, errors.New("-rss-runs and -rss-idle must not be negative")
	case os.Geteuid() != 0:
		return o, errors.New("needs root (network namespaces, cgroups): run it with sudo")
	}
	return o, nil
}

func main() {
	// The roles the harness runs in jobs and namespaces.
	if len(os.Args) > 1 && (os.Args[1] == "client" || os.Args[1] == "server") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		var err error
		if os.Args[1] == "client" {
			err = runClient(ctx, os.Args[2:])
		} else {
			err = runServer(ctx, os.Args[2:])
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchmsg %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchmsg: %v\n", err)
		os.Exit(2)
	}
	os.Exit(benchkit.Main(benchkit.Config{Program: "benchmsg", Timeout: o.timeout, JSON: o.json}, newBench(o)))
}

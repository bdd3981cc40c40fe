package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/netns"
)

// The durable topic (and the bare peers' stream).
const (
	topic         = "benchjs"
	topicMaxBytes = 512 << 20
)

// Bounds.
const (
	clientLimit = 3 * time.Minute  // one client's run
	setupLimit  = 90 * time.Second // bare servers ready, streams created
	pollEvery   = 20 * time.Millisecond
)

// peer is what a row runs against.
type peer string

const (
	peerSSI     peer = "ssi"
	peerBare    peer = "bare"
	peerBareTLS peer = "bare TLS"
	// peerSSIDirect: ssi's brokers, the clients outside jobs (-ssi-direct).
	peerSSIDirect peer = "ssi, clients not in jobs"
)

// ports are a bare peer's client and route ports in each node's namespace.
func (p peer) ports() (client, route int) {
	if p == peerBareTLS {
		return 14232, 16232
	}
	return 14222, 16222
}

// dir names the peer's files.
func (p peer) dir() string {
	if p == peerBareTLS {
		return "baretls"
	}
	return "bare"
}

// kind is a row's measurement.
type kind string

const (
	coreTput kind = "core throughput"
	coreLat  kind = "core latency"
	jsTput   kind = "durable throughput"
	jsLat    kind = "durable latency"
)

// row is one line of the report: a measurement and its payload size.
type row struct {
	kind kind
	size int
}

func (r row) String() string { return fmt.Sprintf("%s, %s", r.kind, sizeStr(r.size)) }

func sizeStr(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return strconv.Itoa(n/1024) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}

// sample is one measurement of a row on a peer.
type sample struct {
	row   row
	peer  peer
	round int
	res   clientResult // the subscriber's (core) or publisher's (durable)
	pub   clientResult // core: the publisher's
}

// bench is one benchmark run.
type bench struct {
	o   options
	log *slog.Logger
	rep report

	bins *benchkit.Binaries
	self string // this program, built for the jobs and namespaces
	cl   *benchkit.Cluster
	wd   string
	bare []*exec.Cmd
	seq  int // measurement counter (file names)
	// tlsDir holds the bare TLS peer's PKI.
	tlsDir string
}

// peers are the peers measured, ssi first.
func (b *bench) peers() []peer {
	ps := []peer{peerSSI, peerBare}
	if b.o.bareTLS {
		ps = append(ps, peerBareTLS)
	}
	if b.o.ssiDirect {
		ps = append(ps, peerSSIDirect)
	}
	return ps
}

// barePeers are the peers with servers of their own.
func (b *bench) barePeers() []peer {
	var ps []peer
	for _, p := range b.peers() {
		if p == peerBare || p == peerBareTLS {
			ps = append(ps, p)
		}
	}
	return ps
}

func newBench(o options) *bench {
	return &bench{o: o, log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
}

// rows are the rows of a round, in order.
func (b *bench) rows() []row {
	var rs []row
	for _, s := range b.o.coreSizes {
		rs = append(rs, row{coreTput, s})
	}
	rs = append(rs, row{coreLat, 128})
	for _, s := range b.o.jsSizes {
		rs = append(rs, row{jsTput, s})
	}
	return append(rs, row{jsLat, 128})
}

// Run measures the rows -runs times, then the agents' memory.
func (b *bench) Run(ctx context.Context) error {
	prep, err := benchkit.Prepare(ctx, b.log, b.o.cluster)
	b.rep.machine = prep.Machine
	defer func() { b.rep.loadAfter = benchkit.LoadAvg() }()
	if err != nil {
		return err
	}
	defer prep.Release()
	b.bins = prep.Bins
	repo := prep.Repo
	defer b.bins.Remove()
	if b.wd, err = os.MkdirTemp("", b.o.cluster.Name+"-wd-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.wd)
	_ = os.Chmod(b.wd, 0o755)
	b.self = filepath.Join(b.wd, "benchmsg")
	b.log.Info("building", "binary", "benchmsg", "dir", b.wd)
	if _, _, err := benchkit.Exec(ctx, 5*time.Minute, append(os.Environ(), "CGO_ENABLED=0"), "go", "build", "-C", repo, "-o", b.self, "./hack/benchmsg"); err != nil {
		return err
	}
	if err := b.messages(ctx); err != nil {
		return err
	}
	return b.memory(ctx)
}

// messages measures the message rows on a three-node cluster it tears down.
func (b *bench) messages(ctx context.Context) (err error) {
	defer b.teardown()
	if b.cl, err = benchkit.StartCluster(ctx, benchkit.ClusterConfig{Flags: b.o.cluster, Nodes: 3, Binary: b.bins.SSI, Log: b.log}); err != nil {
		return err
	}
	if _, err := b.cl.API.SetBalance(ctx, api.BalanceRequest{Enabled: false}); err != nil {
		return fmt.Errorf("switch the balancer off: %w", err)
	}
	if err := benchkit.Sleep(ctx, 10*time.Second); err != nil {
		return err
	}
	for _, n := range b.cl.Nodes[1:] {
		b.rep.idleRSS = append(b.rep.idleRSS, nodeRSS{node: n.Name, rss: vmRSS(n.Agent.PID)})
	}
	if b.o.bareTLS {
		b.tlsDir = filepath.Join(b.wd, "tls")
		var ips []string
		for _, n := range b.cl.Nodes {
			ips = append(ips, n.IP)
		}
		if err := os.Mkdir(b.tlsDir, 0o700); err != nil {
			return err
		}
		if err := writeTLS(b.tlsDir, ips); err != nil {
			return fmt.Errorf("bare TLS peer's certificates: %w", err)
		}
	}
	peers := b.peers()
	for _, p := range b.barePeers() {
		if err := b.startBare(ctx, p); err != nil {
			return fmt.Errorf("%s servers: %w", p, err)
		}
	}
	if err := b.createStreams(ctx); err != nil {
		return err
	}
	for round := 1; round <= b.o.runs; round++ {
		for _, r := range b.rows() {
			for i := range peers {
				p := peers[(i+round-1)%len(peers)]
				s, err := b.measure(ctx, round, r, p)
				if err != nil {
					return fmt.Errorf("round %d, %s, %s: %w", round, r, p, err)
				}
				b.rep.samples = append(b.rep.samples, s)
				b.log.Info("measured", "round", round, "row", r.String(), "peer", p, "msgs/s", s.msgsPerSec(), "p50_ms", s.res.Latency.P50, "p99_ms", s.res.Latency.P99)
			}
		}
	}
	return nil
}

// teardown stops the bare servers and the cluster.
func (b *bench) teardown() {
	for _, c := range b.bare {
		stopCmd(c)
	}
	b.bare = nil
	left, err := benchkit.StopCluster(b.o.cluster, b.log)
	if err != nil {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("teardown error: %v; run `ssi local down --name %s`", err, b.o.cluster.Name))
	}
	if len(left) > 0 {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("namespaces left behind after teardown: %v", left))
	}
}

// stopCmd ends a process this program started: SIGTERM, SIGKILL after 10 s.
func stopCmd(c *exec.Cmd) {
	if c.Process == nil {
		return
	}
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	_ = c.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.Process.Kill()
		<-done
	}
}

// bareURL is bare peer p's client URL on node i (0-based).
func (b *bench) bareURL(p peer, i int) string {
	port, _ := p.ports()
	scheme := "nats://"
	if p == peerBareTLS {
		scheme = "tls://"
	}
	return scheme + net.JoinHostPort(b.cl.Nodes[i].IP, strconv.Itoa(port))
}

// bareArgs are the client flags that reach bare peer p on node i.
func (b *bench) bareArgs(p peer, i int) []string {
	if p == peerSSIDirect {
		return []string{"-url", "tls://" + net.JoinHostPort(b.cl.Nodes[i].IP, "7072"), "-ssi-config", b.cl.AdminConfig()}
	}
	args := []string{"-url", b.bareURL(p, i)}
	if p == peerBareTLS {
		args = append(args, "-tls", b.tlsDir)
	}
	return args
}

// startBare starts bare peer p's nats-server in each node's network
// namespace.
func (b *bench) startBare(ctx context.Context, p peer) error {
	cport, rport := p.ports()
	var routes []string
	for _, n := range b.cl.Nodes {
		routes = append(routes, net.JoinHostPort(n.IP, strconv.Itoa(rport)))
	}
	var ready []string
	for i, n := range b.cl.Nodes {
		dir := filepath.Join(b.wd, p.dir()+"-"+n.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		rf := filepath.Join(dir, "ready")
		log, err := os.Create(filepath.Join(dir, "server.log"))
		if err != nil {
			return err
		}
		args := []string{"server", "-name", p.dir() + "-" + n.Name,
			"-listen", net.JoinHostPort(n.IP, strconv.Itoa(cport)),
			"-cluster", routes[i], "-routes", strings.Join(routes, ","),
			"-store", filepath.Join(dir, "js"), "-ready", rf}
		if p == peerBareTLS {
			args = append(args, "-tls", b.tlsDir)
		}
		cmd := exec.Command(b.self, args...)
		cmd.Stdout, cmd.Stderr = log, log
		err = netns.StartIn(n.Namespace, cmd)
		log.Close()
		if err != nil {
			return err
		}
		b.bare = append(b.bare, cmd)
		ready = append(ready, rf)
	}
	for i, rf := range ready {
		if err := waitFile(ctx, rf, setupLimit, nil); err != nil {
			return fmt.Errorf("bare server on %s: %w (log: %s)", b.cl.Nodes[i].Name, err, filepath.Join(filepath.Dir(rf), "server.log"))
		}
	}
	return nil
}

// createStreams creates the durable topic on ssi (ssi topic create) and the
// stream of the same config on the bare servers, each retried while their
// JetStream clusters form.
func (b *bench) createStreams(ctx context.Context) error {
	args := []string{"topic", "create", topic, "--replicas", "3", "--max-bytes", "512M"}
	tries := 0
	if err := retry(ctx, setupLimit, func() error {
		tries++
		_, _, err := benchkit.Exec(ctx, 30*time.Second, b.cl.Env, b.bins.SSI, args...)
		if err != nil && tries > 1 && strings.Contains(err.Error(), "exists") {
			return nil // an earlier try made it, its answer lost
		}
		return err
	}); err != nil {
		return fmt.Errorf("ssi %s: %w", strings.Join(args, " "), err)
	}
	for _, p := range b.barePeers() {
		if err := b.createBareStream(ctx, p); err != nil {
			return fmt.Errorf("%s stream: %w", p, err)
		}
	}
	return nil
}

// createBareStream creates the stream of the durable rows on bare peer p:
// the config msg.Service gives a topic.
func (b *bench) createBareStream(ctx context.Context, p peer) error {
	opts := []nats.Option{nats.Name("benchmsg setup")}
	if p == peerBareTLS {
		cfg, err := loadTLS(b.tlsDir, false)
		if err != nil {
			return err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	nc, err := nats.Connect(b.bareURL(p, 0), opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	cfg := &nats.StreamConfig{
		Name: topic, Subjects: []string{topic, topic + ".>"}, Replicas: 3,
		MaxBytes: topicMaxBytes, Storage: nats.FileStorage, Discard: nats.DiscardOld,
	}
	return retry(ctx, setupLimit, func() error { _, err := js.AddStream(cfg); return err })
}

// retry calls f until it succeeds or limit passes (its last error then).
func retry(ctx context.Context, limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		if err := benchkit.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

// measure runs row r once on peer p.
func (b *bench) measure(ctx context.Context, round int, r row, p peer) (sample, error) {
	s := sample{row: r, peer: p, round: round}
	b.seq++
	base := filepath.Join(b.wd, fmt.Sprintf("m%04d", b.seq))
	switch r.kind {
	case coreTput, coreLat:
		n, rate, window := b.o.latN, b.o.latRate, 0
		if r.kind == coreTput {
			n, rate, window = min(b.o.coreN, b.o.coreBytes/r.size), 0, max(b.o.windowBytes/r.size, 4)
		}
		common := []string{"-subject", "bench", "-n", strconv.Itoa(n), "-size", strconv.Itoa(r.size), "-window", strconv.Itoa(window)}
		subOut, ready := base+"-sub.json", base+"-sub.ready"
		waitSub, err := b.client(ctx, p, b.o.subNode-1, append([]string{roleSub, "-out", subOut, "-ready", ready}, common...))
		if err != nil {
			return s, err
		}
		if err := waitFile(ctx, ready, clientLimit, nil); err != nil {
			return s, fmt.Errorf("subscriber: %w", err)
		}
		pubOut := base + "-pub.json"
		waitPub, err := b.client(ctx, p, b.o.pubNode-1, append([]string{rolePub, "-out", pubOut, "-rate", ftoa(rate)}, common...))
		if err != nil {
			return s, err
		}
		if s.pub, err = waitPub(pubOut); err != nil {
			return s, fmt.Errorf("publisher: %w", err)
		}
		if s.res, err = waitSub(subOut); err != nil {
			return s, fmt.Errorf("subscriber: %w", err)
		}
		if s.res.Messages != n {
			return s, fmt.Errorf("subscriber got %d of %d messages", s.res.Messages, n)
		}
	default:
		n, rate := b.o.jsLatN, b.o.jsLatRate
		if r.kind == jsTput {
			n, rate = min(b.o.jsN, b.o.jsBytes/r.size), 0
		}
		out := base + "-jspub.json"
		wait, err := b.client(ctx, p, b.o.pubNode-1, []string{roleJSPub, "-out", out, "-subject", topic, "-n", strconv.Itoa(n),
			"-size", strconv.Itoa(r.size), "-rate", ftoa(rate), "-window", strconv.Itoa(b.o.jsWindow)})
		if err != nil {
			return s, err
		}
		if s.res, err = wait(out); err != nil {
			return s, fmt.Errorf("publisher: %w", err)
		}
	}
	return s, nil
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// client starts a client role on node i (0-based) of peer p: an ssi job
// there, or this program in its network namespace against its bare
// server. wait reads its result once it wrote it.
func (b *bench) client(ctx context.Context, p peer, i int, args []string) (wait func(out string) (clientResult, error), err error) {
	argv := append([]string{b.self, "client"}, args...)
	if p == peerSSI {
		node := b.cl.Nodes[i].Name
		r, err := b.cl.API.Run(ctx, api.RunRequest{Argv: argv, Node: node, Workdir: b.wd, WorkdirExplicit: true, Pin: true})
		if err != nil {
			return nil, fmt.Errorf("start %s on %s: %w", args[0], node, err)
		}
		return func(out string) (clientResult, error) {
			res, err := waitResult(ctx, out, func() error {
				pi, err := b.cl.API.Proc(ctx, r.GPID)
				if err == nil && pi.State.Ended() {
					if _, serr := os.Stat(out); serr != nil {
						return fmt.Errorf("job %d (%s on %s) ended without a result", r.GPID, args[0], node)
					}
				}
				return nil
			})
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_, _ = b.cl.API.Wait(wctx, r.GPID)
			if err == nil && !strings.Contains(res.Server, "//"+b.cl.Nodes[i].IP+":") {
				err = fmt.Errorf("the job on %s was connected to %s, not to its node's broker", node, res.Server)
			}
			return res, err
		}, nil
	}
	cmd := exec.CommandContext(ctx, argv[0], append(append([]string{}, argv[1:]...), b.bareArgs(p, i)...)...)
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := netns.StartIn(b.cl.Nodes[i].Namespace, cmd); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return func(out string) (clientResult, error) {
		var done bool
		res, err := waitResult(ctx, out, func() error {
			select {
			case werr := <-exited:
				done = true
				if _, serr := os.Stat(out); serr != nil {
					return fmt.Errorf("%s in %s exited (%v) without a result: %s", args[0], b.cl.Nodes[i].Namespace, werr, strings.TrimSpace(errb.String()))
				}
			default:
			}
			return nil
		})
		if !done {
			select {
			case <-exited:
			case <-time.After(clientLimit):
				stopCmd(cmd)
			}
		}
		return res, err
	}, nil
}

// waitResult waits for a client's result file and reads it; alive, called
// now and then, says whether the client died without one.
func waitResult(ctx context.Context, path string, alive func() error) (clientResult, error) {
	var res clientResult
	if err := waitFile(ctx, path, clientLimit, alive); err != nil {
		return res, err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return res, fmt.Errorf("result %s: %w", path, err)
	}
	if res.Error != "" {
		return res, errors.New(res.Error)
	}
	return res, nil
}

// waitFile waits until path exists, at most limit; check, if set, is called
// every half second and its error ends the wait.
func waitFile(ctx context.Context, path string, limit time.Duration, check func() error) error {
	deadline := time.Now().Add(limit)
	lastCheck := time.Now()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if check != nil && time.Since(lastCheck) > 500*time.Millisecond {
			lastCheck = time.Now()
			if err := check(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s after %s", filepath.Base(path), limit)
		}
		if err := benchkit.Sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
}

// memory measures an idle agent's RSS with the broker on and off, on fresh
// one-node clusters.
func (b *bench) memory(ctx context.Context) error {
	variants := []bool{true, false} // broker on, off
	for run := range b.o.rssRuns {
		for i := range variants {
			on := variants[(i+run)%2]
			rss, err := b.agentRSS(ctx, on)
			if err != nil {
				return fmt.Errorf("agent memory, broker %s: %w", onOff(on), err)
			}
			b.rep.rss = append(b.rep.rss, rssSample{broker: on, rss: rss})
			b.log.Info("agent memory", "broker", onOff(on), "MiB", float64(rss)/(1<<20))
		}
	}
	return nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off (--nats=false)"
}

// agentRSS starts a one-node cluster, waits -rss-idle and reads its agent's
// VmRSS, then tears it down.
func (b *bench) agentRSS(ctx context.Context, broker bool) (rss int64, err error) {
	cfg := benchkit.ClusterConfig{Flags: b.o.cluster, Nodes: 1, Binary: b.bins.SSI, Log: b.log}
	if !broker {
		cfg.NodeArgs = map[string][]string{"node1": {"--nats=false"}}
	}
	cl, err := benchkit.StartCluster(ctx, cfg)
	defer func() {
		left, terr := benchkit.StopCluster(b.o.cluster, b.log)
		if terr == nil && len(left) > 0 {
			terr = fmt.Errorf("namespaces left behind: %v", left)
		}
		err = errors.Join(err, terr)
	}()
	if err != nil {
		return 0, err
	}
	if err := benchkit.Sleep(ctx, b.o.rssIdle); err != nil {
		return 0, err
	}
	if rss = vmRSS(cl.Nodes[0].Agent.PID); rss == 0 {
		return 0, fmt.Errorf("no VmRSS for the agent, pid %d", cl.Nodes[0].Agent.PID)
	}
	return rss, nil
}

// vmRSS is a process's VmRSS in bytes (0 if unreadable).
func vmRSS(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// splitHostPort splits HOST:PORT with a numeric port.
func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("%q: want HOST:PORT: %w", hp, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 || n > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", hp)
	}
	return h, n, nil
}

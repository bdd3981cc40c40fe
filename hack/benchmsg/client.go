package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ssi-cluster/ssi/msg"
	"github.com/ssi-cluster/ssi/pki"
)

// The client roles (`benchmsg client ROLE`) and the bare server
// (`benchmsg server`). The harness runs them: inside ssi jobs (no -url: the
// broker of SSI_NATS_URL with the job's credential, SSI_CONFIG, as `ssi pub`
// and `ssi sub` in a job connect) or under `ip netns exec` against the bare
// servers (-url nats://...).
const (
	roleSub   = "sub"   // receive -n messages, measure
	rolePub   = "pub"   // publish -n messages (core NATS)
	roleJSPub = "jspub" // publish -n messages to a stream, each acknowledged
)

// headerLen is the head of every payload: the send time (UnixNano) and the
// sequence number, big-endian.
const headerLen = 16

// idleLimit: a subscriber that got messages and then none for this long
// stops and reports what it got.
const idleLimit = 5 * time.Second

// clientConfig is a client's flags.
type clientConfig struct {
	role string
	// url: the bare server's (nats://HOST:PORT); empty: SSI_NATS_URL with
	// SSI_CONFIG's credential (an ssi job).
	url string
	// subject is relative to the user's namespace in an ssi job; the data
	// go to SUBJECT (jspub) or SUBJECT.data, a subscriber's flow-control
	// acknowledgements to SUBJECT.ack.
	subject string
	n, size int
	// rate paces the publisher (messages per second; 0: as fast as it can).
	rate float64
	// window: pub, messages it may be ahead of the subscriber's
	// acknowledgements (0: no flow control); jspub, publications awaiting
	// their acknowledgement.
	window int
	// out receives the result (JSON); ready is created once a subscriber
	// is subscribed.
	out, ready string
	// tls is the directory of the bare TLS peer's PKI (writeTLS); empty:
	// plain TCP (with -url).
	tls string
	// ssiConfig, with -url: connect to ssi's broker there with this client
	// config (an admin's), through msg.Dial, from outside any job.
	ssiConfig string
	timeout   time.Duration
}

// latency is a sample of latencies, in milliseconds.
type latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// clientResult is what a client writes to -out.
type clientResult struct {
	Role     string `json:"role"`
	Messages int    `json:"messages"` // received (sub), sent (pub), acknowledged (jspub)
	Bytes    int64  `json:"bytes"`
	// Seconds: sub, from the first message received to the last; pub, from
	// the first publication to the flush after the last; jspub, from the
	// first publication to the last acknowledgement.
	Seconds float64 `json:"seconds"`
	// Latency: sub, one-way (receipt less the send time in the payload;
	// the nodes share one clock); jspub, publication to acknowledgement.
	Latency latency `json:"latency"`
	// Server is the URL of the server the client was connected to.
	Server string `json:"server"`
	Error  string `json:"error,omitempty"`
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted s.
func percentile(s []float64, p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	r := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(r, 0), len(s)-1)]
}

// summarize makes a latency of ms, which it sorts.
func summarize(ms []float64) latency {
	if len(ms) == 0 {
		return latency{}
	}
	slices.Sort(ms)
	return latency{N: len(ms), P50: percentile(ms, 50), P90: percentile(ms, 90), P99: percentile(ms, 99), Max: ms[len(ms)-1]}
}

func parseClient(args []string) (clientConfig, error) {
	var c clientConfig
	if len(args) == 0 {
		return c, errors.New("client: want a role: sub, pub or jspub")
	}
	c.role = args[0]
	fs := flag.NewFlagSet("client "+c.role, flag.ContinueOnError)
	fs.StringVar(&c.url, "url", "", "bare server URL (default: SSI_NATS_URL with SSI_CONFIG's credential)")
	fs.StringVar(&c.subject, "subject", "bench", "subject")
	fs.IntVar(&c.n, "n", 1000, "messages")
	fs.IntVar(&c.size, "size", 128, "payload bytes (at least 16)")
	fs.Float64Var(&c.rate, "rate", 0, "messages per second (0: as fast as possible)")
	fs.IntVar(&c.window, "window", 0, "flow-control window, messages")
	fs.StringVar(&c.out, "out", "", "result file (JSON)")
	fs.StringVar(&c.ready, "ready", "", "file created once subscribed (sub)")
	fs.StringVar(&c.tls, "tls", "", "with -url: connect with TLS and the client certificate of this directory")
	fs.StringVar(&c.ssiConfig, "ssi-config", "", "with -url: an ssi broker's URL; connect with this ssi client config")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "bound on the whole client")
	if err := fs.Parse(args[1:]); err != nil {
		return c, err
	}
	switch {
	case c.role != roleSub && c.role != rolePub && c.role != roleJSPub:
		return c, fmt.Errorf("client: role %q: want sub, pub or jspub", c.role)
	case c.n < 1:
		return c, fmt.Errorf("client: -n %d: want at least 1", c.n)
	case c.size < headerLen || c.size > 1<<20:
		return c, fmt.Errorf("client: -size %d: want %d to 1048576 bytes", c.size, headerLen)
	case c.rate < 0 || c.window < 0:
		return c, errors.New("client: -rate and -window must not be negative")
	case c.out == "":
		return c, errors.New("client: -out is required")
	case c.role == roleSub && c.ready == "":
		return c, errors.New("client: sub needs -ready")
	}
	return c, nil
}

// runClient runs a client role and writes its result to c.out, also when
// it fails (with the error).
func runClient(ctx context.Context, args []string) error {
	c, err := parseClient(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res, err := c.run(ctx)
	res.Role = c.role
	if err != nil {
		res.Error = err.Error()
	}
	b, merr := json.Marshal(res)
	if merr != nil {
		return merr
	}
	tmp := c.out + ".tmp"
	if werr := os.WriteFile(tmp, b, 0o644); werr != nil {
		return errors.Join(err, werr)
	}
	return errors.Join(err, os.Rename(tmp, c.out))
}

func (c clientConfig) run(ctx context.Context) (clientResult, error) {
	nc, subject, err := c.connect(ctx)
	if err != nil {
		return clientResult{}, err
	}
	defer nc.Close()
	var res clientResult
	switch c.role {
	case roleSub:
		res, err = c.sub(ctx, nc, subject)
	case rolePub:
		res, err = c.pub(ctx, nc, subject)
	default:
		res, err = c.jsPub(ctx, nc, subject)
	}
	res.Server = nc.ConnectedUrl()
	return res, err
}

// connect dials the bare server of -url, or, without it, the cluster's
// brokers as an ssi job does (msg.Dial with the job's credential); it
// returns the subject in the connection's namespace.
func (c clientConfig) connect(ctx context.Context) (*nats.Conn, string, error) {
	if c.url != "" && c.ssiConfig != "" {
		return c.dialSSI(ctx, c.url, c.ssiConfig)
	}
	if c.url != "" {
		opts := []nats.Option{nats.Name("benchmsg " + c.role)}
		if c.tls != "" {
			cfg, err := loadTLS(c.tls, false)
			if err != nil {
				return nil, "", err
			}
			opts = append(opts, nats.Secure(cfg))
		}
		nc, err := nats.Connect(c.url, opts...)
		if err != nil {
			return nil, "", fmt.Errorf("connect to %s: %w", c.url, err)
		}
		return nc, c.subject, nil
	}
	urls, cfgPath := os.Getenv("SSI_NATS_URL"), os.Getenv("SSI_CONFIG")
	if urls == "" || cfgPath == "" {
		return nil, "", errors.New("no -url, and SSI_NATS_URL or SSI_CONFIG is unset: run it in an ssi job or give -url")
	}
	// The agent writes a job's credential within a second of its start.
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err = pki.LoadClientConfig(cfgPath); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, "", fmt.Errorf("job credential: %w", err)
	}
	return c.dialSSI(ctx, urls, cfgPath)
}

// dialSSI connects to ssi's brokers at urls as `ssi pub` does (msg.Dial)
// with the client config at cfgPath.
func (c clientConfig) dialSSI(ctx context.Context, urls, cfgPath string) (*nats.Conn, string, error) {
	cfg, err := pki.LoadClientConfig(cfgPath)
	if err != nil {
		return nil, "", fmt.Errorf("client config: %w", err)
	}
	tlsCfg, err := cfg.TLS()
	if err != nil {
		return nil, "", fmt.Errorf("job credential: %w", err)
	}
	cert, err := pki.ParseCert([]byte(cfg.Cert))
	if err != nil {
		return nil, "", fmt.Errorf("job credential: %w", err)
	}
	id, err := pki.IdentityOf(cert)
	if err != nil {
		return nil, "", fmt.Errorf("job credential: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl, err := msg.Dial(dctx, urls, id.Name, tlsCfg, "benchmsg "+c.role)
	if err != nil {
		return nil, "", err
	}
	return cl.Conn, msg.Namespace(id.Name) + c.subject, nil
}

// payload returns message seq: its send time and sequence, then filler.
func payload(buf []byte, seq int) []byte {
	binary.BigEndian.PutUint64(buf, uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint64(buf[8:], uint64(seq))
	return buf
}

// pace waits until message i of a paced publisher is due.
func (c clientConfig) pace(ctx context.Context, t0 time.Time, i int) error {
	if c.rate <= 0 {
		return ctx.Err()
	}
	d := time.Until(t0.Add(time.Duration(float64(i) / c.rate * float64(time.Second))))
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ackEvery is how often a subscriber acknowledges for a pub's window.
func ackEvery(window int) int { return max(window/4, 1) }

// sub receives c.n messages on SUBJECT.data and acknowledges every
// ackEvery(window) of them on SUBJECT.ack. Messages are handled in the
// subscription's callback (one goroutine), with no pending limits.
func (c clientConfig) sub(ctx context.Context, nc *nats.Conn, subject string) (clientResult, error) {
	var (
		mu          sync.Mutex
		res         clientResult
		first, last time.Time
		ackErr      error
	)
	lat := make([]float64, 0, c.n)
	done := make(chan struct{})
	var ack [8]byte
	s, err := nc.Subscribe(subject+".data", func(m *nats.Msg) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if res.Messages >= c.n {
			return
		}
		if res.Messages == 0 {
			first = now
		}
		last = now
		res.Messages++
		res.Bytes += int64(len(m.Data))
		if len(m.Data) >= headerLen {
			lat = append(lat, float64(now.UnixNano()-int64(binary.BigEndian.Uint64(m.Data)))/1e6)
		}
		if c.window > 0 && res.Messages%ackEvery(c.window) == 0 {
			binary.BigEndian.PutUint64(ack[:], uint64(res.Messages))
			if err := nc.Publish(subject+".ack", ack[:]); err != nil && ackErr == nil {
				ackErr = err
			}
		}
		if res.Messages == c.n {
			close(done)
		}
	})
	if err != nil {
		return res, err
	}
	defer s.Unsubscribe()
	if err := s.SetPendingLimits(-1, -1); err != nil {
		return res, err
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		return res, err
	}
	if err := os.WriteFile(c.ready, nil, 0o644); err != nil {
		return res, err
	}
	// result is the figures so far.
	result := func() clientResult {
		mu.Lock()
		defer mu.Unlock()
		r := res
		r.Seconds = last.Sub(first).Seconds()
		r.Latency = summarize(slices.Clone(lat))
		return r
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			_ = nc.Flush()
			return result(), ackErr
		case <-ctx.Done():
			r := result()
			return r, fmt.Errorf("%d of %d messages: %w", r.Messages, c.n, ctx.Err())
		case <-tick.C:
			mu.Lock()
			stalled := res.Messages > 0 && time.Since(last) > idleLimit
			mu.Unlock()
			if stalled {
				r := result()
				return r, fmt.Errorf("%d of %d messages, then none for %s", r.Messages, c.n, idleLimit)
			}
		}
	}
}

// pub publishes c.n messages to SUBJECT.data, paced by c.rate, never more
// than c.window ahead of the subscriber's acknowledgements.
func (c clientConfig) pub(ctx context.Context, nc *nats.Conn, subject string) (clientResult, error) {
	var res clientResult
	acks := make(chan *nats.Msg, 1024)
	if c.window > 0 {
		s, err := nc.ChanSubscribe(subject+".ack", acks)
		if err != nil {
			return res, err
		}
		defer s.Unsubscribe()
		if err := nc.FlushWithContext(ctx); err != nil {
			return res, err
		}
	}
	buf := make([]byte, c.size)
	acked := 0
	t0 := time.Now()
	for i := range c.n {
		if err := c.pace(ctx, t0, i); err != nil {
			return res, err
		}
		for c.window > 0 && i-acked >= c.window {
			select {
			case <-ctx.Done():
				return res, fmt.Errorf("waiting for the subscriber's acknowledgement of %d: %w", acked+ackEvery(c.window), ctx.Err())
			case m := <-acks:
				if len(m.Data) == 8 {
					acked = max(acked, int(binary.BigEndian.Uint64(m.Data)))
				}
			}
		}
		if err := nc.Publish(subject+".data", payload(buf, i)); err != nil {
			return res, err
		}
		res.Messages++
		res.Bytes += int64(c.size)
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		return res, err
	}
	res.Seconds = time.Since(t0).Seconds()
	return res, nil
}

// jsPub publishes c.n messages to a stream's SUBJECT: paced (c.rate > 0),
// one at a time, each waiting for its acknowledgement (the latency);
// else as fast as it can with up to c.window unacknowledged (throughput).
func (c clientConfig) jsPub(ctx context.Context, nc *nats.Conn, subject string) (clientResult, error) {
	var res clientResult
	window := max(c.window, 1)
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(window))
	if err != nil {
		return res, err
	}
	buf := make([]byte, c.size)
	t0 := time.Now()
	if c.rate > 0 {
		lat := make([]float64, 0, c.n)
		for i := range c.n {
			if err := c.pace(ctx, t0, i); err != nil {
				return res, err
			}
			s := time.Now()
			if _, err := js.Publish(subject, payload(buf, i), nats.Context(ctx)); err != nil {
				return res, fmt.Errorf("publish %d: %w", i, err)
			}
			lat = append(lat, float64(time.Since(s).Nanoseconds())/1e6)
			res.Messages++
			res.Bytes += int64(c.size)
		}
		res.Seconds = time.Since(t0).Seconds()
		res.Latency = summarize(lat)
		return res, nil
	}
	futures := make([]nats.PubAckFuture, 0, c.n)
	for i := range c.n {
		for {
			// A buffer per message: the future keeps the message.
			f, err := js.PublishAsync(subject, payload(make([]byte, c.size), i))
			if err == nil {
				futures = append(futures, f)
				break
			}
			if !errors.Is(err, nats.ErrTooManyStalledMsgs) || ctx.Err() != nil {
				return res, fmt.Errorf("publish %d: %w", i, err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return res, fmt.Errorf("%d acknowledgements pending: %w", js.PublishAsyncPending(), ctx.Err())
	}
	res.Seconds = time.Since(t0).Seconds()
	for _, f := range futures {
		select {
		case <-f.Ok():
			res.Messages++
			res.Bytes += int64(c.size)
		case err := <-f.Err():
			return res, fmt.Errorf("publication refused: %w", err)
		}
	}
	return res, nil
}

// serverConfig is the bare server's flags.
type serverConfig struct {
	name, listen, cluster, store string
	routes                       []string
	ready                        string
	// tls: the directory of a PKI (writeTLS): TLS 1.3 for clients (their
	// certificate required) and routes, as ssi's brokers; empty: none.
	tls string
}

func parseServer(args []string) (serverConfig, error) {
	var s serverConfig
	var routes string
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.StringVar(&s.name, "name", "", "server name")
	fs.StringVar(&s.listen, "listen", "", "client listener HOST:PORT")
	fs.StringVar(&s.cluster, "cluster", "", "route listener HOST:PORT")
	fs.StringVar(&routes, "routes", "", "routes HOST:PORT, comma-separated (this server's own included, as ssi's brokers do)")
	fs.StringVar(&s.store, "store", "", "JetStream directory")
	fs.StringVar(&s.ready, "ready", "", "file created once the server accepts connections")
	fs.StringVar(&s.tls, "tls", "", "TLS for clients (certificate required) and routes, with the PKI of this directory")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if s.name == "" || s.listen == "" || s.cluster == "" || s.store == "" || s.ready == "" {
		return s, errors.New("server: -name, -listen, -cluster, -store and -ready are required")
	}
	for _, r := range strings.Split(routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			s.routes = append(s.routes, r)
		}
	}
	return s, nil
}

// options are a bare server's options: those of ssi's brokers
// (msg.Config's: JetStream, cluster routes, 1 MiB payloads) without
// authentication, and without TLS unless -tls.
func (s serverConfig) options() (*server.Options, error) {
	ch, cp, err := splitHostPort(s.listen)
	if err != nil {
		return nil, fmt.Errorf("-listen: %w", err)
	}
	rh, rp, err := splitHostPort(s.cluster)
	if err != nil {
		return nil, fmt.Errorf("-cluster: %w", err)
	}
	o := &server.Options{
		ServerName: s.name, Host: ch, Port: cp, NoSigs: true, MaxPayload: 1 << 20,
		JetStream: true, StoreDir: s.store, JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
		Cluster: server.ClusterOpts{Name: "bare", Host: rh, Port: rp},
	}
	for _, r := range s.routes {
		o.Routes = append(o.Routes, &url.URL{Scheme: "nats-route", Host: r})
	}
	if s.tls != "" {
		cfg, err := loadTLS(s.tls, true)
		if err != nil {
			return nil, err
		}
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, cfg, 5
		o.Cluster.TLSConfig, o.Cluster.TLSTimeout = cfg.Clone(), 5
	}
	return o, nil
}

// runServer runs a bare nats-server (the module's version, embedded) until
// ctx ends.
func runServer(ctx context.Context, args []string) error {
	s, err := parseServer(args)
	if err != nil {
		return err
	}
	o, err := s.options()
	if err != nil {
		return err
	}
	srv, err := server.NewServer(o)
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	srv.ConfigureLogger()
	srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats server on %s not ready in 10s", s.listen)
	}
	if err := os.WriteFile(s.ready, nil, 0o644); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

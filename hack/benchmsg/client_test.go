package main

import (
	"github.com/ssi-cluster/ssi/internal/testenv"

	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func TestPercentile(t *testing.T) {
	s := make([]float64, 100)
	for i := range s {
		s[i] = float64(i + 1)
	}
	for _, tt := range []struct{ p, want float64 }{{50, 50}, {90, 90}, {99, 99}, {100, 100}, {1, 1}} {
		if got := percentile(s, tt.p); got != tt.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile([]float64{3}, 99); got != 3 {
		t.Errorf("percentile of one = %v", got)
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of none is not NaN")
	}
	l := summarize([]float64{5, 1, 3})
	if l.N != 3 || l.P50 != 3 || l.P99 != 5 || l.Max != 5 {
		t.Errorf("summarize = %+v", l)
	}
}

func TestParseClientBadInput(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "want a role"},
		{[]string{"relay", "-out", "x"}, `role "relay"`},
		{[]string{"pub", "-out", "x", "-size", "8"}, "-size 8"},
		{[]string{"pub", "-out", "x", "-n", "0"}, "-n 0"},
		{[]string{"pub"}, "-out is required"},
		{[]string{"sub", "-out", "x"}, "sub needs -ready"},
	} {
		if _, err := parseClient(tt.args); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseClient(%q) = %v, want an error with %q", tt.args, err, tt.want)
		}
	}
}

func TestParseFlagsBadInput(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "parseFlags refuses non-root first")
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-name", "ssi"}, "must start with sbm"},
		{[]string{"-core-sizes", "128,x"}, "-core-sizes"},
		{[]string{"-js-sizes", "4"}, "-js-sizes"},
		{[]string{"-runs", "0"}, "-runs 0"},
		{[]string{"-js-window", "0"}, "-js-window 0"},
	} {
		if _, err := parseFlags(flag.NewFlagSet("x", flag.ContinueOnError), tt.args); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseFlags(%q) = %v, want an error with %q", tt.args, err, tt.want)
		}
	}
	o, err := parseFlags(flag.NewFlagSet("x", flag.ContinueOnError), nil)
	if err != nil || o.cluster.Name != "sbm" || o.cluster.Subnet != "10.232.0.0/24" || len(o.coreSizes) != 2 {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}

// startServer runs a one-server nats-server with JetStream on loopback.
func startServer(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return s.ClientURL()
}

func readResult(t *testing.T, path string) clientResult {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r clientResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestClients: a subscriber and a publisher with a window smaller than the
// messages (flow control works, nothing is lost), a paced run's latency,
// and durable publications on a one-replica stream.
func TestClients(t *testing.T) {
	url := startServer(t)
	dir := t.TempDir()
	ctx := context.Background()
	for _, tc := range []struct {
		name         string
		n, window    int
		rate         float64
		wantMinSecs  float64
		wantLatency  bool
		wantMessages int
	}{
		{name: "throughput", n: 5000, window: 256},
		{name: "paced", n: 50, rate: 500, wantMinSecs: 0.09, wantLatency: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, ready, pub := filepath.Join(dir, tc.name+"-sub"), filepath.Join(dir, tc.name+"-ready"), filepath.Join(dir, tc.name+"-pub")
			common := []string{"-url", url, "-subject", "t." + tc.name, "-n", strconv.Itoa(tc.n), "-size", "64", "-window", strconv.Itoa(tc.window)}
			subErr := make(chan error, 1)
			go func() { subErr <- runClient(ctx, append([]string{"sub", "-out", sub, "-ready", ready}, common...)) }()
			if err := waitFile(ctx, ready, 10*time.Second, func() error {
				select {
				case err := <-subErr:
					return fmt.Errorf("subscriber ended: %v", err)
				default:
					return nil
				}
			}); err != nil {
				t.Fatal(err)
			}
			if err := runClient(ctx, append([]string{"pub", "-out", pub, "-rate", ftoa(tc.rate)}, common...)); err != nil {
				t.Fatal(err)
			}
			if err := <-subErr; err != nil {
				t.Fatal(err)
			}
			s, p := readResult(t, sub), readResult(t, pub)
			if s.Messages != tc.n || p.Messages != tc.n || s.Bytes != int64(64*tc.n) || s.Error != "" {
				t.Errorf("sub %+v, pub %+v: want %d messages each", s, p, tc.n)
			}
			if s.Seconds < tc.wantMinSecs || s.Latency.N != tc.n || s.Latency.P50 <= 0 || s.Latency.P99 < s.Latency.P50 {
				t.Errorf("sub %+v", s)
			}
		})
	}

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	if _, err := js.AddStream(&nats.StreamConfig{Name: "s", Subjects: []string{"durable"}, Storage: nats.FileStorage}); err != nil {
		t.Fatal(err)
	}
	for _, rate := range []string{"0", "1000"} {
		out := filepath.Join(dir, "js-"+rate)
		if err := runClient(ctx, []string{"jspub", "-url", url, "-subject", "durable", "-n", "300", "-size", "100", "-window", "16", "-rate", rate, "-out", out}); err != nil {
			t.Fatal(err)
		}
		if r := readResult(t, out); r.Messages != 300 || r.Seconds <= 0 || (rate != "0") != (r.Latency.N == 300) {
			t.Errorf("jspub -rate %s: %+v", rate, r)
		}
	}
	si, err := js.StreamInfo("s")
	if err != nil || si.State.Msgs != 600 {
		t.Errorf("stream holds %v messages (%v), want 600", si, err)
	}

	// A publisher to a subject no stream holds fails, and says so in its
	// result too.
	out := filepath.Join(dir, "js-none")
	if err := runClient(ctx, []string{"jspub", "-url", url, "-subject", "nostream", "-n", "1", "-rate", "10", "-out", out, "-timeout", "5s"}); err == nil {
		t.Error("jspub to no stream: no error")
	}
	if r := readResult(t, out); r.Error == "" {
		t.Errorf("result of a failed jspub: %+v", r)
	}
}

func TestServerFlags(t *testing.T) {
	if _, err := parseServer([]string{"-name", "a"}); err == nil {
		t.Error("server without -listen: no error")
	}
	s, err := parseServer([]string{"-name", "a", "-listen", "10.0.0.1:14222", "-cluster", "10.0.0.1:16222", "-routes", "10.0.0.1:16222, 10.0.0.2:16222", "-store", "/x", "-ready", "/r"})
	if err != nil {
		t.Fatal(err)
	}
	o, err := s.options()
	if err != nil || o.Port != 14222 || o.Cluster.Port != 16222 || len(o.Routes) != 2 || !o.JetStream || o.TLS {
		t.Errorf("options %+v, %v", o, err)
	}
	s.listen = "nohost"
	if _, err := s.options(); err == nil {
		t.Error("-listen without a port: no error")
	}
}

// TestTLSPeer: a server with the bare TLS peer's options takes a client
// with the client certificate, and refuses one without.
func TestTLSPeer(t *testing.T) {
	dir := t.TempDir()
	if err := writeTLS(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	sc := serverConfig{name: "t", listen: "127.0.0.1:1", cluster: "127.0.0.1:2", store: t.TempDir(), tls: dir}
	o, err := sc.options()
	if err != nil {
		t.Fatal(err)
	}
	// One server: no cluster, no JetStream (a JetStream cluster needs routes).
	o.Port, o.Cluster, o.JetStream, o.NoLog = -1, server.ClusterOpts{}, false, true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := s.ClientURL()
	out := filepath.Join(t.TempDir(), "pub")
	if err := runClient(context.Background(), []string{"pub", "-url", url, "-tls", dir, "-n", "10", "-out", out}); err != nil {
		t.Fatalf("pub with the client certificate: %v", err)
	}
	if r := readResult(t, out); r.Messages != 10 {
		t.Errorf("pub: %+v", r)
	}
	if nc, err := nats.Connect(url, nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Error("a client without TLS was taken")
	}
}

func TestParseFlagsNodes(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "parseFlags refuses non-root first")
	}
	for _, args := range [][]string{{"-pub-node", "2"}, {"-sub-node", "4"}, {"-pub-node", "0"}} {
		if _, err := parseFlags(flag.NewFlagSet("x", flag.ContinueOnError), args); err == nil || !strings.Contains(err.Error(), "two different nodes") {
			t.Errorf("parseFlags(%q) = %v, want a refusal", args, err)
		}
	}
	if o, err := parseFlags(flag.NewFlagSet("x", flag.ContinueOnError), []string{"-pub-node", "3"}); err != nil || o.pubNode != 3 || o.subNode != 2 {
		t.Errorf("-pub-node 3: %+v, %v", o, err)
	}
}

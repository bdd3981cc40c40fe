package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// stayerNodes are the drain's targets, where a CPU-bound job stays put.
var stayerNodes = []string{"node1", "node3"}

// stayerSrc is the stayer: a pure-Python busy loop that appends "UNIX-TIME
// ITERATIONS" (the cumulative count) to the file "rate" in its working
// directory every 100 ms or so. It checks the clock every 1024 iterations,
// so the check costs little of the loop.
const stayerSrc = `import time
f = open('rate', 'a', buffering=1)
n = 0
nxt = time.time() + 0.1
while True:
    n += 1
    if n & 1023 == 0:
        now = time.time()
        if now >= nxt:
            f.write('%.4f %d\n' % (now, n))
            nxt = now + 0.1
`

// stayer is one CPU-bound job on a target node.
type stayer struct {
	node string
	gpid uint64
	file string // its samples
}

// startStayers starts one stayer on each target node and waits until each
// has written a few samples.
func (b *bench) startStayers(ctx context.Context) error {
	for _, node := range stayerNodes {
		wd := filepath.Join(b.wd, "stayer-"+node)
		if err := os.MkdirAll(wd, 0o777); err != nil {
			return err
		}
		_ = os.Chmod(wd, 0o777)
		r, err := b.cl.API.Run(ctx, api.RunRequest{Argv: []string{"python3", "-c", stayerSrc}, Node: node, Workdir: wd, WorkdirExplicit: true})
		if err != nil {
			return fmt.Errorf("start the stayer on %s: %w", node, err)
		}
		b.stayers = append(b.stayers, stayer{node: node, gpid: r.GPID, file: filepath.Join(wd, "rate")})
	}
	deadline := time.Now().Add(startLimit)
	for _, s := range b.stayers {
		for {
			samples, err := readSamples(s.file)
			if err == nil && len(samples) >= 5 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the stayer on %s wrote %d samples in %s (last error: %v)", s.node, len(samples), startLimit, err)
			}
			if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// sample is one line of a stayer's file.
type sample struct {
	at time.Time
	n  int64
}

func readSamples(path string) ([]sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseSamples(f)
}

// parseSamples reads "UNIX-TIME COUNT" lines. A last line without its
// newline (the stayer may be writing it) is ignored, as are lines that do not
// parse.
func parseSamples(r io.Reader) ([]sample, error) {
	var out []sample
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		t, n, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		secs, err1 := strconv.ParseFloat(t, 64)
		count, err2 := strconv.ParseInt(n, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, sample{at: time.Unix(0, int64(secs*1e9)), n: count})
	}
}

// rateOver is the stayer's throughput, in iterations per second, between
// the first sample at or after from and the last at or before to. ok is
// false when fewer than two samples fall in the window, or they are less
// than 200 ms apart: the window is too short to say.
func rateOver(samples []sample, from, to time.Time) (rate float64, ok bool) {
	first, last := -1, -1
	for i, s := range samples {
		if s.at.Before(from) || s.at.After(to) {
			continue
		}
		if first < 0 {
			first = i
		}
		last = i
	}
	if first < 0 || last <= first {
		return 0, false
	}
	dt := samples[last].at.Sub(samples[first].at)
	if dt < 200*time.Millisecond {
		return 0, false
	}
	return float64(samples[last].n-samples[first].n) / dt.Seconds(), true
}

// stayerRate is one stayer's throughput over a baseline window and over the
// emptying of node2.
type stayerRate struct {
	node             string
	baseline, during float64 // iterations/s; 0: no figure
}

// ratio is during over baseline, 0 without both.
func (s stayerRate) ratio() float64 {
	if s.baseline <= 0 || s.during <= 0 {
		return 0
	}
	return s.during / s.baseline
}

// stayerRates reads every stayer's file and returns its rates over the two
// windows.
func (b *bench) stayerRates(base, during [2]time.Time) ([]stayerRate, error) {
	var out []stayerRate
	for _, s := range b.stayers {
		samples, err := readSamples(s.file)
		if err != nil {
			return out, fmt.Errorf("stayer on %s: %w", s.node, err)
		}
		r := stayerRate{node: s.node}
		r.baseline, _ = rateOver(samples, base[0], base[1])
		r.during, _ = rateOver(samples, during[0], during[1])
		out = append(out, r)
	}
	return out, nil
}

// The link probe: a raw TCP copy from node2's namespace to node1's over the
// cluster's bridge, Python sockets at both ends.
const (
	linkPort   = 47219
	linkBytes  = 1 << 30
	linkCopies = 3
	linkLimit  = 3 * time.Minute
)

// linkRecvSrc accepts argv[3] connections on argv[1]:argv[2], reads each to
// EOF and answers one byte, so the sender's clock covers the last byte's
// arrival.
const linkRecvSrc = `import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print('ready', flush=True)
buf = bytearray(1 << 20)
for _ in range(int(sys.argv[3])):
    c, _ = s.accept()
    while c.recv_into(buf):
        pass
    c.sendall(b'k')
    c.close()
`

// linkSendSrc makes argv[4] copies of argv[3] bytes to argv[1]:argv[2] and
// prints each one's seconds, connect to the receiver's answer.
const linkSendSrc = `import socket, sys, time
chunk = bytes(8 << 20)
for _ in range(int(sys.argv[4])):
    t0 = time.monotonic()
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    left = int(sys.argv[3])
    while left > 0:
        k = min(left, len(chunk))
        c.sendall(memoryview(chunk)[:k])
        left -= k
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    c.close()
    print('%.6f' % (time.monotonic() - t0), flush=True)
`

// probeLink measures the raw copy rate from node2 to node1, in bytes per
// second, as the median of linkCopies copies of linkBytes.
func (b *bench) probeLink(ctx context.Context) (float64, error) {
	var from, to string
	var toIP string
	for _, n := range b.cl.Nodes {
		switch n.Name {
		case "node2":
			from = n.Namespace
		case "node1":
			to, toIP = n.Namespace, n.IP
		}
	}
	if from == "" || to == "" {
		return 0, fmt.Errorf("no node1 or node2 in the cluster's state")
	}
	port, copies := strconv.Itoa(linkPort), strconv.Itoa(linkCopies)
	rctx, cancel := context.WithTimeout(ctx, linkLimit)
	defer cancel()
	recv := exec.CommandContext(rctx, "ip", "netns", "exec", to, "python3", "-c", linkRecvSrc, toIP, port, copies)
	out, err := recv.StdoutPipe()
	if err != nil {
		return 0, err
	}
	recv.Stderr = os.Stderr
	if err := recv.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = recv.Process.Kill(); _ = recv.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		return 0, fmt.Errorf("link receiver: %q, %v", line, err)
	}
	res, _, err := benchkit.Exec(rctx, linkLimit, nil, "ip", "netns", "exec", from, "python3", "-c", linkSendSrc, toIP, port, strconv.Itoa(linkBytes), copies)
	if err != nil {
		return 0, err
	}
	var rates []float64
	for _, f := range strings.Fields(string(res)) {
		s, err := strconv.ParseFloat(f, 64)
		if err != nil || s <= 0 {
			return 0, fmt.Errorf("link sender printed %q", res)
		}
		rates = append(rates, linkBytes/s)
	}
	if len(rates) != linkCopies {
		return 0, fmt.Errorf("link sender printed %q", res)
	}
	return benchkit.Median(rates), nil
}

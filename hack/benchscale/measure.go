package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// psLimit bounds one `ssi ps -A`.
const psLimit = 5 * time.Minute

// meter measures one variant's cluster.
type meter struct {
	cl   *benchkit.Cluster
	ssi  string
	etcd *clientv3.Client
	log  *slog.Logger
}

// sizeResult is what was measured at one table size.
type sizeResult struct {
	records int
	// Per round: ssi ps -A wall time (s) and peak RSS (MiB); the raw etcd
	// range read of the prefix (s) and the streamed one (s).
	psWall, psRSS, raw, streamed []float64
	psRows                       int   // rows the last ps printed
	rawBytes                     int64 // bytes of values the raw read returned
	// Once: each agent's RSS (MiB, by node), the balancer leader's and
	// node1's CPU (% of one core) over the window, etcd's db size (MiB).
	agentRSS            map[string]float64
	leader              string
	leaderCPU, node1CPU float64
	dbSize, dbInUse     float64
}

func (m *meter) measure(ctx context.Context, n, warmup, runs int, window time.Duration) (sizeResult, error) {
	r := sizeResult{records: n, agentRSS: map[string]float64{}}
	for round := -warmup; round < runs; round++ {
		wall, rss, rows, err := m.ps(ctx)
		if err != nil {
			return r, err
		}
		raw, size, err := m.rawRead(ctx)
		if err != nil {
			return r, err
		}
		streamed, err := m.streamedRead(ctx)
		if err != nil {
			return r, err
		}
		m.log.Info("round", "records", n, "round", round, "ps", wall.Round(time.Millisecond), "ps_rss_mib", rss, "raw", raw.Round(time.Millisecond), "streamed", streamed.Round(time.Millisecond))
		if round < 0 {
			continue
		}
		r.psWall = append(r.psWall, wall.Seconds())
		r.psRSS = append(r.psRSS, rss)
		r.raw = append(r.raw, raw.Seconds())
		r.streamed = append(r.streamed, streamed.Seconds())
		r.psRows, r.rawBytes = rows, size
	}
	if r.psRows < n {
		return r, fmt.Errorf("ssi ps -A printed %d rows, want at least %d", r.psRows, n)
	}
	for _, node := range m.cl.Nodes {
		r.agentRSS[node.Name] = rssMiB(node.Agent.PID)
	}
	bal, err := m.cl.API.Balance(ctx)
	if err != nil {
		return r, fmt.Errorf("balancer status: %w", err)
	}
	r.leader = bal.Leader
	leaderPID := 0
	for _, node := range m.cl.Nodes {
		if node.Name == bal.Leader {
			leaderPID = node.Agent.PID
		}
	}
	m.log.Info("measuring CPU", "records", n, "leader", bal.Leader, "window", window)
	l0, n0, t0 := cpuTicks(leaderPID), cpuTicks(m.cl.Nodes[0].Agent.PID), time.Now()
	if err := benchkit.Sleep(ctx, window); err != nil {
		return r, err
	}
	l1, n1, secs := cpuTicks(leaderPID), cpuTicks(m.cl.Nodes[0].Agent.PID), time.Since(t0).Seconds()
	const hz = 100 // USER_HZ
	r.leaderCPU = 100 * float64(l1-l0) / hz / secs
	r.node1CPU = 100 * float64(n1-n0) / hz / secs
	st, err := m.etcd.Status(ctx, m.etcd.Endpoints()[0])
	if err != nil {
		return r, fmt.Errorf("etcd status: %w", err)
	}
	r.dbSize, r.dbInUse = float64(st.DbSize)/(1<<20), float64(st.DbSizeInUse)/(1<<20)
	return r, nil
}

// lineCounter counts the lines written to it.
type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// ps runs `ssi ps -A` and returns its wall time, its peak RSS (MiB) and the
// rows it printed (lines but the header). The peak RSS is GNU time's (%M,
// ru_maxrss): a child's ru_maxrss counts the memory of the process it was
// forked from until its exec, and this harness holds the raw reads' answers;
// time(1) is small.
func (m *meter) ps(ctx context.Context) (time.Duration, float64, int, error) {
	ctx, cancel := context.WithTimeout(ctx, psLimit)
	defer cancel()
	f, err := os.CreateTemp("", "benchscale-rss-")
	if err != nil {
		return 0, 0, 0, err
	}
	f.Close()
	defer os.Remove(f.Name())
	cmd := exec.CommandContext(ctx, "/usr/bin/time", "-f", "%M", "-o", f.Name(), m.ssi, "ps", "-A")
	var out lineCounter
	var errb bytes.Buffer
	cmd.Env, cmd.Stdout, cmd.Stderr = m.cl.Env, &out, &errb
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("ssi ps -A: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	b, _ := os.ReadFile(f.Name())
	kb, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("time -f %%M wrote %q: %w", b, err)
	}
	return wall, kb / 1024, out.n - 1, nil
}

// rawRead is one range read of the whole process table, values included.
func (m *meter) rawRead(ctx context.Context) (time.Duration, int64, error) {
	start := time.Now()
	resp, err := m.etcd.Get(ctx, "/ssi/procs/", clientv3.WithPrefix())
	took := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("etcd range read: %w", err)
	}
	var size int64
	for _, kv := range resp.Kvs {
		size += int64(len(kv.Key) + len(kv.Value))
	}
	return took, size, nil
}

// streamedRead reads the table as the new agent's listing does
// (pidtable.ListProcs): a RangeStream of the prefix at one revision, values
// not decoded.
func (m *meter) streamedRead(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := m.etcd.GetStream(ctx, "/ssi/procs/", clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("etcd streamed read: %w", err)
	}
	for r := range st {
		if err := r.Err(); err != nil {
			return 0, fmt.Errorf("etcd streamed read: %w", err)
		}
	}
	return time.Since(start), nil
}

// rssMiB is a process's VmRSS in MiB (0 if it cannot be read).
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// cpuTicks is a process's utime+stime in clock ticks (0 if unreadable).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

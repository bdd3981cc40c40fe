package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/hollow"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Bounds of one measurement.
const (
	runLimit    = 2 * time.Minute
	noticeLimit = time.Minute
	hz          = 100 // USER_HZ, the unit of /proc/PID/stat's times
)

// meter measures the cluster.
type meter struct {
	cl   *benchkit.Cluster
	ssi  string
	etcd *clientv3.Client
	log  *slog.Logger
}

// configResult is what was measured at one configuration.
type configResult struct {
	config config
	// ready: from hollow.Start to every node Ready; fill: then until every
	// job was created; jobs: how many.
	ready, fill time.Duration
	jobs        int
	// Per round (s): ssi run; per kill (s): kill to NotReady in the API,
	// the lease's TTL left at the kill (etcd's TimeToLive), and their
	// difference, the lag from the lease's expiry to NotReady in the API.
	run, notice, ttlLeft, lag []float64
	// leaseLosses: hollow nodes' leases lost from their start to the end of
	// the measurements (not the kills); notReady: hollow nodes NotReady in
	// the API at the start of the window.
	leaseLosses, notReady int
	// Per balancer round seen over the window (ms).
	rounds []float64
	leader string
	// Over the window, % of one core: the leader, node1 (etcd + its agent),
	// this process (the hollow nodes).
	leaderCPU, node1CPU, selfCPU float64
	dbSize, dbInUse              float64 // MiB
	// windowed and dbMeasured say the window's and etcd's figures were
	// measured (a configuration cut short lacks them).
	windowed, dbMeasured bool
}

func (m *meter) measure(ctx context.Context, hl *hollow.Cluster, r *configResult, o options) error {
	for i := range o.runs {
		d, err := m.run(ctx)
		if err != nil {
			return err
		}
		m.log.Info("ssi run", "config", r.config.String(), "round", i, "took", d.Round(time.Millisecond))
		r.run = append(r.run, d.Seconds())
	}
	if err := m.window(ctx, r, o.cpuWindow); err != nil {
		return err
	}
	r.leaseLosses = hl.LeaseLosses()
	names := hl.Names()
	killed := map[string]bool{}
	for i := range o.kills {
		// Spread over the nodes, none killed twice; a node that is NotReady
		// at the moment (its lease lost, being renewed) is passed over for
		// the next one.
		victim, err := m.victim(ctx, names, (i*len(names))/o.kills+len(names)/(2*o.kills), killed)
		if err != nil {
			return err
		}
		killed[victim] = true
		d, left, err := m.notice(ctx, hl, victim)
		if err != nil {
			return err
		}
		m.log.Info("killed node noticed", "config", r.config.String(), "node", victim, "after", d.Round(time.Millisecond), "ttl_left_s", left)
		r.notice = append(r.notice, d.Seconds())
		r.ttlLeft = append(r.ttlLeft, float64(left))
		r.lag = append(r.lag, d.Seconds()-float64(left))
	}
	st, err := m.etcd.Status(ctx, m.etcd.Endpoints()[0])
	if err != nil {
		return fmt.Errorf("etcd status: %w", err)
	}
	r.dbSize, r.dbInUse = float64(st.DbSize)/(1<<20), float64(st.DbSizeInUse)/(1<<20)
	r.dbMeasured = true
	return nil
}

// run is one `ssi run --constraint kind=real -- true`, its wall time.
func (m *meter) run(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, runLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.ssi, "run", "--constraint", "kind=real", "--", "true")
	var out bytes.Buffer
	cmd.Env, cmd.Stdout, cmd.Stderr = m.cl.Env, &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("ssi run: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return took, nil
}

// window measures CPU over d, and the balancer's rounds meanwhile.
func (m *meter) window(ctx context.Context, r *configResult, d time.Duration) error {
	bal, err := m.cl.API.Balance(ctx)
	if err != nil {
		return fmt.Errorf("balancer status: %w", err)
	}
	r.leader = bal.Leader
	leaderPID := 0
	for _, n := range m.cl.Nodes {
		if n.Name == bal.Leader {
			leaderPID = n.Agent.PID
		}
	}
	if leaderPID == 0 {
		return fmt.Errorf("balancer leader %q is not a node of the cluster", bal.Leader)
	}
	nodes, err := m.cl.API.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("nodes: %w", err)
	}
	for _, n := range nodes {
		if !n.Ready && strings.HasPrefix(n.Name, hollowPrefix+"-") {
			r.notReady++
		}
	}
	m.log.Info("measuring CPU and rounds", "config", r.config.String(), "leader", bal.Leader, "window", d, "hollow_not_ready", r.notReady)
	l0, n0, s0, t0 := cpuTicks(leaderPID), cpuTicks(m.cl.Nodes[0].Agent.PID), cpuTicks(os.Getpid()), time.Now()
	var last time.Time
	for time.Since(t0) < d {
		if err := benchkit.Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
		b, err := m.cl.API.Balance(ctx)
		if err != nil || b.Status == nil || !b.Status.LastRound.After(last) {
			continue
		}
		last = b.Status.LastRound
		r.rounds = append(r.rounds, float64(b.Status.RoundTook)/float64(time.Millisecond))
	}
	secs := time.Since(t0).Seconds()
	l1, n1, s1 := cpuTicks(leaderPID), cpuTicks(m.cl.Nodes[0].Agent.PID), cpuTicks(os.Getpid())
	r.leaderCPU = 100 * float64(l1-l0) / hz / secs
	r.node1CPU = 100 * float64(n1-n0) / hz / secs
	r.selfCPU = 100 * float64(s1-s0) / hz / secs
	r.windowed = true
	return nil
}

// victim returns the first node of names from index i on that is Ready
// now and not killed yet.
func (m *meter) victim(ctx context.Context, names []string, i int, killed map[string]bool) (string, error) {
	st := pidtable.New(m.etcd)
	for k := range names {
		name := names[(i+k)%len(names)]
		if killed[name] {
			continue
		}
		if _, _, live, err := st.Status(ctx, name); err != nil {
			return "", err
		} else if live {
			return name, nil
		}
	}
	return "", errors.New("no hollow node is Ready to be killed")
}

// notice kills victim and returns how long node1's agent took to list it
// NotReady, and the TTL its lease had left at the kill (whole seconds, as
// etcd says).
func (m *meter) notice(ctx context.Context, hl *hollow.Cluster, victim string) (time.Duration, int64, error) {
	_, lease, live, err := pidtable.New(m.etcd).Status(ctx, victim)
	if err != nil || !live {
		return 0, 0, fmt.Errorf("status of %s before its kill: live %v, %v", victim, live, err)
	}
	ttl, err := m.etcd.TimeToLive(ctx, lease)
	if err != nil {
		return 0, 0, fmt.Errorf("TTL of %s's lease: %w", victim, err)
	}
	if err := hl.Kill(victim); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	for time.Since(start) < noticeLimit {
		nodes, err := m.cl.API.Nodes(ctx)
		if err == nil {
			for _, n := range nodes {
				if n.Name == victim && !n.Ready {
					return time.Since(start), ttl.TTL, nil
				}
			}
		}
		if err := benchkit.Sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, 0, err
		}
	}
	return 0, 0, fmt.Errorf("killed node %s still Ready after %s", victim, noticeLimit)
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

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/localcluster"
)

// Bounds of one measurement's steps.
const (
	startLimit   = 3 * time.Minute  // the job resident with a copied checkpoint
	recoverLimit = 90 * time.Second // the job running elsewhere, the service at 3
	readyLimit   = 90 * time.Second // the victim Ready again after its heal
	idleLimit    = 2 * time.Minute  // the job gone after the kill
	pollEvery    = 50 * time.Millisecond
	victim       = "node3" // the node the jobs run on and lose
	serviceName  = "fobsvc"
)

// bench is one benchmark run.
type bench struct {
	o   options
	log *slog.Logger
	rep report

	bins *benchkit.Binaries
	cl   *benchkit.Cluster
	wd   string
	// svcUp: the service is applied.
	svcUp bool
}

func newBench(o options) *bench {
	return &bench{o: o, log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
}

// variant is one thing measured: a node kill of a job of mib MiB, a
// partition of one, or the service's node kill.
type variant struct {
	kind string // "kill", "partition", "service"
	mib  int
}

func (v variant) String() string {
	switch v.kind {
	case "kill":
		return fmt.Sprintf("node kill, %d MiB job", v.mib)
	case "partition":
		return fmt.Sprintf("partition, %d MiB job", v.mib)
	default:
		return "node kill, 3-replica service"
	}
}

func (b *bench) variants() []variant {
	var vs []variant
	for _, m := range b.o.mib {
		vs = append(vs, variant{"kill", m})
	}
	vs = append(vs, variant{"partition", b.o.mib[0]})
	if !b.o.noService {
		vs = append(vs, variant{kind: "service"})
	}
	return vs
}

// Run measures every variant -runs times on a cluster of its own that it
// tears down before returning.
func (b *bench) Run(ctx context.Context) (err error) {
	prep, err := benchkit.Prepare(ctx, b.log, b.o.cluster)
	b.rep.machine = prep.Machine
	defer func() { b.rep.loadAfter = benchkit.LoadAvg() }()
	if err != nil {
		return err
	}
	defer prep.Release()
	b.bins = prep.Bins
	defer b.teardown()
	if b.wd, err = os.MkdirTemp("", b.o.cluster.Name+"-wd-"); err != nil {
		return err
	}
	_ = os.Chmod(b.wd, 0o755)
	// node1 runs etcd: it never dies here, and takes no part in the
	// elections (the failover controller's among them).
	if b.cl, err = benchkit.StartCluster(ctx, benchkit.ClusterConfig{Flags: b.o.cluster, Nodes: 4, Binary: b.bins.SSI, Log: b.log,
		NodeArgs: map[string][]string{"node1": {"--balancer=false"}}}); err != nil {
		return err
	}
	if _, err := b.cl.API.SetBalance(ctx, api.BalanceRequest{Enabled: false}); err != nil {
		return fmt.Errorf("switch the balancer off: %w", err)
	}
	vs := b.variants()
	plan := benchkit.Plan{Runs: b.o.runs, Rotate: true}
	return plan.Do(ctx, len(vs), func(ctx context.Context, r benchkit.Round, i int) error {
		v := vs[i]
		m, err := b.measure(ctx, v)
		m.round, m.variant = r.N, v
		if err != nil {
			m.err = err.Error()
			b.log.Warn("measurement failed", "round", r.N, "variant", v.String(), "err", err)
		} else {
			b.log.Info("measured", "round", r.N, "variant", v.String(), "running", m.running, "not_ready", m.notReady, "restore", m.restore, "fence_gap", m.fenceGap)
		}
		b.rep.runs = append(b.rep.runs, m)
		return ctx.Err()
	})
}

func (b *bench) teardown() {
	if b.o.keep {
		b.log.Info("leaving the cluster up (-keep)", "name", b.o.cluster.Name)
		return
	}
	left, err := benchkit.StopCluster(b.o.cluster, b.log)
	if err != nil {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("teardown error: %v; run `ssi local down --name %s`", err, b.o.cluster.Name))
	}
	if len(left) > 0 {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("namespaces left behind after teardown: %v", left))
	}
	b.bins.Remove()
	if b.wd != "" {
		_ = os.RemoveAll(b.wd)
	}
}

// node returns the state of the named node.
func (b *bench) node(name string) (*localcluster.NodeState, error) {
	for i := range b.cl.Nodes {
		if b.cl.Nodes[i].Name == name {
			return &b.cl.Nodes[i], nil
		}
	}
	return nil, fmt.Errorf("no node %s", name)
}

// cut blackholes every route between node and the other nodes, both ways,
// and returns the heal, which reports no error (a route already gone is
// fine).
func (b *bench) cut(node string) (heal func(), err error) {
	n, err := b.node(node)
	if err != nil {
		return nil, err
	}
	type route struct{ ns, ip string }
	var added []route
	heal = func() {
		for _, r := range added {
			_ = exec.Command("ip", "-n", r.ns, "route", "del", "blackhole", r.ip+"/32").Run()
		}
	}
	for _, o := range b.cl.Nodes {
		if o.Name == node {
			continue
		}
		for _, r := range []route{{n.Namespace, o.IP}, {o.Namespace, n.IP}} {
			if out, err := exec.Command("ip", "-n", r.ns, "route", "add", "blackhole", r.ip+"/32").CombinedOutput(); err != nil {
				heal()
				return nil, fmt.Errorf("ip -n %s route add blackhole %s: %w: %s", r.ns, r.ip, err, out)
			}
			added = append(added, r)
		}
	}
	return heal, nil
}

// killJobs SIGKILLs every process of node's job cgroups (all of them, or
// gpid's only when gpid is not 0) and returns how many.
func (b *bench) killJobs(node string, gpid uint64) int {
	dir := filepath.Join(jobCgroupRoot(), b.cl.CgroupParent(), node)
	if gpid != 0 {
		dir = filepath.Join(dir, strconv.FormatUint(gpid, 10))
	}
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		raw, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(raw)) {
			if pid, err := strconv.Atoi(f); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
		return nil
	})
	return n
}

// jobCgroupRoot is where job cgroups are: the memory hierarchy on cgroup
// v1, the unified one on v2.
func jobCgroupRoot() string {
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err == nil {
		return "/sys/fs/cgroup/memory"
	}
	return "/sys/fs/cgroup"
}

// killNode is a node's death: links cut, agent SIGKILLed, the processes of
// its jobs (gpid's only if not 0) SIGKILLed. It returns the heal (links
// back, agent started).
func (b *bench) killNode(node string, gpid uint64) (heal func(context.Context) error, err error) {
	healLinks, err := b.cut(node)
	if err != nil {
		return nil, err
	}
	heal = func(ctx context.Context) error {
		healLinks()
		return b.cl.StartAgent(ctx, node)
	}
	if err := b.cl.StopAgent(node, syscall.SIGKILL); err != nil {
		healLinks()
		return nil, fmt.Errorf("kill the agent of %s: %w", node, err)
	}
	if n := b.killJobs(node, gpid); n == 0 && gpid != 0 {
		return heal, fmt.Errorf("no process of gpid %d on %s to kill", gpid, node)
	}
	return heal, nil
}

// waitReady waits until node is Ready.
func (b *bench) waitReady(ctx context.Context, node string) error {
	deadline := time.Now().Add(readyLimit)
	for {
		nodes, err := b.cl.API.Nodes(ctx)
		for _, n := range nodes {
			if n.Name == node && n.Ready {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not Ready after %s (last error: %v)", node, readyLimit, err)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// ready reports whether node is Ready now (false on error).
func (b *bench) ready(ctx context.Context, node string) bool {
	nodes, err := b.cl.API.Nodes(ctx)
	if err != nil {
		return true // unknown: not seen NotReady
	}
	for _, n := range nodes {
		if n.Name == node {
			return n.Ready
		}
	}
	return false
}

// ssi runs the CLI against the cluster.
func (b *bench) ssi(ctx context.Context, args ...string) ([]byte, error) {
	out, _, err := benchkit.Exec(ctx, time.Minute, b.cl.Env, b.bins.SSI, args...)
	return out, err
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/testenv"
	"github.com/ssi-cluster/ssi/localcluster"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
)

// cluster is the shared cluster of this test run.
var cluster *testCluster

type testCluster struct {
	*localcluster.State
	bin string // directory holding ssi and ssi-shim
	// admin is the admin's client config (root's, mode 0600); tmp holds the
	// configs of the test users.
	admin, tmp string
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipping: needs root (network namespaces, cgroups)")
		return m.Run() // every test skips via need()
	}
	tmp, err := os.MkdirTemp("", "ssi-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// World-readable so jobs and CLIs running as other users can execute them.
	if err := os.Chmod(tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bin := filepath.Join(tmp, "bin")
	for _, b := range []struct{ out, pkg string }{{"ssi", "./cmd/ssi"}, {"ssi-shim", "./cmd/ssi-shim"}} {
		// Failpoints are compiled in for the fault-injection tests;
		// SSI_E2E_RACE=1 builds the agents with the race detector.
		args := []string{"build", "-tags", "failpoints", "-o", filepath.Join(bin, b.out)}
		cgo := "CGO_ENABLED=0"
		// Only the agent/CLI: ssi-shim runs as PID 1 inside every job, which
		// CRIU dumps; a race runtime there would only test CRIU on TSAN.
		if os.Getenv("SSI_E2E_RACE") == "1" && b.out == "ssi" {
			args, cgo = append(args, "-race"), "CGO_ENABLED=1"
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = "..", os.Stderr, os.Stderr
		cmd.Env = append(os.Environ(), cgo)
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build %s: %v\n", b.pkg, err)
			return 1
		}
	}
	// A job's PID 1 (cmd/ssi-init), beside ssi-shim, which starts it.
	cc := exec.Command("cc", "-O2", "-static", "-Wall", "-Wextra", "-Werror", "-o", filepath.Join(bin, "ssi-init"), "cmd/ssi-init/main.c")
	cc.Dir, cc.Stdout, cc.Stderr = "..", os.Stderr, os.Stderr
	if err := cc.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build cmd/ssi-init: %v\n", err)
		return 1
	}
	_ = os.Chmod(bin, 0o755)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// A name and subnet of this run's own: two test runs on one machine (a
	// developer's and a helper's, say) must not tear down each other's cluster.
	// SSI_E2E_NAME and SSI_E2E_SUBNET choose them (a helper's own prefix).
	pid := os.Getpid()
	name, subnet := fmt.Sprintf("e2e%d", pid%100000), fmt.Sprintf("10.213.%d.0/24", pid%250)
	if v := os.Getenv("SSI_E2E_NAME"); v != "" {
		name = v
	}
	if v := os.Getenv("SSI_E2E_SUBNET"); v != "" {
		subnet = v
	}
	cfg := localcluster.Config{
		Name: name, Nodes: 3, Subnet: subnet,
		Binary:  filepath.Join(bin, "ssi"),
		DataDir: filepath.Join(tmp, "data"), StateDir: filepath.Join(tmp, "state"), Log: log,
		ConfigFile: filepath.Join(tmp, "admin.json"),
		// node1 runs the embedded etcd: it never leads the balancer, so that
		// the balancer tests can kill the leader without stopping etcd.
		NodeArgs: map[string][]string{"node1": {"--balancer=false"}},
	}
	// A suite run on its own (make soak-failover) may name its cluster, its
	// subnet and its size: SSI_E2E_NAME, SSI_E2E_SUBNET, SSI_E2E_NODES.
	if v := os.Getenv("SSI_E2E_NAME"); v != "" {
		cfg.Name = v
	}
	if v := os.Getenv("SSI_E2E_SUBNET"); v != "" {
		cfg.Subnet = v
	}
	if v := os.Getenv("SSI_E2E_NODES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 3 || n > 8 {
			fmt.Fprintf(os.Stderr, "e2e: SSI_E2E_NODES=%q: want 3 to 8\n", v)
			return 1
		}
		cfg.Nodes = n
	}
	st, _, err := localcluster.Up(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cluster up: %v\n", err)
		return 1
	}
	cluster = &testCluster{State: st, bin: bin, admin: cfg.ConfigFile, tmp: tmp}
	defer cluster.removeUsers()
	// The balancer is on by default; off here, so that it moves nothing the
	// other tests place (they expect jobs to stay where they started). The
	// balancer tests switch it on and off again.
	if err := cluster.balancerOff(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: switch the balancer off: %v\n", err)
		_ = localcluster.Down(ctx, cfg.StateDir, cfg.Name, log)
		return 1
	}
	code := m.Run()
	// Keep the agents' logs of the last run for post-mortems.
	keep := filepath.Join(os.TempDir(), "ssi-e2e-logs")
	_ = os.RemoveAll(keep)
	_ = os.MkdirAll(keep, 0o755)
	for _, n := range st.Nodes {
		if b, err := os.ReadFile(filepath.Join(n.DataDir, "agent.log")); err == nil {
			_ = os.WriteFile(filepath.Join(keep, n.Name+".log"), b, 0o644)
		}
	}
	if os.Getenv("SSI_E2E_RACE") == "1" {
		for _, n := range st.Nodes {
			if b, err := os.ReadFile(filepath.Join(n.DataDir, "agent.log")); err == nil && bytes.Contains(b, []byte("DATA RACE")) {
				fmt.Fprintf(os.Stderr, "e2e: data race in the agent of %s:\n%s\n", n.Name, b)
				code = 1
			}
		}
	}
	if err := localcluster.Down(ctx, cfg.StateDir, cfg.Name, log); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cluster down: %v\n", err)
		code = 1
	}
	return code
}

// timingSlack scales the few assertions on how fast the cluster reacts: 2
// with agents built with the race detector (SSI_E2E_RACE=1), whose embedded
// etcd runs several times slower, else 1.
func timingSlack() time.Duration {
	if os.Getenv("SSI_E2E_RACE") == "1" {
		return 2
	}
	return 1
}

func need(t *testing.T) *testCluster {
	t.Helper()
	if cluster == nil {
		testenv.Skip(t, "needs root: e2e tests build a cluster of network namespaces")
	}
	return cluster
}

// result is what one CLI invocation did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// cmd prepares `ssi args...` against the cluster, as root with the admin's config.
func (c *testCluster) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "ssi"), args...)
	cmd.Env = []string{"SSI_CONFIG=" + c.admin, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	cmd.Dir = "/"
	return cmd
}

func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return r
}

// ssi runs the CLI and returns what it did; it fails the test after 60 s.
func (c *testCluster) ssi(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return runCmd(t, c.cmd(ctx, args...))
}

// ok runs the CLI and fails the test unless it exits 0.
func (c *testCluster) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := c.ssi(t, args...)
	if r.code != 0 {
		t.Fatalf("ssi %s: %v", strings.Join(args, " "), r)
	}
	return r.stdout
}

// detach starts a detached job and returns its gpid.
func (c *testCluster) detach(t *testing.T, args ...string) uint64 {
	t.Helper()
	out := c.ok(t, append([]string{"run", "-d"}, args...)...)
	var gpid uint64
	if _, err := fmt.Sscan(out, &gpid); err != nil || gpid == 0 {
		t.Fatalf("run -d printed %q, want a gpid", out)
	}
	return gpid
}

// ps returns `ssi ps -A --exited -o json`.
func (c *testCluster) ps(t *testing.T) []api.ProcInfo {
	t.Helper()
	var procs []api.ProcInfo
	if err := json.Unmarshal([]byte(c.ok(t, "ps", "-A", "--exited", "-o", "json")), &procs); err != nil {
		t.Fatalf("ps -o json: %v", err)
	}
	return procs
}

func (c *testCluster) proc(t *testing.T, gpid uint64) api.ProcInfo {
	t.Helper()
	for _, p := range c.ps(t) {
		if p.GPID == gpid {
			return p
		}
	}
	t.Fatalf("gpid %d not in ps -A --exited", gpid)
	return api.ProcInfo{}
}

func (c *testCluster) nodes(t *testing.T) map[string]api.NodeInfo {
	t.Helper()
	var nodes []api.NodeInfo
	if err := json.Unmarshal([]byte(c.ok(t, "nodes", "-o", "json")), &nodes); err != nil {
		t.Fatalf("nodes -o json: %v", err)
	}
	m := map[string]api.NodeInfo{}
	for _, n := range nodes {
		m[n.Name] = n
	}
	return m
}

// kill ends jobs for good (cleanup helper) and fails the test if one survives:
// a job left running would confuse the tests after it.
func (c *testCluster) kill(t *testing.T, gpids ...uint64) {
	t.Helper()
	for _, g := range gpids {
		var last result
		eventually(t, 15*time.Second, fmt.Sprintf("gpid %d killed", g), func() error {
			if p := c.proc(t, g); p.State.Ended() {
				return nil
			}
			last = c.ssi(t, "kill", "-s", "KILL", fmt.Sprint(g))
			return fmt.Errorf("still running after kill: %v", last)
		})
	}
}

// eventually retries f every 100 ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restartAgent kills node's agent with sig and starts it again after pause.
func (c *testCluster) stopAgent(t *testing.T, node string, sig syscall.Signal) {
	t.Helper()
	if err := c.StopAgent(node, sig); err != nil {
		t.Fatal(err)
	}
}

func (c *testCluster) startAgent(t *testing.T, node string) {
	t.Helper()
	if err := c.StartAgent(context.Background(), node); err != nil {
		t.Fatal(err)
	}
}

// pidAlive reports whether a host PID exists and is not a zombie.
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// lineReader collects a stream's lines for assertions.
func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// imagesLeft lists migration images of gpid still held by the cluster's agents.
func (c *testCluster) imagesLeft(gpid uint64) []string {
	var out []string
	for _, n := range c.Nodes {
		m, _ := filepath.Glob(filepath.Join(migrate.ImagesRoot(n.DataDir), fmt.Sprintf("*-%d", gpid)))
		out = append(out, m...)
	}
	return out
}

// newestRunning waits (up to 20 s) for a running job whose argv matches and
// returns the newest such (by creation: gpids come from per-node blocks, so
// a newer job may have a smaller gpid): the job of an attached `ssi run` the
// test started.
func (c *testCluster) newestRunning(t *testing.T, match func(argv []string) bool) uint64 {
	t.Helper()
	var gpid uint64
	eventually(t, 20*time.Second, "the attached run's job appears", func() error {
		var newest time.Time
		for _, p := range c.ps(t) {
			if p.State == pidtable.Running && match(p.Argv) && (gpid == 0 || p.Created.After(newest)) {
				gpid, newest = p.GPID, p.Created
			}
		}
		if gpid == 0 {
			return fmt.Errorf("no matching running job in ps")
		}
		return nil
	})
	return gpid
}

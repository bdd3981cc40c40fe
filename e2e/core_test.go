package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// TestRunOnEachNode: an attached run on each node returns the job's stdout and
// stderr separately and its exit code, and the job really runs inside that node's
// network namespace, in its own PID namespace.
func TestRunOnEachNode(t *testing.T) {
	c := need(t)
	for _, n := range c.Nodes {
		t.Run(n.Name, func(t *testing.T) {
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join("/run/netns", n.Namespace), &st); err != nil {
				t.Fatal(err)
			}
			r := c.ssi(t, "run", "--node", n.Name, "--", "sh", "-c",
				`echo out; echo err >&2; readlink /proc/self/ns/net; readlink /proc/self/ns/pid; exit 7`)
			if r.code != 7 {
				t.Fatalf("exit code: %v, want 7", r)
			}
			if r.stderr != "err\n" {
				t.Fatalf("stderr %q, want \"err\\n\"", r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if len(lines) != 3 || lines[0] != "out" {
				t.Fatalf("stdout %q", r.stdout)
			}
			if want := fmt.Sprintf("net:[%d]", st.Ino); lines[1] != want {
				t.Fatalf("job ran in network namespace %s, want %s (%s)", lines[1], want, n.Namespace)
			}
			// The job's /proc is of its own PID namespace (its mount
			// namespace has one): its ns link differs from ours.
			if host, err := os.Readlink("/proc/self/ns/pid"); err != nil || lines[2] == host || !strings.HasPrefix(lines[2], "pid:[") {
				t.Fatalf("job is not in a PID namespace of its own: %q (the host's: %q, %v)", lines[2], host, err)
			}
		})
	}
}

// TestRandomPlacement: without --node, jobs land on random Ready nodes, all of them.
func TestRandomPlacement(t *testing.T) {
	c := need(t)
	seen := map[string]int{}
	for range 30 {
		r := c.ssi(t, "run", "--", "true")
		if r.code != 0 {
			t.Fatalf("run true: %v", r)
		}
	}
	for _, p := range c.ps(t) {
		if len(p.Argv) == 1 && p.Argv[0] == "true" {
			seen[p.Node]++
		}
	}
	for _, n := range c.Nodes {
		if seen[n.Name] == 0 {
			t.Fatalf("30 random placements never chose %s: %v", n.Name, seen)
		}
	}
	t.Logf("placement of 30 jobs: %v", seen)
}

// TestExitCodes: the CLI exits like the job would locally.
func TestExitCodes(t *testing.T) {
	c := need(t)
	cases := []struct {
		name   string
		argv   []string
		code   int
		stderr string
	}{
		{"success", []string{"true"}, 0, ""},
		{"failure", []string{"sh", "-c", "exit 3"}, 3, ""},
		{"not found", []string{"no-such-command-xyz"}, 127, "no-such-command-xyz: command not found on node node2"},
		{"not executable", []string{"/etc/hostname"}, 126, "cannot execute"},
		{"killed by SIGKILL", []string{"sh", "-c", "kill -9 $$"}, 137, ""},
		{"killed by SIGTERM", []string{"sh", "-c", "kill -TERM $$"}, 143, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.ssi(t, append([]string{"run", "--node", "node2", "--"}, tc.argv...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("%v; want exit %d and stderr containing %q", r, tc.code, tc.stderr)
			}
		})
	}
}

// TestAttachedRunForwardsSignals: SIGINT and SIGTERM sent to `ssi run` reach the
// job, whose exit code `ssi run` returns.
func TestAttachedRunForwardsSignals(t *testing.T) {
	c := need(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := c.cmd(ctx, "run", "--node", "node3", "--", "sh", "-c",
				`trap 'echo got INT; exit 42' INT; trap 'echo got TERM; exit 43' TERM; echo ready; while :; do sleep 0.05; done`)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "job prints ready", func() error {
				if !strings.Contains(out.String(), "ready") {
					return fmt.Errorf("stdout so far %q", out.String())
				}
				return nil
			})
			_ = cmd.Process.Signal(sig)
			err := cmd.Wait()
			want := map[syscall.Signal]int{syscall.SIGINT: 42, syscall.SIGTERM: 43}[sig]
			if cmd.ProcessState.ExitCode() != want {
				t.Fatalf("ssi run exited %v (%v), stdout %q stderr %q; want %d", cmd.ProcessState.ExitCode(), err, out.String(), errb.String(), want)
			}
			if gotWant := map[syscall.Signal]string{syscall.SIGINT: "got INT", syscall.SIGTERM: "got TERM"}[sig]; !strings.Contains(out.String(), gotWant) {
				t.Fatalf("job did not report the signal: %q", out.String())
			}
		})
	}
}

// TestDetachedJobLifecycle: run -d, ps -A (table and JSON), kill, wait, logs.
func TestDetachedJobLifecycle(t *testing.T) {
	c := need(t)
	gpid := c.detach(t, "--node", "node1", "--memory", "64M", "--cpus", "0.5", "--", "sh", "-c", "echo started; exec sleep 600")
	defer c.kill(t, gpid)
	var p = c.proc(t, gpid)
	eventually(t, 5*time.Second, "ps shows live figures", func() error {
		p = c.proc(t, gpid)
		if p.Stats == nil || p.Stats.Stat != "S" || p.Stats.RSS == 0 {
			return fmt.Errorf("row %+v stats %+v", p.Proc, p.Stats)
		}
		return nil
	})
	if p.Node != "node1" || p.State != pidtable.Running || p.PID <= 0 || p.User != "root" || p.Memory != 64<<20 || p.CPUs != 0.5 {
		t.Fatalf("ps -o json row: %+v", p.Proc)
	}
	if !pidAlive(p.PID) {
		t.Fatalf("host pid %d from ps is not alive", p.PID)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.PID)); strings.TrimSpace(string(comm)) != "sleep" {
		t.Fatalf("host pid %d is %q, want the job's sleep", p.PID, comm)
	}
	table := c.ok(t, "ps", "-A")
	var row string
	for _, l := range strings.Split(table, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == strconv.FormatUint(gpid, 10) {
			row = l
		}
	}
	f := strings.Fields(row)
	if !strings.HasPrefix(table, "GPID") || len(f) < 9 || f[1] != "node1" || f[2] != strconv.Itoa(p.PID) || f[3] != "root" || f[4] != "S" {
		t.Fatalf("ps -A table row %q in:\n%s", row, table)
	}
	own := false
	for _, l := range strings.Split(c.ok(t, "ps"), "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[0] == strconv.FormatUint(gpid, 10) && f[3] == "root" {
			own = true
		}
	}
	if !own {
		t.Fatalf("ps (own jobs, as root) lacks gpid %d", gpid)
	}
	if logs := c.ok(t, "logs", strconv.FormatUint(gpid, 10)); logs != "started\n" {
		t.Fatalf("logs of running job: %q", logs)
	}
	c.ok(t, "kill", strconv.FormatUint(gpid, 10))
	r := c.ssi(t, "wait", strconv.FormatUint(gpid, 10))
	if r.code != 143 || !strings.Contains(r.stdout, "exited 143 (SIGTERM)") {
		t.Fatalf("wait after kill: %v", r)
	}
	if pidAlive(p.PID) {
		t.Fatalf("pid %d still alive after kill+wait", p.PID)
	}
	if logs := c.ok(t, "logs", strconv.FormatUint(gpid, 10)); logs != "started\n" {
		t.Fatalf("logs of ended job: %q", logs)
	}
	if strings.Contains(c.ok(t, "ps", "-A"), "\n"+strconv.FormatUint(gpid, 10)+" ") {
		t.Fatalf("ended job still listed by ps -A without --exited")
	}
	cg := filepath.Join("/sys/fs/cgroup/memory", c.CgroupParent(), "node1", strconv.FormatUint(gpid, 10))
	if _, err := os.Stat(cg); err == nil {
		t.Fatalf("cgroup %s left behind", cg)
	}
}

// TestWaitSeveralAndLogsFollow: logs -f sees every line in order and ends with
// the job; wait on several gpids returns the last one's status.
func TestWaitSeveralAndLogsFollow(t *testing.T) {
	c := need(t)
	g1 := c.detach(t, "--node", "node2", "--", "sh", "-c", `for i in $(seq 1 40); do echo "line $i"; echo "err $i" >&2; sleep 0.02; done; exit 4`)
	g2 := c.detach(t, "--node", "node3", "--", "sh", "-c", "sleep 0.5; exit 9")
	r := c.ssi(t, "logs", "-f", strconv.FormatUint(g1, 10))
	var want, wantErr strings.Builder
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
		fmt.Fprintf(&wantErr, "err %d\n", i)
	}
	if r.code != 0 || r.stdout != want.String() || r.stderr != wantErr.String() {
		t.Fatalf("logs -f: %v", r)
	}
	r = c.ssi(t, "wait", strconv.FormatUint(g1, 10), strconv.FormatUint(g2, 10))
	if r.code != 9 || r.stdout != fmt.Sprintf("%d exited 4\n%d exited 9\n", g1, g2) {
		t.Fatalf("wait: %v", r)
	}
}

// TestCgroupLimits: --cpus and --memory become the job's cgroup limits, as the
// job itself reads them: on cgroup v2 (unified, Debian 12's default) from its
// cgroup's memory.max and cpu.max, on v1 from the memory and cpu hierarchies.
func TestCgroupLimits(t *testing.T) {
	c := need(t)
	// The job prints its memory limit in bytes, then its CPU quota per 100 ms
	// period in µs. Jobs share the host's cgroup namespace: /proc/self/cgroup
	// holds the full path.
	const script = `if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	cg=$(awk -F: '$1=="0"{print $3}' /proc/self/cgroup)
	cat /sys/fs/cgroup$cg/memory.max
	read quota period < /sys/fs/cgroup$cg/cpu.max; echo "$quota"; [ "$period" = 100000 ] || echo "period $period"
else
	cg=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup); cat /sys/fs/cgroup/memory$cg/memory.limit_in_bytes
	cg=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/{print $3}' /proc/self/cgroup); cat /sys/fs/cgroup/cpu$cg/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu,cpuacct$cg/cpu.cfs_quota_us
fi`
	r := c.ssi(t, "run", "--node", "node3", "--cpus", "0.25", "--memory", "48M", "--", "sh", "-c", script)
	if r.code != 0 || r.stdout != fmt.Sprintf("%d\n25000\n", 48<<20) {
		t.Fatalf("limits seen by the job: %v", r)
	}
}

// TestRunAsUser: jobs run as the account of the certificate's user; an admin
// may choose another account; a user may not.
func TestRunAsUser(t *testing.T) {
	c := need(t)
	if r := c.ssi(t, "run", "--user", "nobody", "--", "id", "-u"); r.code != 0 || r.stdout != "65534\n" {
		t.Fatalf("admin running as nobody: %v", r)
	}
	nobody := c.userConfig(t, "nobody", 65534, 65534)
	asNobody := func(args ...string) result {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return runCmd(t, c.as(ctx, nobody, 65534, 65534, args...))
	}
	if r := asNobody("run", "--", "sh", "-c", "id -u; id -g"); r.code != 0 || r.stdout != "65534\n65534\n" {
		t.Fatalf("nobody's job: %v", r)
	}
	if r := asNobody("run", "--user", "root", "--", "id", "-u"); r.code != 1 || !strings.Contains(r.stderr, "only admins may run jobs as another user") {
		t.Fatalf("nobody asking for root: %v", r)
	}
}

// TestAgentRestartKeepsJobs: kill -9 an agent; its jobs keep running and stay
// listed, a follower keeps streaming, and after the restart the exit status is
// still collected and the output is complete, in order, without duplicates.
func TestAgentRestartKeepsJobs(t *testing.T) {
	c := need(t)
	gpid := c.detach(t, "--node", "node2", "--", "sh", "-c", `i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo "tick $i"; sleep 0.1; done; exit 5`)
	sleeper := c.detach(t, "--node", "node2", "--", "sleep", "600")
	defer c.kill(t, sleeper)
	pid := c.proc(t, sleeper).PID

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	follower := c.cmd(ctx, "logs", "-f", strconv.FormatUint(gpid, 10))
	var out, errb bytes.Buffer
	follower.Stdout, follower.Stderr = &out, &errb
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1 * time.Second)
	c.stopAgent(t, "node2", syscall.SIGKILL)
	time.Sleep(1 * time.Second)
	if !pidAlive(pid) {
		t.Fatalf("job pid %d died with its agent", pid)
	}
	if p := c.proc(t, sleeper); p.State != pidtable.Running || p.Node != "node2" {
		t.Fatalf("job record while its agent is down: %+v", p.Proc)
	}
	c.startAgent(t, "node2")
	if p := c.proc(t, sleeper); p.State != pidtable.Running || p.PID != pid {
		t.Fatalf("after restart: %+v, want running with pid %d", p.Proc, pid)
	}
	r := c.ssi(t, "wait", strconv.FormatUint(gpid, 10))
	if r.code != 5 {
		t.Fatalf("wait after agent restart: %v", r)
	}
	if err := follower.Wait(); err != nil {
		t.Fatalf("logs -f across the restart: %v, stderr %q", err, errb.String())
	}
	var want strings.Builder
	for i := 1; i <= 60; i++ {
		fmt.Fprintf(&want, "tick %d\n", i)
	}
	if out.String() != want.String() {
		t.Fatalf("logs -f across agent restart lost or repeated output:\n got %q\nwant %q", out.String(), want.String())
	}
	c.ok(t, "kill", strconv.FormatUint(sleeper, 10))
	if r := c.ssi(t, "wait", strconv.FormatUint(sleeper, 10)); r.code != 143 {
		t.Fatalf("kill of an adopted job: %v", r)
	}
}

// TestNodeDeath: a node whose agent is gone turns NotReady within the lease TTL,
// refuses --node, and is never chosen by placement; it comes back when its agent does.
func TestNodeDeath(t *testing.T) {
	c := need(t)
	c.stopAgent(t, "node3", syscall.SIGKILL)
	defer func() {
		if !c.Nodes[2].Agent.Alive() {
			c.startAgent(t, "node3")
		}
	}()
	start := time.Now()
	eventually(t, 8*time.Second, "node3 NotReady", func() error {
		if n := c.nodes(t)["node3"]; n.Ready {
			return fmt.Errorf("node3 still Ready")
		}
		return nil
	})
	t.Logf("node3 NotReady %.1fs after its agent was killed", time.Since(start).Seconds())
	if took := time.Since(start); took > timingSlack()*6500*time.Millisecond {
		t.Fatalf("NotReady took %s, want within the 5 s lease TTL (plus polling)", took)
	}
	if out := c.ok(t, "nodes"); !strings.Contains(out, "NotReady") {
		t.Fatalf("ssi nodes:\n%s", out)
	}
	r := c.ssi(t, "run", "--node", "node3", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "node3") || !strings.Contains(r.stderr, "NotReady") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("run on NotReady node: %v", r)
	}
	// gpids come from per-node blocks, so new jobs are not the last rows of
	// ps: tell them by the gpids that were there before.
	before := map[uint64]bool{}
	for _, p := range c.ps(t) {
		before[p.GPID] = true
	}
	for range 15 {
		if r := c.ssi(t, "run", "--", "true"); r.code != 0 {
			t.Fatalf("random placement with a dead node: %v", r)
		}
	}
	placed := 0
	for _, p := range c.ps(t) {
		if before[p.GPID] {
			continue
		}
		placed++
		if p.Node == "node3" {
			t.Fatalf("placed gpid %d on NotReady node3", p.GPID)
		}
	}
	if placed != 15 {
		t.Fatalf("%d new jobs listed, want the 15 just run", placed)
	}
	c.startAgent(t, "node3")
	if n := c.nodes(t)["node3"]; !n.Ready {
		t.Fatalf("node3 not Ready after its agent restarted")
	}
}

// TestBadInput: each mistake gets one clear line on stderr, a non-zero exit and
// leaves nothing behind (no gpid record, cgroup or namespace).
func TestBadInput(t *testing.T) {
	c := need(t)
	recordsBefore := len(c.ps(t))
	nsBefore := netnsCount(t)
	cases := []struct {
		name string
		args []string
		env  []string
		code int
		want string
	}{
		{"unknown node", []string{"run", "--node", "node9", "--", "true"}, nil, 1, `unknown node "node9" (known nodes: node1, node2, node3)`},
		{"empty command", []string{"run"}, nil, 2, "no command given"},
		{"empty command after --", []string{"run", "--"}, nil, 2, "no command given"},
		{"malformed memory", []string{"run", "--memory", "12XB", "--", "true"}, nil, 2, `invalid size "12XB"`},
		{"negative cpus", []string{"run", "--cpus", "-1", "--", "true"}, nil, 2, "--cpus -1: must not be negative"},
		{"memory too small", []string{"run", "--memory", "1K", "--", "true"}, nil, 1, "at least 4 MiB"},
		{"missing workdir", []string{"run", "--node", "node1", "--workdir", "/no/such/dir", "--", "true"}, nil, 1, "--workdir /no/such/dir: no such directory on node node1"},
		{"unknown user", []string{"run", "--user", "no-such-user-x", "--", "true"}, nil, 1, `user "no-such-user-x" does not exist`},
		{"bad env", []string{"run", "--env", "=x", "--", "true"}, nil, 2, `--env "=x"`},
		{"bad placement", []string{"run", "--placement", "fastest", "--", "true"}, nil, 2, `unknown policy "fastest"`},
		{"unknown gpid kill", []string{"kill", "999999"}, nil, 1, "no such process: gpid 999999"},
		{"unknown gpid logs", []string{"logs", "999999"}, nil, 1, "no such process: gpid 999999"},
		{"unknown gpid wait", []string{"wait", "999999"}, nil, 1, "no such process: gpid 999999"},
		{"malformed gpid", []string{"kill", "abc"}, nil, 2, `invalid gpid "abc"`},
		{"bad signal", []string{"kill", "-s", "NOPE", "1"}, nil, 2, `invalid signal "NOPE"`},
		{"unknown flag", []string{"run", "--bogus", "--", "true"}, nil, 2, "unknown flag: --bogus"},
		{"unreachable cluster", []string{"ps", "-A"}, []string{"SSI_ENDPOINT=127.0.0.1:1"}, 1, "cannot reach the ssi agent at https://127.0.0.1:1"},
		{"no cluster configured", []string{"nodes"}, []string{"SSI_ENDPOINT=", "SSI_CONFIG=/nonexistent/ssi.json"}, 1, "no cluster configured"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := c.cmd(ctx, tc.args...)
			cmd.Env = append(cmd.Env, tc.env...)
			r := runCmd(t, cmd)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("%v; want exit %d and stderr containing %q", r, tc.code, tc.want)
			}
			if n := strings.Count(strings.TrimRight(r.stderr, "\n"), "\n"); n != 0 {
				t.Fatalf("stderr has %d lines, want one: %q", n+1, r.stderr)
			}
		})
	}
	if n := len(c.ps(t)); n != recordsBefore {
		t.Fatalf("bad input left %d new gpid records", n-recordsBefore)
	}
	if n := netnsCount(t); n != nsBefore {
		t.Fatalf("bad input changed the number of network namespaces: %d -> %d", nsBefore, n)
	}
	for _, n := range c.Nodes {
		if kids := liveJobCgroups(t, c.CgroupParent(), n.Name); len(kids) != 0 {
			// Only jobs still running may have cgroups.
			for _, g := range kids {
				if p := c.proc(t, g); p.State.Ended() {
					t.Fatalf("ended job %d still has a cgroup on %s", g, n.Name)
				}
			}
		}
	}
}

// TestUnreachableMessageNamesSource: the CLI says where the endpoint came from and
// how to start a cluster.
func TestUnreachableMessageNamesSource(t *testing.T) {
	c := need(t)
	uc, err := pki.NewUserConfig(c.ca(t), "127.0.0.1:1", "root", true, pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.writeConfig(t, uc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := c.cmd(ctx, "nodes")
	cmd.Env = []string{"SSI_CONFIG=" + cfg, "PATH=/usr/bin:/bin"}
	r := runCmd(t, cmd)
	if r.code != 1 || !strings.Contains(r.stderr, "(endpoint from "+cfg+")") || !strings.Contains(r.stderr, "make up") {
		t.Fatalf("%v", r)
	}
}

// TestAgentEtcdDown: an agent that cannot reach etcd at start says so in one line
// and exits non-zero.
func TestAgentEtcdDown(t *testing.T) {
	c := need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	c.nodeCredentials(t, filepath.Join(dir, "pki"), "lonely")
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "ssi"), "agent", "--name", "lonely", "--listen", "127.0.0.1:0",
		"--advertise", "127.0.0.1:7999", "--data-dir", dir, "--etcd-endpoints", "https://127.0.0.1:1", "--etcd-dial-timeout", "1s")
	r := runCmd(t, cmd)
	if r.code != 1 || !strings.Contains(r.stderr, "cannot reach etcd at https://127.0.0.1:1") {
		t.Fatalf("%v", r)
	}
	if n := strings.Count(strings.TrimRight(r.stderr, "\n"), "\n"); n != 0 {
		t.Fatalf("stderr has %d lines, want one: %q", n+1, r.stderr)
	}
}

func netnsCount(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// liveJobCgroups lists the gpids that have a cgroup on node.
func liveJobCgroups(t *testing.T, parent, node string) []uint64 {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(jobCgroupRoot(), parent, node))
	var out []uint64
	for _, e := range entries {
		if g, err := strconv.ParseUint(e.Name(), 10, 64); err == nil && e.IsDir() {
			out = append(out, g)
		}
	}
	return out
}

// TestRunFromMissingWorkdir: a job whose caller's working directory is gone
// (deleted under the shell) or exists only on the caller's machine runs in
// the user's home on the node, and ssi run says so on stderr instead of
// running it elsewhere without a word (issue 13).
func TestRunFromMissingWorkdir(t *testing.T) {
	c := need(t)
	gone := filepath.Join(t.TempDir(), "gone")
	if err := os.Mkdir(gone, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := c.cmd(ctx)
	cmd.Path, cmd.Args = "/bin/sh", []string{"sh", "-c", `cd "$1" && rmdir "$1" && exec "$2" run --node node2 -- pwd`, "sh", gone, filepath.Join(c.bin, "ssi")}
	r := runCmd(t, cmd)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "/root" || !strings.Contains(r.stderr, "your working directory no longer exists") || !strings.Contains(r.stderr, "runs in /root on node node2") {
		t.Fatalf("run from a deleted working directory: %v; want pwd /root and a note saying so", r)
	}
	t.Logf("deleted cwd: %s", strings.TrimSpace(r.stderr))
	// A cwd the node has: no note.
	if r := c.ssi(t, "run", "--node", "node2", "--", "pwd"); r.code != 0 || strings.TrimSpace(r.stdout) != "/" || strings.Contains(r.stderr, "note") {
		t.Fatalf("run from / (present everywhere): %v; want pwd / and no note", r)
	}
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/shim"
)

// Node lifecycle (issue 20): cordon, labels, drain by live migration, rm.
// Every test leaves the nodes as it found them: uncordoned, no drain under
// way, no label of its own (restoreNodes).

// restoreNodes, at the end of a test, cancels drains and uncordons every node.
func restoreNodes(t *testing.T, c *testCluster) {
	t.Helper()
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			_ = c.ssi(t, "node", "drain", n.Name, "--cancel")
			_ = c.ssi(t, "node", "uncordon", n.Name)
		}
	})
}

// drainStatus returns the drain of node (ssi node drain NAME --status -o
// json, which starts nothing).
func (c *testCluster) drainStatus(t *testing.T, node string) api.DrainResponse {
	t.Helper()
	var d api.DrainResponse
	if err := json.Unmarshal([]byte(c.ok(t, "node", "drain", node, "--status", "-o", "json")), &d); err != nil {
		t.Fatalf("node drain -o json: %v", err)
	}
	return d
}

// lastTick is the last tick a counter.py job printed.
func (c *testCluster) lastTick(t *testing.T, gpid uint64) int {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(c.ok(t, "logs", strconv.FormatUint(gpid, 10))), "\n")
	var n int
	fmt.Sscanf(lines[len(lines)-1], "tick %d", &n)
	return n
}

// pipelineJob is a job of several processes (a subshell with two sleeps, a
// loop, two cats) that prints 1, 2, 3, ...
var pipelineJob = []string{"sh", "-c", `(sleep 600 & sleep 600 & wait) & i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done | cat | cat`}

// checkCounting checks the output of pipelineJob: 1..n, each once.
func checkCounting(t *testing.T, out string) int {
	t.Helper()
	lines := strings.Fields(out)
	for i, l := range lines {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("pipeline output broken at line %d: %q", i+1, l)
		}
	}
	return len(lines)
}

// TestCordon: a cordoned node gets no job placed by ssi run (with no --node),
// is refused by --node with the way out, and receives no balancer move while
// the balancer spreads a busy node's jobs; ssi nodes shows Ready,Cordoned;
// cordon twice is harmless and says so; uncordon brings it back.
func TestCordon(t *testing.T) {
	c := need(t)
	restoreNodes(t, c)
	out := c.ok(t, "node", "cordon", "node2", "--reason", "e2e")
	if !strings.Contains(out, "node node2 cordoned") {
		t.Fatalf("cordon: %q", out)
	}
	if out := c.ok(t, "node", "cordon", "node2"); !strings.Contains(out, "already cordoned") {
		t.Fatalf("second cordon: %q", out)
	}
	if out := c.ok(t, "nodes"); !regexpLine(out, "node2", "Ready,Cordoned") {
		t.Fatalf("ssi nodes:\n%s", out)
	}
	if n := c.nodes(t)["node2"]; !n.Cordoned || !n.Ready {
		t.Fatalf("nodes -o json: node2 %+v", n)
	}
	var placed []uint64
	for range 12 {
		placed = append(placed, c.detach(t, "--", "sleep", "600"))
	}
	defer c.kill(t, placed...)
	for _, g := range placed {
		if p := c.proc(t, g); p.Node == "node2" {
			t.Fatalf("gpid %d placed on the cordoned node2", g)
		}
	}
	r := c.ssi(t, "run", "-d", "--node", "node2", "--", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "cordoned") || !strings.Contains(r.stderr, "ssi node uncordon node2") {
		t.Fatalf("run --node node2 while cordoned: %v", r)
	}
	c.kill(t, placed...)

	// The balancer spreads a busy node3 onto node1, never onto node2.
	balanceOn(t, c)
	wd := privateWorkdir(t)
	var busy []uint64
	for range 4 {
		busy = append(busy, c.detach(t, append([]string{"--node", "node3", "-w", wd, "--"}, busyJob(40)...)...))
	}
	defer c.kill(t, busy...)
	moved := false
	for deadline := time.Now().Add(25 * time.Second); time.Now().Before(deadline) && !moved; time.Sleep(500 * time.Millisecond) {
		for _, p := range c.ps(t) {
			if !slices.Contains(busy, p.GPID) {
				continue
			}
			switch {
			case p.Node == "node2" || (p.Migration != nil && p.Migration.Target == "node2"):
				t.Fatalf("the balancer moved gpid %d onto the cordoned node2: %+v", p.GPID, p.Proc)
			case p.Node == "node1" && p.State == pidtable.Running:
				moved = true
			}
		}
	}
	if !moved {
		t.Fatalf("the balancer moved nothing to node1 in 25 s: %+v", c.balance(t))
	}
	for _, g := range busy {
		for _, ev := range c.events(t, g) {
			if ev.To == "node2" {
				t.Fatalf("an event of gpid %d targets node2: %+v", g, ev)
			}
		}
	}
	c.kill(t, busy...)
	if out := c.ok(t, "node", "uncordon", "node2"); !strings.Contains(out, "uncordoned") {
		t.Fatalf("uncordon: %q", out)
	}
	if out := c.ok(t, "node", "uncordon", "node2"); !strings.Contains(out, "not cordoned; nothing changed") {
		t.Fatalf("second uncordon: %q", out)
	}
	if n := c.nodes(t)["node2"]; n.Cordoned {
		t.Fatalf("node2 still cordoned: %+v", n)
	}
	g := c.detach(t, "--node", "node2", "--", "sleep", "600")
	c.kill(t, g)
}

// regexpLine reports whether some line of out has every field in fields.
func regexpLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		ok := true
		for _, want := range fields {
			if !slices.Contains(f, want) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// TestNodeLabel: labels set at runtime are what placement constraints see,
// at once; removed, they no longer match; bad labels are usage errors.
func TestNodeLabel(t *testing.T) {
	c := need(t)
	t.Cleanup(func() { _ = c.ssi(t, "node", "label", "node3", "e2edrain-") })
	if out := c.ok(t, "node", "label", "node3", "e2edrain=yes"); !strings.Contains(out, "e2edrain=yes") {
		t.Fatalf("label: %q", out)
	}
	if l := c.nodes(t)["node3"].Labels; l["e2edrain"] != "yes" {
		t.Fatalf("node3 labels %v", l)
	}
	var gs []uint64
	for range 3 {
		gs = append(gs, c.detach(t, "--constraint", "e2edrain=yes", "--", "sleep", "600"))
	}
	defer c.kill(t, gs...)
	for _, g := range gs {
		if p := c.proc(t, g); p.Node != "node3" {
			t.Fatalf("gpid %d with --constraint e2edrain=yes on %s", g, p.Node)
		}
	}
	c.ok(t, "node", "label", "node3", "e2edrain-")
	r := c.ssi(t, "run", "-d", "--constraint", "e2edrain=yes", "--", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "e2edrain=yes") {
		t.Fatalf("run with a removed label: %v", r)
	}
	for _, bad := range [][]string{{"node3", "=x"}, {"node3", "k="}, {"node3"}} {
		if r := c.ssi(t, append([]string{"node", "label"}, bad...)...); r.code != 2 {
			t.Fatalf("node label %v: %v, want a usage error", bad, r)
		}
	}
	if r := c.ssi(t, "node", "label", "node3", "bad key=1"); r.code != 1 || !strings.Contains(r.stderr, "only letters") {
		t.Fatalf("bad label key: %v", r)
	}
}

// TestDrainMovesEverything: node2 holds 12 jobs: a counter that checks its
// own continuity, a 64 MiB and a 256 MiB one, one with automatic checkpoints,
// a Python computation with a known result, a 3-process pipeline, four sleeps
// (one pinned), and a job holding an established TCP connection, which CRIU
// cannot dump without --tcp-established. With the balancer on, ssi node
// drain node2 --wait moves the 11 others, alive, to node1 or node3: every job
// kept its state (no tick lost or repeated, the pipeline's count unbroken,
// the computation's result right), each move is in the events, and the
// balancer moved nothing onto node2; the TCP job is the one left on node2,
// reported failed with CRIU's reason. (A replica that is not moved:
// TestDrainReplacesReplica; a checkpointed job that cannot move live:
// TestDrainFallsBackToCheckpoint; a job with a terminal: drain's unit tests.)
func TestDrainMovesEverything(t *testing.T) {
	c := need(t)
	restoreNodes(t, c)
	on2 := func(args ...string) uint64 {
		return c.detach(t, append([]string{"--node", "node2", "-w", privateWorkdir(t), "--"}, args...)...)
	}
	small := on2("python3", counterPath(t), "8", "0.1")
	big := on2("python3", counterPath(t), "64", "1")
	huge := on2("python3", counterPath(t), "256", "3")
	// The sum of i*i for i < 1,500,000, in 300 slices 0.1 s apart (it
	// runs on for the whole drain).
	const n = 1_500_000
	compute := on2("python3", "-c", "import time\ns = 0\nfor k in range(300):\n    for i in range(k*5000, (k+1)*5000):\n        s += i*i\n    time.sleep(0.1)\nprint(s)")
	pipe := on2(pipelineJob...)
	sleeper := on2("sleep", "600")
	pinned := c.detach(t, "--node", "node2", "--pin", "-w", privateWorkdir(t), "--", "sleep", "600")
	checkpointed := c.detach(t, "--node", "node2", "--checkpoint-every", "5s", "-w", privateWorkdir(t), "--", "python3", counterPath(t), "8", "0.2")
	jobs := []uint64{small, big, huge, compute, pipe, sleeper, pinned, checkpointed}
	for range 3 {
		jobs = append(jobs, on2("sleep", "600"))
	}
	// Both ends of a TCP connection inside the job.
	tcp := on2("python3", "-c", "import socket, time\nl = socket.socket()\nl.bind(('127.0.0.1', 0))\nl.listen()\nc = socket.create_connection(l.getsockname())\ns, _ = l.accept()\nprint('connected', flush=True)\ntime.sleep(600)")
	defer c.kill(t, append(jobs, tcp)...)
	eventually(t, 30*time.Second, "the counters ticking", func() error {
		if a, b, h := c.lastTick(t, small), c.lastTick(t, big), c.lastTick(t, huge); a < 3 || b < 2 || h < 1 {
			return fmt.Errorf("ticks %d, %d and %d", a, b, h)
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t0 := time.Now()
	// Started, then the balancer on (before, it would move jobs off the
	// overloaded node2 first), then followed.
	c.ok(t, "node", "drain", "node2", "--parallel", "2", "--deadline", "4m")
	balanceOn(t, c)
	r := runCmd(t, c.cmd(ctx, "node", "drain", "node2", "--wait"))
	took := time.Since(t0)
	t.Logf("drain of node2 (%d jobs) took %s:\n%s%s", len(jobs)+1, took.Round(100*time.Millisecond), r.stderr, r.stdout)
	if r.code != 1 || !strings.Contains(r.stdout, "drain of node2: done") || !strings.Contains(r.stderr, "drain of node2: 0 left (0 moving), 11 moved, 1 failed; done") {
		t.Fatalf("drain: exit %d, want 1 (a job stays), 11 moved and 1 failed", r.code)
	}
	for _, p := range c.ps(t) {
		if p.Node == "node2" && !p.State.Ended() && p.GPID != tcp {
			t.Fatalf("still on node2 after the drain: %+v", p.Proc)
		}
	}
	if p := c.proc(t, tcp); p.Node != "node2" || p.State != pidtable.Running || !pidAlive(p.PID) {
		t.Fatalf("the TCP job after the drain: %+v", p.Proc)
	}
	for _, g := range jobs {
		p := c.proc(t, g)
		// Epoch 2, or more: the balancer may move jobs between node1 and
		// node3 while the drain is still waiting on its last job. The
		// checkpointed job may be taking its next automatic checkpoint
		// (checkpointing: it runs meanwhile).
		live := p.State == pidtable.Running || p.State == pidtable.Checkpointing
		if !live || (p.Node != "node1" && p.Node != "node3") || p.Epoch < 2 || !pidAlive(p.PID) {
			t.Fatalf("gpid %d after the drain: %+v", g, p.Proc)
		}
		var moved bool
		for _, ev := range c.events(t, g) {
			if ev.Kind == pidtable.EventMoved && ev.From == "node2" && (ev.To == "node1" || ev.To == "node3") && strings.Contains(ev.Reason, "drain of node2") {
				moved = true
			}
		}
		if !moved {
			t.Fatalf("no moved event of gpid %d: %+v", g, c.events(t, g))
		}
	}
	for _, g := range jobs {
		for _, ev := range c.events(t, g) {
			if ev.To == "node2" && (ev.Kind == pidtable.EventMove || ev.Kind == pidtable.EventMoved) {
				t.Fatalf("a move onto node2 while it was drained: %+v", ev)
			}
		}
	}
	d := c.drainStatus(t, "node2")
	if d.State != pidtable.DrainDone || d.Count()[pidtable.JobMoved] != 11 {
		t.Fatalf("drain record: %+v", d.Drain)
	}
	if j, _ := d.Job(tcp); j.State != pidtable.JobFailed || !strings.Contains(strings.ToLower(j.Reason), "tcp") {
		t.Fatalf("the TCP job's entry: %+v; want failed, with CRIU's reason", j)
	}
	for _, j := range d.Jobs {
		t.Logf("gpid %d -> %s: frozen %s, took %s, %d bytes", j.GPID, j.To, j.Frozen, j.Took, j.Bytes)
	}
	if n := c.nodes(t)["node2"]; !n.Cordoned || n.Draining {
		t.Fatalf("node2 after the drain: %+v (want cordoned, no longer draining)", n)
	}
	// The jobs run on: the counters tick on from where they were.
	before := c.lastTick(t, small)
	eventually(t, 20*time.Second, "the counter ticking after the drain", func() error {
		if n := c.lastTick(t, small); n <= before+2 {
			return fmt.Errorf("at tick %d", n)
		}
		return nil
	})
	if r := c.ssi(t, "wait", strconv.FormatUint(compute, 10)); r.code != 0 {
		t.Fatalf("the computation: %v", r)
	}
	want := strconv.FormatInt(int64(n-1)*n*(2*n-1)/6, 10)
	if got := strings.TrimSpace(c.ok(t, "logs", strconv.FormatUint(compute, 10))); got != want {
		t.Fatalf("the computation moved mid-way printed %s, want %s", got, want)
	}
	c.kill(t, jobs...)
	for _, g := range []uint64{small, big, huge, checkpointed} {
		if n := checkTicks(t, c.ok(t, "logs", strconv.FormatUint(g, 10))); n < 3 {
			t.Fatalf("gpid %d: %d ticks", g, n)
		}
	}
	if n := checkCounting(t, c.ok(t, "logs", strconv.FormatUint(pipe, 10))); n < 20 {
		t.Fatalf("pipeline printed %d lines", n)
	}
}

// TestDrainInterrupted: the CLI following a drain is killed after the first
// move, and the drain controller's leader too (when it is not the drained
// node): the drain goes on and completes; ssi node drain --wait follows it
// again.
func TestDrainInterrupted(t *testing.T) {
	c := need(t)
	restoreNodes(t, c)
	var jobs []uint64
	for range 4 {
		jobs = append(jobs, c.detach(t, "--node", "node3", "-w", privateWorkdir(t), "--", "sleep", "600"))
	}
	counter := c.detach(t, "--node", "node3", "-w", privateWorkdir(t), "--", "python3", counterPath(t), "8", "0.1")
	jobs = append(jobs, counter)
	defer c.kill(t, jobs...)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cli := c.cmd(ctx, "node", "drain", "node3", "--wait", "--parallel", "1")
	var errb bytes.Buffer
	cli.Stderr = &errb
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "a first move", func() error {
		r := c.ssi(t, "node", "drain", "node3", "--status", "-o", "json")
		var d api.DrainResponse
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &d) != nil {
			return fmt.Errorf("no drain yet: %v", r)
		}
		if d.Count()[pidtable.JobMoved] == 0 {
			return fmt.Errorf("%+v", d.Count())
		}
		return nil
	})
	_ = cli.Process.Kill()
	_ = cli.Wait()
	t.Logf("the CLI, killed, had printed:\n%s", errb.String())

	d := c.drainStatus(t, "node3")
	if d.State != pidtable.DrainActive {
		t.Logf("the drain ended before the CLI was killed: %+v", d.Drain)
	}
	leader := d.Leader
	killed := leader == "node2" && d.State == pidtable.DrainActive
	// node2 back: the jobs the drain moved there before its agent was
	// killed are signalled through it at the end (and the tests after
	// this one expect three Ready nodes).
	restart := func() {
		if !killed {
			return
		}
		killed = false
		c.startAgent(t, "node2")
		eventually(t, 30*time.Second, "node2 Ready again", func() error {
			if !c.nodes(t)["node2"].Ready {
				return fmt.Errorf("NotReady")
			}
			return nil
		})
	}
	defer restart()
	if killed {
		t.Logf("killing the drain controller's leader, node2's agent")
		c.stopAgent(t, "node2", syscall.SIGKILL)
	} else {
		t.Logf("the drain controller's leader is %q: not killed (it is the drained node, or the drain ended)", leader)
	}
	r := runCmd(t, c.cmd(ctx, "node", "drain", "node3", "--wait"))
	if r.code != 0 {
		t.Fatalf("drain --wait after the interruption: %v", r)
	}
	t.Logf("resumed:\n%s%s", r.stderr, r.stdout)
	for _, g := range jobs {
		p := c.proc(t, g)
		if p.State != pidtable.Running || p.Node == "node3" {
			t.Fatalf("gpid %d after the drain: %+v", g, p.Proc)
		}
	}
	final := c.drainStatus(t, "node3")
	if final.State != pidtable.DrainDone || final.Count()[pidtable.JobMoved] != len(jobs) {
		t.Fatalf("drain record: %+v", final.Drain)
	}
	if leader == "node2" && final.Leader == "node2" {
		t.Fatalf("the drain was finished by the killed leader? %+v", final.Drain)
	}
	restart()
	c.kill(t, jobs...)
	checkTicks(t, c.ok(t, "logs", strconv.FormatUint(counter, 10)))
}

// TestDrainBadInput: a drain of an unknown node, of a NotReady one, with
// nowhere to go, by a user who is not an admin, bad flags; cancel of no
// drain; rm of a Ready node: each refused, saying what to do.
func TestDrainBadInput(t *testing.T) {
	c := need(t)
	restoreNodes(t, c)
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"node", "drain", "nosuch"}, 1, "unknown node \"nosuch\" (known nodes: node1, node2, node3"},
		{[]string{"node", "drain", "node2", "--cancel"}, 1, "not being drained; nothing to cancel"},
		{[]string{"node", "rm", "node2"}, 1, "is Ready (its agent runs): stop its agent first"},
		{[]string{"node", "rm", "nosuch"}, 1, "unknown node"},
		{[]string{"node", "drain", "node2", "--parallel", "-1"}, 2, "--parallel"},
		{[]string{"node", "drain", "node2", "--parallel", "100"}, 1, "want 1 to 64"},
		{[]string{"node", "cordon", "no such"}, 2, "node cordon"},
	} {
		r := c.ssi(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("ssi %s: %v; want exit %d saying %q", strings.Join(tc.args, " "), r, tc.code, tc.says)
		}
	}
	// The only node left to take jobs: the others are cordoned.
	c.ok(t, "node", "cordon", "node1")
	c.ok(t, "node", "cordon", "node3")
	r := c.ssi(t, "node", "drain", "node2")
	if r.code != 1 || !strings.Contains(r.stderr, "nowhere to move its jobs") || !strings.Contains(r.stderr, "uncordon") {
		t.Fatalf("drain with nowhere to go: %v", r)
	}
	if n := c.nodes(t)["node2"]; n.Cordoned || n.Draining {
		t.Fatalf("a refused drain changed node2: %+v", n)
	}
	c.ok(t, "node", "uncordon", "node1")
	c.ok(t, "node", "uncordon", "node3")

	uid, gid := ensureUser(t, "ssitest1")
	cfg := c.userConfig(t, "ssitest1", uid, gid)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{{"node", "drain", "node2"}, {"node", "cordon", "node2"}, {"node", "label", "node2", "a=b"}, {"node", "rm", "node2"}} {
		r := runCmd(t, c.as(ctx, cfg, uid, gid, args...))
		if r.code != 1 || !strings.Contains(r.stderr, "is an admin action") {
			t.Errorf("a user's ssi %s: %v; want an admin action refused (403)", strings.Join(args, " "), r)
		}
	}
	if n := c.nodes(t)["node2"]; n.Cordoned || n.Draining {
		t.Fatalf("a user's refused requests changed node2: %+v", n)
	}
}

// TestNodeRm: node3's agent stops (its job's processes die with its
// machine); ssi node rm node3 records the job lost with the reason, removes
// the node and revokes its certificate. node3 then joins again as a new
// machine would (a fresh key and certificate, through a join token).
func TestNodeRm(t *testing.T) {
	c := need(t)
	restoreNodes(t, c)
	g := c.detach(t, "--node", "node3", "--", "sleep", "600")
	p := c.proc(t, g)
	n3, err := c.node3()
	if err != nil {
		t.Fatal(err)
	}
	var st shim.State
	if err := shim.ReadJSON(filepath.Join(n3.DataDir, "jobs", strconv.FormatUint(g, 10)), shim.StateFile, &st); err != nil {
		t.Fatal(err)
	}
	c.stopAgent(t, "node3", syscall.SIGTERM)
	rejoined := false
	defer func() {
		if !rejoined {
			c.rejoin(t, "node3")
		}
	}()
	// The machine dies: its job's processes with it.
	for _, pid := range []int{st.Shim.PID, st.Init.PID, p.PID} {
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	eventually(t, 15*time.Second, "node3 NotReady", func() error {
		if c.nodes(t)["node3"].Ready {
			return fmt.Errorf("still Ready")
		}
		return nil
	})
	out := c.ok(t, "node", "rm", "node3")
	t.Logf("ssi node rm node3:\n%s", out)
	if !strings.Contains(out, "node node3 removed: 1 jobs recorded lost, 1 certificates revoked") || !strings.Contains(out, fmt.Sprintf("gpid %d: lost", g)) {
		t.Fatalf("rm: %q", out)
	}
	lost := c.proc(t, g)
	if lost.State != pidtable.Lost || !strings.Contains(lost.Error, "ssi node rm") {
		t.Fatalf("the job after rm: %+v", lost.Proc)
	}
	if _, ok := c.nodes(t)["node3"]; ok {
		t.Fatal("node3 still listed after rm")
	}
	if r := c.ssi(t, "wait", strconv.FormatUint(g, 10)); r.code == 0 || !strings.Contains(r.stderr+r.stdout, "lost") {
		t.Fatalf("wait of the lost job: %v", r)
	}
	var removal bool
	for _, line := range strings.Split(c.ok(t, "events", "-o", "json"), "\n") {
		var ev pidtable.Event
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Kind == pidtable.EventDrain && strings.Contains(ev.Reason, "node node3 removed") {
			removal = true
		}
	}
	if !removal {
		t.Fatal("no event says node3 was removed")
	}
	c.rejoin(t, "node3")
	rejoined = true
	g2 := c.detach(t, "--node", "node3", "--", "sleep", "600")
	c.kill(t, g2)
}

// node3 returns node3's state.
func (c *testCluster) node3() (struct{ DataDir string }, error) {
	for _, n := range c.Nodes {
		if n.Name == "node3" {
			return struct{ DataDir string }{n.DataDir}, nil
		}
	}
	return struct{ DataDir string }{}, fmt.Errorf("no node3")
}

// rejoin starts node's agent again as a new machine: without its revoked
// certificate, through a join token; it waits until node is Ready.
func (c *testCluster) rejoin(t *testing.T, node string) {
	t.Helper()
	for _, n := range c.Nodes {
		if n.Name == node {
			for _, f := range []string{pki.NodeCertFile, pki.NodeKeyFile} {
				_ = os.Remove(filepath.Join(n.DataDir, "pki", f))
			}
		}
	}
	c.startAgent(t, node)
	eventually(t, 30*time.Second, node+" Ready again", func() error {
		if !c.nodes(t)[node].Ready {
			return fmt.Errorf("not Ready")
		}
		return nil
	})
}

// TestDrainOnAgentStop: an agent started with --no-drain=false (the harness
// starts them with --no-drain) drains its node on SIGTERM before it stops:
// its jobs run on elsewhere, and ssi nodes shows the node Left, not
// NotReady. Started again, the node is Ready and takes jobs (its stop's
// cordon lifted).
func TestDrainOnAgentStop(t *testing.T) {
	c := need(t)
	restoreNodes(t, c)
	orig := c.NodeArgs["node3"]
	setArgs := func(args []string) {
		if c.NodeArgs == nil {
			c.NodeArgs = map[string][]string{}
		}
		c.NodeArgs["node3"] = args
	}
	restart := func() {
		c.stopAgent(t, "node3", syscall.SIGTERM)
		c.startAgent(t, "node3")
		eventually(t, 30*time.Second, "node3 Ready", func() error {
			if !c.nodes(t)["node3"].Ready {
				return fmt.Errorf("not Ready")
			}
			return nil
		})
	}
	setArgs(append(slices.Clone(orig), "--no-drain=false", "--drain-timeout", "7s"))
	defer func() {
		setArgs(orig)
		restart()
	}()
	restart()
	var jobs []uint64
	for range 3 {
		jobs = append(jobs, c.detach(t, "--node", "node3", "-w", privateWorkdir(t), "--", "sleep", "600"))
	}
	counter := c.detach(t, "--node", "node3", "-w", privateWorkdir(t), "--", "python3", counterPath(t), "8", "0.1")
	jobs = append(jobs, counter)
	defer c.kill(t, jobs...)
	eventually(t, 20*time.Second, "the counter ticking", func() error {
		if n := c.lastTick(t, counter); n < 3 {
			return fmt.Errorf("at tick %d", n)
		}
		return nil
	})
	t0 := time.Now()
	c.stopAgent(t, "node3", syscall.SIGTERM)
	t.Logf("the agent of node3 drained its node and stopped in %s", time.Since(t0).Round(100*time.Millisecond))
	for _, g := range jobs {
		p := c.proc(t, g)
		if p.State != pidtable.Running || p.Node == "node3" || !pidAlive(p.PID) {
			t.Fatalf("gpid %d after node3's agent stopped: %+v", g, p.Proc)
		}
	}
	// Its status key goes with its lease (within the TTL).
	eventually(t, 15*time.Second, "node3 Left", func() error {
		if out := c.ok(t, "nodes"); !regexpLine(out, "node3", "Left") {
			return fmt.Errorf("ssi nodes:\n%s", out)
		}
		return nil
	})
	t.Logf("ssi nodes:\n%s", c.ok(t, "nodes"))
	c.startAgent(t, "node3")
	eventually(t, 30*time.Second, "node3 back, not cordoned", func() error {
		if n := c.nodes(t)["node3"]; !n.Ready || n.Cordoned || !n.Left.IsZero() {
			return fmt.Errorf("%+v", n)
		}
		return nil
	})
	c.kill(t, jobs...)
	checkTicks(t, c.ok(t, "logs", strconv.FormatUint(counter, 10)))
}

// TestDrainForceAtDeadline: a job no other node can take (its constraint
// label is node2's alone) is listed with the reason and stays when the
// drain's deadline passes; with --force it is killed then, by node2's agent
// at the drain controller's request.
func TestDrainForceAtDeadline(t *testing.T) {
	c := need(t)
	restoreNodes(t, c)
	t.Cleanup(func() { _ = c.ssi(t, "node", "label", "node2", "e2eonly-") })
	c.ok(t, "node", "label", "node2", "e2eonly=1")
	g := c.detach(t, "--constraint", "e2eonly=1", "--", "sleep", "600")
	defer c.kill(t, g)
	if p := c.proc(t, g); p.Node != "node2" {
		t.Fatalf("gpid %d on %s", g, p.Node)
	}
	r := c.ssi(t, "node", "drain", "node2", "--wait", "--deadline", "3s")
	if r.code != 1 || !strings.Contains(r.stdout, "left") || !strings.Contains(r.stdout, "lack labels e2eonly=1") || !strings.Contains(r.stderr, "still run on node2") {
		t.Fatalf("drain without --force: %v", r)
	}
	if p := c.proc(t, g); p.State != pidtable.Running || p.Node != "node2" {
		t.Fatalf("gpid %d after a drain without --force: %+v", g, p.Proc)
	}
	r = c.ssi(t, "node", "drain", "node2", "--wait", "--deadline", "3s", "--force")
	t.Logf("forced:\n%s%s", r.stderr, r.stdout)
	if r.code != 0 || !strings.Contains(r.stdout, "killed at the deadline (--force)") {
		t.Fatalf("drain --force: %v", r)
	}
	eventually(t, 10*time.Second, "the job killed", func() error {
		if p := c.proc(t, g); !p.State.Ended() || p.ExitCode == nil || *p.ExitCode != 137 {
			return fmt.Errorf("%+v", p.Proc)
		}
		return nil
	})
}

// TestDrainReplacesReplica: a service of 3 replicas with Migratable=no has
// one on node2; ssi node drain node2 does not move it but has the service's
// controller start one elsewhere first, then stop it: at no sample (10 Hz)
// do fewer than 3 run, and at the end none runs on node2 and the drain's
// table says it was replaced.
func TestDrainReplacesReplica(t *testing.T) {
	c := need(t)
	restoreNodes(t, c)
	unit := writeUnit(t, t.TempDir(), "dr.service", "[Service]\nExecStart=/bin/sleep 100000\nRestart=always\n[X-SSI]\nReplicas=3\nSpread=any\nMigratable=no\n")
	c.ok(t, "apply", unit)
	t.Cleanup(func() { c.ssi(t, "service", "rm", "dr") })
	reps := c.waitReplicas(t, "dr", 3, false, 30*time.Second)
	var on2 uint64
	for _, r := range reps {
		if r.Node == "node2" {
			on2 = r.GPID
		}
	}
	if on2 == 0 {
		t.Fatalf("no replica on node2: %v", reps)
	}
	done := make(chan struct{})
	fewest := make(chan int, 1)
	go func() {
		least := 3
		for {
			select {
			case <-done:
				fewest <- least
				return
			case <-time.After(100 * time.Millisecond):
			}
			running := 0
			for _, r := range c.replicas(t, "dr") {
				if r.State == pidtable.Running {
					running++
				}
			}
			least = min(least, running)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := runCmd(t, c.cmd(ctx, "node", "drain", "node2", "--wait", "--deadline", "2m"))
	close(done)
	if r.code != 0 {
		t.Fatalf("drain: %v", r)
	}
	if n := <-fewest; n < 3 {
		t.Fatalf("%d replicas ran at one sample during the drain, want never fewer than 3", n)
	}
	t.Logf("drain of node2:\n%s%s", r.stderr, r.stdout)
	if !strings.Contains(r.stdout, "1 replaced") || !strings.Contains(r.stderr, "1 replicas replaced") {
		t.Fatalf("drain output does not say the replica was replaced")
	}
	if p := c.proc(t, on2); !p.State.Ended() || p.Node != "node2" {
		t.Fatalf("the drained replica: %s on %s, want ended on node2 (stopped, not moved)", p.State, p.Node)
	}
	now := c.replicas(t, "dr")
	if len(now) != 3 {
		t.Fatalf("%d replicas after the drain", len(now))
	}
	for _, r := range now {
		if r.Node == "node2" || r.State != pidtable.Running {
			t.Fatalf("replica gpid %d %s on %s after the drain", r.GPID, r.State, r.Node)
		}
	}
}

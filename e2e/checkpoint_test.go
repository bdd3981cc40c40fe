package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/localcluster"
	"github.com/ssi-cluster/ssi/pidtable"
)

// lastTickOf returns the last tick counter.py printed for gpid (0 if none).
func (c *testCluster) lastTickOf(t *testing.T, gpid uint64) int {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(c.ok(t, "logs", strconv.FormatUint(gpid, 10))), "\n")
	var n int
	fmt.Sscanf(lines[len(lines)-1], "tick %d", &n)
	return n
}

// waitTicks waits until gpid printed more than n ticks.
func (c *testCluster) waitTicks(t *testing.T, gpid uint64, n int) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("gpid %d past tick %d", gpid, n), func() error {
		if got := c.lastTickOf(t, gpid); got <= n {
			return fmt.Errorf("at tick %d", got)
		}
		return nil
	})
}

func (c *testCluster) checkpointDir(node, name string) string {
	for _, n := range c.Nodes {
		if n.Name == node {
			return filepath.Join(n.DataDir, "checkpoints", name)
		}
	}
	return ""
}

// TestCheckpointRestore: a stateful job is checkpointed while it runs, a copy
// is restored from that on another node under a new gpid, then the job is
// checkpointed and stopped, and restored under its own gpid on a third node.
// Each restored job carries on from its checkpoint: counter.py's output is
// one unbroken sequence with an unchanged memory digest. Restoring a gpid that
// still runs is refused.
func TestCheckpointRestore(t *testing.T) {
	c := need(t)
	gpid := c.detach(t, "--node", "node1", "--", "python3", counterPath(t), "8", "0.05", "100000")
	g := strconv.FormatUint(gpid, 10)
	defer c.kill(t, gpid)
	c.waitTicks(t, gpid, 5)
	ck1, ck2 := "e2e-live-"+g, "e2e-stop-"+g

	// 1. A checkpoint of a running job, which runs on.
	var res api.CheckpointResult
	if err := json.Unmarshal([]byte(c.ok(t, "checkpoint", "--leave-running", "--name", ck1, "-o", "json", g)), &res); err != nil {
		t.Fatal(err)
	}
	if res.Name != ck1 || res.GPID != gpid || res.Node != "node1" || !res.LeaveRunning || res.State != pidtable.Ready || res.Size < 8<<20 || res.FrozenMS <= 0 {
		t.Fatalf("checkpoint result: %+v", res)
	}
	t.Logf("checkpoint --leave-running: %s, frozen %.0f ms (dump %.0f ms)", humanSize(res.Size), res.FrozenMS, res.DumpMS)
	if _, err := os.Stat(filepath.Join(c.checkpointDir("node1", ck1), "images")); err != nil {
		t.Fatalf("checkpoint store of node1: %v", err)
	}
	atCheckpoint := c.lastTickOf(t, gpid)
	c.waitTicks(t, gpid, atCheckpoint)
	if p := c.proc(t, gpid); p.State != pidtable.Running || p.Node != "node1" {
		t.Fatalf("after checkpoint --leave-running: %+v", p.Proc)
	}

	// 2. Its gpid runs, so restoring it under that gpid is refused.
	r := c.ssi(t, "restore", ck1, "--node", "node2")
	if r.code != 1 || !strings.Contains(r.stderr, "would run it twice") || !strings.Contains(r.stderr, "--as-new") {
		t.Fatalf("restore of a running gpid: %v", r)
	}

	// 3. A copy under a new gpid, on node2, with images shipped from node1.
	var rr api.CheckpointRestoreResult
	if err := json.Unmarshal([]byte(c.ok(t, "restore", ck1, "--as-new", "--node", "node2", "-o", "json")), &rr); err != nil {
		t.Fatal(err)
	}
	if rr.GPID == gpid || rr.Node != "node2" || rr.From != "node1" || rr.ImageBytes < 8<<20 {
		t.Fatalf("restore --as-new: %+v", rr)
	}
	defer c.kill(t, rr.GPID)
	c.waitTicks(t, rr.GPID, atCheckpoint+3)
	copyTicks := checkTicks(t, c.ok(t, "logs", strconv.FormatUint(rr.GPID, 10)))
	if p := c.proc(t, rr.GPID); p.Node != "node2" || p.State != pidtable.Running || p.RestoredFrom != ck1 {
		t.Fatalf("restored copy: %+v", p.Proc)
	}
	t.Logf("copy gpid %d restored on node2: %s shipped in %.0f ms, restore %.0f ms; %d ticks, continuous", rr.GPID, humanSize(rr.ImageBytes), rr.TransferMS, rr.RestoreMS, copyTicks)
	c.kill(t, rr.GPID)

	// 4. Checkpoint and stop: the job's record says where it went.
	if err := json.Unmarshal([]byte(c.ok(t, "checkpoint", "--name", ck2, "-o", "json", g)), &res); err != nil {
		t.Fatal(err)
	}
	if res.LeaveRunning || res.Node != "node1" {
		t.Fatalf("checkpoint: %+v", res)
	}
	stopped := c.lastTickOf(t, gpid)
	p := c.proc(t, gpid)
	if p.State != pidtable.Checkpointed || p.Checkpoint != ck2 {
		t.Fatalf("after checkpoint: %+v", p.Proc)
	}
	r = c.ssi(t, "wait", g)
	if r.code != 122 || !strings.Contains(r.stdout, "ssi restore "+ck2) {
		t.Fatalf("wait on a checkpointed job: %v", r)
	}

	// 5. Back under its own gpid on node3: same output, from where it stopped.
	if err := json.Unmarshal([]byte(c.ok(t, "restore", ck2, "--node", "node3", "-o", "json")), &rr); err != nil {
		t.Fatal(err)
	}
	if rr.GPID != gpid || rr.Node != "node3" || rr.From != "node1" {
		t.Fatalf("restore: %+v", rr)
	}
	c.waitTicks(t, gpid, stopped+3)
	n := checkTicks(t, c.ok(t, "logs", g))
	p = c.proc(t, gpid)
	if p.Node != "node3" || p.State != pidtable.Running || p.Epoch < 2 || p.RestoredFrom != ck2 {
		t.Fatalf("restored job: %+v", p.Proc)
	}
	t.Logf("gpid %d back on node3 at tick %d, output continuous (%d ticks)", gpid, stopped+1, n)
	r = c.ssi(t, "restore", ck2, "--node", "node2")
	if r.code != 1 || !strings.Contains(r.stderr, "would run it twice") {
		t.Fatalf("second restore of a running gpid: %v", r)
	}

	// 6. Listed, then removed with their images.
	var list []api.CheckpointInfo
	if err := json.Unmarshal([]byte(c.ok(t, "checkpoints", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, ci := range list {
		if (ci.Name == ck1 || ci.Name == ck2) && ci.GPID == gpid && ci.Node == "node1" && ci.NodeReady && ci.Size > 0 && !ci.Created.IsZero() {
			found++
		}
	}
	if found != 2 {
		t.Fatalf("checkpoints -o json lacks %s or %s: %+v", ck1, ck2, list)
	}
	c.ok(t, "checkpoints", "rm", ck1, ck2)
	for _, name := range []string{ck1, ck2} {
		if _, err := os.Stat(c.checkpointDir("node1", name)); !os.IsNotExist(err) {
			t.Fatalf("checkpoint %s still on node1's disk after rm: %v", name, err)
		}
	}
	if r := c.ssi(t, "restore", ck2); r.code != 1 || !strings.Contains(r.stderr, "no checkpoint named") {
		t.Fatalf("restore of a removed checkpoint: %v", r)
	}
}

// TestCheckpointStopsAttachedRun: an attached `ssi run` of a job that is
// checkpointed and stopped returns 122 and says how to bring the job back.
func TestCheckpointStopsAttachedRun(t *testing.T) {
	c := need(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	attached := c.cmd(ctx, "run", "--node", "node2", "--", "sh", "-c", "i=0; while true; i=$((i+1)); do echo line $i; sleep 0.05; done")
	var out, errb strings.Builder
	attached.Stdout, attached.Stderr = &out, &errb
	if err := attached.Start(); err != nil {
		t.Fatal(err)
	}
	gpid := c.newestRunning(t, func(argv []string) bool {
		return len(argv) == 3 && strings.Contains(argv[2], "echo line")
	})
	name := fmt.Sprintf("e2e-attached-%d", gpid)
	defer c.ssi(t, "checkpoints", "rm", name)
	time.Sleep(300 * time.Millisecond)
	c.ok(t, "checkpoint", "--name", name, strconv.FormatUint(gpid, 10))
	err := attached.Wait()
	if attached.ProcessState.ExitCode() != 122 || !strings.Contains(errb.String(), "ssi restore "+name) {
		t.Fatalf("attached run after checkpoint: %v, exit %d, stderr %q", err, attached.ProcessState.ExitCode(), errb.String())
	}
	if !strings.Contains(out.String(), "line 1\n") {
		t.Fatalf("attached run printed no output: %q", out.String())
	}
}

// TestCheckpointBadInput: each mistake gets a clear error and changes nothing.
func TestCheckpointBadInput(t *testing.T) {
	c := need(t)
	gpid := c.detach(t, "--node", "node3", "--", "sleep", "600")
	g := strconv.FormatUint(gpid, 10)
	defer c.kill(t, gpid)
	name := "e2e-bad-" + g
	c.ok(t, "checkpoint", "--leave-running", "--name", name, g)
	defer c.ssi(t, "checkpoints", "rm", name)
	ended := c.detach(t, "--", "true")
	eventually(t, 10*time.Second, "true ended", func() error {
		if p := c.proc(t, ended); !p.State.Ended() {
			return fmt.Errorf("%s", p.State)
		}
		return nil
	})
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"checkpoint", "999999"}, 1, "no such process"},
		{[]string{"checkpoint", "--name", "../x", g}, 2, "checkpoint name"},
		{[]string{"checkpoint", "--name", name, g}, 1, "exists already"},
		{[]string{"checkpoint", strconv.FormatUint(ended, 10)}, 1, "has already exited"},
		{[]string{"checkpoint"}, 2, "want one GPID"},
		{[]string{"restore", "no-such-checkpoint"}, 1, "no checkpoint named"},
		{[]string{"restore", name, "--node", "nosuchnode", "--as-new"}, 1, "unknown node"},
		{[]string{"restore", "Bad/Name"}, 2, "checkpoint name"},
		{[]string{"checkpoints", "rm", "no-such-checkpoint"}, 1, "no checkpoint named"},
	} {
		r := c.ssi(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("ssi %s: %v; want exit %d and %q", strings.Join(tc.args, " "), r, tc.code, tc.want)
		}
	}
	if p := c.proc(t, gpid); p.State != pidtable.Running || p.Node != "node3" {
		t.Fatalf("job changed by bad input: %+v", p.Proc)
	}

	// A checkpoint from a CPU with a feature this machine lacks is refused,
	// naming the feature (the meta of the stored checkpoint is edited to
	// pretend it came from such a CPU).
	metaPath := filepath.Join(c.checkpointDir("node3", name), "meta.json")
	orig, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	if err := json.Unmarshal(orig, &meta); err != nil {
		t.Fatal(err)
	}
	meta["cpu_flags"] = append(meta["cpu_flags"].([]any), "zz_ssi_test_feature")
	b, _ := json.Marshal(meta)
	if err := os.WriteFile(metaPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.ssi(t, "restore", "--as-new", "--node", "node2", name)
	if r.code != 1 || !strings.Contains(r.stderr, "lacks 1 feature(s)") || !strings.Contains(r.stderr, "zz_ssi_test_feature") {
		t.Fatalf("restore from a CPU with more features: %v", r)
	}
	if err := os.WriteFile(metaPath, orig, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreFromNotReadyHolder: a checkpoint whose node is down cannot be
// restored, and the error says why; it can once the node is back.
func TestRestoreFromNotReadyHolder(t *testing.T) {
	c := need(t)
	gpid := c.detach(t, "--node", "node3", "--", "sleep", "600")
	g := strconv.FormatUint(gpid, 10)
	defer c.kill(t, gpid)
	name := "e2e-holder-" + g
	c.ok(t, "checkpoint", "--name", name, g)
	defer c.ssi(t, "checkpoints", "rm", name)
	c.stopAgent(t, "node3", syscall.SIGKILL)
	restarted := false
	defer func() {
		if !restarted {
			c.startAgent(t, "node3")
		}
	}()
	eventually(t, 10*time.Second, "node3 NotReady", func() error {
		if c.nodes(t)["node3"].Ready {
			return fmt.Errorf("still Ready")
		}
		return nil
	})
	r := c.ssi(t, "restore", name, "--node", "node1")
	if r.code != 1 || !strings.Contains(r.stderr, "held by node node3, which is NotReady") {
		t.Fatalf("restore from a NotReady holder: %v", r)
	}
	if p := c.proc(t, gpid); p.State != pidtable.Checkpointed {
		t.Fatalf("failed restore changed the record: %+v", p.Proc)
	}
	c.startAgent(t, "node3")
	restarted = true
	eventually(t, 10*time.Second, "node3 Ready", func() error {
		if !c.nodes(t)["node3"].Ready {
			return fmt.Errorf("still NotReady")
		}
		return nil
	})
	c.ok(t, "restore", name, "--node", "node1")
	if p := c.proc(t, gpid); p.State != pidtable.Running || p.Node != "node1" {
		t.Fatalf("restored: %+v", p.Proc)
	}
}

func humanSize(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// TestCheckpointFaults crashes (or fails) the agent at each step of a
// checkpoint and of a restore, restarts it, and checks: the job is running
// exactly once (or, where the restore never got far, it can be restored again),
// on the node its record names, with continuous output; a checkpoint is kept
// only if it was saved completely.
func TestCheckpointFaults(t *testing.T) {
	c := need(t)
	type fault struct {
		point, action string
		// kept: the checkpoint survives the fault.
		kept bool
	}
	var cases []fault
	for _, p := range []string{"after-claim", "after-dump"} {
		cases = append(cases, fault{"checkpoint/" + p, "exit", false}, fault{"checkpoint/" + p, "error", false})
	}
	cases = append(cases, fault{"checkpoint/after-save", "exit", true}, fault{"checkpoint/after-save", "error", true})
	for _, p := range []string{"after-claim", "after-launch", "after-running"} {
		cases = append(cases, fault{"restore/" + p, "exit", true}, fault{"restore/" + p, "error", true})
	}
	passed := 0
	for _, f := range cases {
		t.Run(strings.ReplaceAll(f.point, "/", "_")+"="+f.action, func(t *testing.T) {
			runCheckpointFault(t, c, f.point, f.action, f.kept)
			passed++
		})
	}
	t.Logf("checkpoint fault cases run: %d, passed: %d", len(cases), passed)
}

func runCheckpointFault(t *testing.T, c *testCluster, point, action string, kept bool) {
	ctx := context.Background()
	// The job runs on node3, the restore goes to node2; node1 runs etcd and
	// serves the CLI, and is never crashed.
	restoring := strings.HasPrefix(point, "restore/")
	faulty := "node3"
	if restoring {
		faulty = "node2"
	}
	gpid := c.detach(t, "--node", "node3", "--", "python3", counterPath(t), "8", "0.02")
	g := strconv.FormatUint(gpid, 10)
	defer c.kill(t, gpid)
	c.waitTicks(t, gpid, 5)
	name := fmt.Sprintf("e2e-fault-%d", gpid)
	defer c.ssi(t, "checkpoints", "rm", name)
	if restoring {
		c.ok(t, "checkpoint", "--name", name, g)
	}
	c.stopAgent(t, faulty, syscall.SIGTERM)
	if err := c.StartAgentEnv(ctx, faulty, []string{"SSI_FAILPOINTS=" + point + "=" + action}); err != nil {
		t.Fatal(err)
	}
	node := func() *localcluster.NodeState {
		for i := range c.Nodes {
			if c.Nodes[i].Name == faulty {
				return &c.Nodes[i]
			}
		}
		t.Fatalf("no node %s", faulty)
		return nil
	}
	restarted := false
	defer func() {
		if restarted {
			return
		}
		if node().Agent.Alive() {
			c.stopAgent(t, faulty, syscall.SIGTERM)
		}
		c.startAgent(t, faulty)
	}()
	args := []string{"checkpoint", "--name", name, g}
	if restoring {
		args = []string{"restore", name, "--node", "node2"}
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := c.cmd(cctx, args...)
	cmd.Env = append(cmd.Env, "SSI_ENDPOINT="+c.Nodes[0].API())
	r := runCmd(t, cmd)
	t.Logf("ssi %s with %s=%s: %v", strings.Join(args, " "), point, action, r)
	if r.code == 0 && point != "restore/after-running" {
		t.Fatalf("%s=%s did not fail the command: %v", point, action, r)
	}
	// Back to an agent without failpoints (an "error" failpoint fails every
	// try), as an operator or systemd would restart a crashed one.
	if node().Agent.Alive() {
		c.stopAgent(t, faulty, syscall.SIGTERM)
	}
	c.startAgent(t, faulty)
	restarted = true
	if point == "restore/after-claim" && action == "exit" {
		// The restore got no further than the record: the restarted agent
		// says so, and the checkpoint restores on a second try.
		eventually(t, 20*time.Second, "interrupted restore recorded", func() error {
			if p := c.proc(t, gpid); p.State != pidtable.Lost || !strings.Contains(p.Error, "ssi restore "+name) {
				return fmt.Errorf("%s: %s", p.State, p.Error)
			}
			return nil
		})
		c.ok(t, "restore", name, "--node", "node2")
	}
	if restoring && action == "error" && point != "restore/after-running" {
		// A failed restore puts the record back as it was: restore again.
		if p := c.proc(t, gpid); p.State != pidtable.Checkpointed {
			t.Fatalf("record after a failed restore: %+v", p.Proc)
		}
		c.ok(t, "restore", name, "--node", "node2")
	}
	want := "node3"
	if restoring {
		want = "node2"
	}
	var p pidtable.Proc
	eventually(t, 20*time.Second, "one running copy on the recorded node", func() error {
		p = c.proc(t, gpid).Proc
		if p.State != pidtable.Running || p.Node != want {
			return fmt.Errorf("state %s on %s", p.State, p.Node)
		}
		var holders []string
		for _, n := range c.Nodes {
			for _, cg := range liveJobCgroups(t, c.CgroupParent(), n.Name) {
				if cg == gpid {
					holders = append(holders, n.Name)
				}
			}
		}
		if len(holders) != 1 || holders[0] != p.Node {
			return fmt.Errorf("job's cgroup on %v, record says %s", holders, p.Node)
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID)); err != nil || strings.Contains(string(st), ") T ") {
			return fmt.Errorf("pid %d of the record is gone or stopped: %q %v", p.PID, st, err)
		}
		if left := c.imagesLeft(gpid); len(left) > 0 {
			return fmt.Errorf("shipped images left in /dev/shm: %v", left)
		}
		return nil
	})
	before := checkTicks(t, c.ok(t, "logs", g))
	c.waitTicks(t, gpid, before+5)
	checkTicks(t, c.ok(t, "logs", g))
	var list []api.CheckpointInfo
	if err := json.Unmarshal([]byte(c.ok(t, "checkpoints", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	has := false
	for _, ci := range list {
		if ci.Name == name {
			has = ci.State == pidtable.Ready
		}
	}
	dir := c.checkpointDir("node3", name)
	_, statErr := os.Stat(dir)
	if has != kept || (statErr == nil) != kept {
		t.Fatalf("checkpoint %s kept: record %v, dir %v (%v); want %v", name, has, statErr == nil, statErr, kept)
	}
	t.Logf("%s=%s: job on %s (epoch %d), output continuous, checkpoint kept: %v", point, action, p.Node, p.Epoch, kept)
}

// TestConcurrentDumpsSameWorkdir: jobs that share a working directory can be
// dumped at the same moment. When jobs shared the node's /proc, CRIU's
// parasite made a temporary directory there, and 4 of 5 such pairs collided;
// a job now has a /proc of its own, and CRIU writes nothing there.
func TestConcurrentDumpsSameWorkdir(t *testing.T) {
	c := need(t)
	prog := "import time\nb = bytearray(64 << 20)\nwhile True: time.sleep(1)"
	a := c.detach(t, "--node", "node1", "-w", "/tmp", "--", "python3", "-c", prog)
	b := c.detach(t, "--node", "node2", "-w", "/tmp", "--", "python3", "-c", prog)
	defer c.kill(t, a, b)
	time.Sleep(time.Second)
	const pairs = 6
	var names []string
	defer func() { c.ssi(t, append([]string{"checkpoints", "rm"}, names...)...) }()
	for i := range pairs {
		done := make(chan result, 2)
		for _, g := range []uint64{a, b} {
			name := fmt.Sprintf("e2e-same-wd-%d-%d", g, i)
			names = append(names, name)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				var out, errb strings.Builder
				cmd := c.cmd(ctx, "checkpoint", "--leave-running", "--name", name, strconv.FormatUint(g, 10))
				cmd.Stdout, cmd.Stderr = &out, &errb
				err := cmd.Run()
				r := result{stdout: out.String(), stderr: errb.String()}
				if err != nil {
					r.code = 1
				}
				done <- r
			}()
		}
		for range 2 {
			if r := <-done; r.code != 0 {
				t.Fatalf("pair %d: concurrent checkpoint failed: %v", i, r)
			}
		}
	}
}

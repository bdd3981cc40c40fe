package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/migrate"
)

// A job has a mount namespace of its own with a /proc of its PID namespace
// and a /dev/shm of its own (isolate.JobNamespaces, ssi-init's setup_mounts).
// CRIU therefore never writes into a job's working directory: these tests
// move jobs from the folders that used to break that (docs/ROBUSTNESS.md).

// folderEntries lists the names in dir.
func folderEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name()
	}
	return names
}

// childrenNamed lists the PIDs of parent's children whose command is comm.
func childrenNamed(t *testing.T, parent int, comm string) []int {
	t.Helper()
	var out []int
	for _, pid := range pidsWithArg(t, "") {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:])
		if len(f) > 1 && s[open+1:close] == comm && f[1] == strconv.Itoa(parent) {
			out = append(out, pid)
		}
	}
	return out
}

// TestInterruptedDumpLeavesNothing: a job whose working directory is the
// repository root is migrated, and CRIU is killed in the middle of the dump
// (held by the failpoint checkpoint/dump/post-dump: the images written, the
// tree still frozen by CRIU). The migration fails, the job runs on where it
// was, nothing (no proc.crtools) is left in the folder, and the job then
// moves, twice, its output continuous. When jobs shared the node's /proc, a
// dump interrupted at the wrong moment left proc.crtools there, and every
// later dump of every job in that folder failed.
func TestInterruptedDumpLeavesNothing(t *testing.T) {
	c := need(t)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	before := folderEntries(t, repo)
	gate := filepath.Join(t.TempDir(), "gate")
	ctx := context.Background()
	c.stopAgent(t, "node1", syscall.SIGTERM)
	if err := c.StartAgentEnv(ctx, "node1", []string{"SSI_FAILPOINTS=checkpoint/dump/post-dump=wait(" + gate + ")"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stopAgent(t, "node1", syscall.SIGTERM)
		c.startAgent(t, "node1")
	})
	gpid := c.detach(t, "--node", "node1", "-w", repo, "--", "python3", counterPath(t), "32", "0.05")
	defer c.kill(t, gpid)
	g := strconv.FormatUint(gpid, 10)
	c.waitTicks(t, gpid, 5)

	mctx, cancel := context.WithTimeout(ctx, migrate.Timeout)
	defer cancel()
	var out, errb strings.Builder
	mig := c.cmd(mctx, "migrate", g, "node2")
	mig.Stdout, mig.Stderr = &out, &errb
	if err := mig.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mig.Wait() }()
	waitGate(t, gate, "checkpoint/dump/post-dump")
	agent := c.Nodes[0].Agent.PID
	criu := childrenNamed(t, agent, "criu")
	if len(criu) != 1 {
		t.Fatalf("node1's agent (pid %d) has criu children %v, want the one dumping gpid %d", agent, criu, gpid)
	}
	if slices.Contains(folderEntries(t, repo), "proc.crtools") {
		t.Errorf("proc.crtools in %s while CRIU dumps a job working there", repo)
	}
	if err := unix.Kill(criu[0], unix.SIGKILL); err != nil {
		t.Fatalf("kill CRIU %d: %v", criu[0], err)
	}
	t.Logf("killed CRIU (pid %d) in the middle of gpid %d's dump", criu[0], gpid)
	openGate(t, gate)
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("migrate succeeded although its CRIU was killed mid-dump: %s", out.String())
		}
		t.Logf("interrupted migrate: %v: %s", err, strings.TrimSpace(errb.String()))
	case <-time.After(migrate.Timeout):
		t.Fatal("migrate still running after its CRIU was killed")
	}

	eventually(t, 30*time.Second, "job running on node1 again, ticking", func() error {
		p := c.proc(t, gpid)
		if p.State.Ended() || p.Node != "node1" {
			return fmt.Errorf("gpid %d: %s on %s", gpid, p.State, p.Node)
		}
		n := c.lastTickOf(t, gpid)
		time.Sleep(300 * time.Millisecond)
		if c.lastTickOf(t, gpid) <= n {
			return fmt.Errorf("no tick past %d", n)
		}
		return nil
	})
	if after := folderEntries(t, repo); !slices.Equal(before, after) {
		t.Errorf("the interrupted dump changed %s: before %v, after %v", repo, before, after)
	}
	eventually(t, 10*time.Second, "the interrupted dump's images removed", func() error {
		if left := c.imagesLeft(gpid); len(left) > 0 {
			return fmt.Errorf("images left: %v", left)
		}
		return nil
	})
	st := c.migrate(t, gpid, "node2")
	st3 := c.migrate(t, gpid, "node3")
	n := c.lastTickOf(t, gpid)
	c.waitTicks(t, gpid, n+3)
	ticks := checkTicks(t, c.ok(t, "logs", g))
	if after := folderEntries(t, repo); !slices.Equal(before, after) {
		t.Errorf("moves changed %s: before %v, after %v", repo, before, after)
	}
	t.Logf("gpid %d in %s: moved after the interrupted dump (frozen %.0f ms, %.0f ms); %d ticks, continuous; folder unchanged", gpid, repo, st.FrozenMS, st3.FrozenMS, ticks)
}

// readOnlyDir makes a folder that is read-only: a tmpfs mounted read-only,
// unmounted and removed when the test ends.
func readOnlyDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ssi-e2e-ro-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("ssi-e2e-ro", d, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		os.Remove(d)
		t.Fatalf("mount a read-only tmpfs on %s: %v", d, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(d, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", d, err)
		}
		_ = os.Remove(d)
	})
	if err := os.WriteFile(filepath.Join(d, "probe"), nil, 0o600); err == nil {
		t.Fatalf("%s is writable", d)
	}
	return d
}

// TestReadOnlyWorkdirMoves: a job whose working directory is read-only (a
// read-only tmpfs) moves around the cluster and back, stop-and-copy and
// post-copy, its output continuous, and is checkpointed and restored as a
// copy on another node.
// When jobs shared the node's /proc, CRIU could not dump it at all, and ssi
// said the job was "started by an older ssi whose job init runs as the job's
// user".
func TestReadOnlyWorkdirMoves(t *testing.T) {
	c := need(t)
	ro := readOnlyDir(t)
	gpid := c.detach(t, "--node", "node1", "-w", ro, "--", "python3", counterPath(t), "16", "0.05")
	defer c.kill(t, gpid)
	c.waitTicks(t, gpid, 5)
	var frozen []string
	for _, to := range []string{"node2", "node3", "node1"} {
		st := c.migrate(t, gpid, to)
		frozen = append(frozen, fmt.Sprintf("%s %.0f ms", to, st.FrozenMS))
	}
	// Post-copy too (CRIU's lazy dump is a process of its own), and back.
	for _, to := range []string{"node2", "node1"} {
		var st api.MigrateStats
		if err := json.Unmarshal([]byte(c.ok(t, "migrate", "--postcopy", "-o", "json", strconv.FormatUint(gpid, 10), to)), &st); err != nil {
			t.Fatal(err)
		}
		frozen = append(frozen, fmt.Sprintf("%s post-copy %.0f ms", to, st.FrozenMS))
	}
	// And a checkpoint, restored as a copy on node3.
	name := fmt.Sprintf("e2e-ro-%d", gpid)
	c.ok(t, "checkpoint", "--leave-running", "--name", name, strconv.FormatUint(gpid, 10))
	defer c.ssi(t, "checkpoints", "rm", name)
	var rr api.CheckpointRestoreResult
	if err := json.Unmarshal([]byte(c.ok(t, "restore", name, "--as-new", "--node", "node3", "-o", "json")), &rr); err != nil {
		t.Fatal(err)
	}
	defer c.kill(t, rr.GPID)
	c.waitTicks(t, rr.GPID, c.lastTickOf(t, rr.GPID)+2)
	checkTicks(t, c.ok(t, "logs", strconv.FormatUint(rr.GPID, 10)))
	n := c.lastTickOf(t, gpid)
	c.waitTicks(t, gpid, n+3)
	ticks := checkTicks(t, c.ok(t, "logs", strconv.FormatUint(gpid, 10)))
	if p := c.proc(t, gpid); p.Node != "node1" || p.State.Ended() {
		t.Fatalf("gpid %d after 5 moves: %s on %s", gpid, p.State, p.Node)
	}
	t.Logf("gpid %d in read-only %s moved (%s); %d ticks, continuous; checkpoint %s restored as gpid %d on node3", gpid, ro, strings.Join(frozen, ", "), ticks, name, rr.GPID)
}

// TestConcurrentMovesSameWorkdir: 4 jobs sharing one working directory are
// moved at the same moment (as the balancer moves several per round), and
// every move succeeds. When jobs shared the node's /proc, their dumps
// collided on CRIU's proc.crtools in that folder.
func TestConcurrentMovesSameWorkdir(t *testing.T) {
	c := need(t)
	wd := privateWorkdir(t)
	const jobs = 4
	gpids := make([]uint64, jobs)
	for i := range gpids {
		gpids[i] = c.detach(t, "--node", "node1", "-w", wd, "--", "python3", counterPath(t), "16", "0.05")
	}
	defer c.kill(t, gpids...)
	for _, g := range gpids {
		c.waitTicks(t, g, 3)
	}
	targets := []string{"node2", "node3", "node2", "node3"}
	results := make([]result, jobs)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, g := range gpids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), migrate.Timeout)
			defer cancel()
			var out, errb strings.Builder
			cmd := c.cmd(ctx, "migrate", strconv.FormatUint(g, 10), targets[i])
			cmd.Stdout, cmd.Stderr = &out, &errb
			<-start
			err := cmd.Run()
			results[i] = result{stdout: out.String(), stderr: errb.String()}
			if err != nil {
				results[i].code = 1
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("gpid %d -> %s: %v", gpids[i], targets[i], r)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for i, g := range gpids {
		if p := c.proc(t, g); p.Node != targets[i] || p.State.Ended() {
			t.Errorf("gpid %d: %s on %s, want running on %s", g, p.State, p.Node, targets[i])
		}
		n := c.lastTickOf(t, g)
		c.waitTicks(t, g, n+2)
		checkTicks(t, c.ok(t, "logs", strconv.FormatUint(g, 10)))
	}
	if left := folderEntries(t, wd); len(left) != 0 {
		t.Errorf("moves left %v in the jobs' working directory", left)
	}
	t.Logf("4 jobs in %s moved at once to %v: all succeeded, output continuous", wd, targets)
}

// TestJobSeesOwnProcAndShm: a program in a job reading /proc sees its own PID
// namespace (/proc/1 is the job's init, /proc/self a small PID, a handful of
// processes), and /dev/shm is the job's: a file written there is not on the
// node's, and it moves with the job. A mount the job makes stays in its
// namespace (and moves with it).
func TestJobSeesOwnProcAndShm(t *testing.T) {
	c := need(t)
	name := fmt.Sprintf("ssi-e2e-shm-%d", time.Now().UnixNano())
	mnt := t.TempDir()
	script := `echo "self $(readlink /proc/self)"
echo "init $(tr '\0' ' ' < /proc/1/cmdline)"
echo "pids $(ls /proc | grep -c '^[0-9]')"
echo kept > /dev/shm/` + name + `
mount -t tmpfs ssi-e2e-job-mount ` + mnt + ` && echo "mounted yes"
i=0
while :; do i=$((i+1)); echo "tick $i $(cat /dev/shm/` + name + `)"; sleep 0.1; done`
	gpid := c.detach(t, "--node", "node1", "--", "sh", "-c", script)
	defer c.kill(t, gpid)
	g := strconv.FormatUint(gpid, 10)
	var logs string
	eventually(t, 20*time.Second, "job printed its view and ticks", func() error {
		logs = c.ok(t, "logs", g)
		if !strings.Contains(logs, "tick 3 kept") {
			return fmt.Errorf("logs %q", logs)
		}
		return nil
	})
	fields := map[string]string{}
	for _, l := range strings.Split(logs, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k != "tick" {
			fields[k] = v
		}
	}
	if self, err := strconv.Atoi(fields["self"]); err != nil || self <= 1 || self > 20 {
		t.Errorf("/proc/self in the job is %q: want a PID of the job's own namespace (2..20)", fields["self"])
	}
	if init := fields["init"]; !(strings.HasPrefix(init, "ssi-init ") || strings.HasPrefix(init, "ssi-shim init ")) || !strings.Contains(init, "--gpid "+g+" ") {
		t.Errorf("/proc/1/cmdline in the job is %q: want the job's init (ssi-init ... --gpid %s)", init, g)
	}
	if pids, err := strconv.Atoi(fields["pids"]); err != nil || pids < 2 || pids > 10 {
		t.Errorf("the job's /proc lists %q processes: want its own few", fields["pids"])
	}
	if fields["mounted"] != "yes" {
		t.Errorf("the job could not mount a tmpfs in its namespace: %q", logs)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(mi), "ssi-e2e-job-mount") {
		t.Errorf("the job's mount on %s reached the node's mount table (err %v)", mnt, err)
	}
	if _, err := os.Stat(filepath.Join("/dev/shm", name)); err == nil {
		_ = os.Remove(filepath.Join("/dev/shm", name))
		t.Errorf("the job's /dev/shm/%s is on the node's /dev/shm", name)
	}
	c.migrate(t, gpid, "node2")
	n := strings.Count(c.ok(t, "logs", g), "\ntick ")
	eventually(t, 20*time.Second, "job ticks on node2 with its /dev/shm file", func() error {
		logs = c.ok(t, "logs", g)
		lines := strings.Split(strings.TrimSpace(logs), "\n")
		if strings.Count(logs, "\ntick ") < n+3 {
			return fmt.Errorf("%d ticks", strings.Count(logs, "\ntick "))
		}
		if last := lines[len(lines)-1]; !strings.HasSuffix(last, " kept") {
			return fmt.Errorf("last line after the move %q: /dev/shm file lost", last)
		}
		return nil
	})
	t.Logf("gpid %d: /proc/self %s, /proc/1 %q, %s processes in /proc; /dev/shm private and moved with the job", gpid, fields["self"], fields["init"], fields["pids"])
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
)

func counterPath(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("testdata/counter.py")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkTicks verifies output of testdata/counter.py: ticks 1..n in order, each
// once, all with the same memory digest. It returns n.
func checkTicks(t *testing.T, out string) int {
	t.Helper()
	return checkTicksFrom(t, out, 1)
}

// checkTicksFrom is checkTicks for output that starts at tick first.
func checkTicksFrom(t *testing.T, out string, first int) int {
	t.Helper()
	n, digest := first-1, ""
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "tick" {
			t.Fatalf("unexpected line %q in:\n%s", line, out)
		}
		k, _ := strconv.Atoi(f[1])
		if k != n+1 {
			t.Fatalf("tick %d follows tick %d: output lost or repeated", k, n)
		}
		if digest != "" && f[2] != digest {
			t.Fatalf("memory digest changed at tick %d: %s -> %s", k, digest, f[2])
		}
		n, digest = k, f[2]
	}
	return n
}

func (c *testCluster) migrate(t *testing.T, gpid uint64, node string) api.MigrateStats {
	t.Helper()
	out := c.ok(t, "migrate", "-o", "json", strconv.FormatUint(gpid, 10), node)
	var st api.MigrateStats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("migrate -o json: %q: %v", out, err)
	}
	if st.To != node || st.GPID != gpid || (!st.StreamLost && (st.FrozenMS <= 0 || st.ImageBytes <= 0)) {
		t.Fatalf("migrate stats: %+v", st)
	}
	if st.StreamLost {
		t.Logf("gpid %d -> %s: progress stream lost, outcome read from the table", gpid, node)
	}
	return st
}

// TestMigrateAroundTheCluster: a stateful job with 32 MiB of checked memory moves
// 20 times around 3 nodes, keeping its gpid, its memory and its output: every
// line once, in order, streamed to an attached `ssi run` and to `ssi logs -f`.
// It then exits on its last node and `ssi run` returns its code.
func TestMigrateAroundTheCluster(t *testing.T) {
	c := need(t)
	const moves = 20
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	attached := c.cmd(ctx, "run", "--node", "node1", "--", "python3", counterPath(t), "32", "0.02", "100000")
	var out, errb bytes.Buffer
	attached.Stdout, attached.Stderr = &out, &errb
	if err := attached.Start(); err != nil {
		t.Fatal(err)
	}
	// The attached run's job: the newest job running counter.py with these
	// arguments (gpids only grow).
	gpid := c.newestRunning(t, func(argv []string) bool {
		return strings.Join(argv[1:], " ") == counterPath(t)+" 32 0.02 100000"
	})
	follower := c.cmd(ctx, "logs", "-f", strconv.FormatUint(gpid, 10))
	var fout, ferr bytes.Buffer
	follower.Stdout, follower.Stderr = &fout, &ferr
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	nodes := []string{"node2", "node3", "node1"}
	var frozen []float64
	lastTick := func() int {
		lines := strings.Split(strings.TrimSpace(c.ok(t, "logs", strconv.FormatUint(gpid, 10))), "\n")
		var n int
		fmt.Sscanf(lines[len(lines)-1], "tick %d", &n)
		return n
	}
	for i := range moves {
		// The job runs between moves: its tick count grows on every node it visits.
		before := lastTick()
		eventually(t, 20*time.Second, fmt.Sprintf("job ticking before move %d", i+1), func() error {
			if n := lastTick(); n <= before {
				return fmt.Errorf("still at tick %d", n)
			}
			return nil
		})
		st := c.migrate(t, gpid, nodes[i%3])
		frozen = append(frozen, st.FrozenMS)
		p := c.proc(t, gpid)
		if p.Node != nodes[i%3] || p.State != pidtable.Running || p.Epoch != uint64(i+2) {
			t.Fatalf("after move %d: %+v", i+1, p.Proc)
		}
		if !pidAlive(p.PID) {
			t.Fatalf("after move %d: pid %d from ps is not alive", i+1, p.PID)
		}
	}
	t.Logf("%d moves, frozen ms: %v", moves, frozen)
	time.Sleep(300 * time.Millisecond)
	c.ok(t, "kill", "-s", "INT", strconv.FormatUint(gpid, 10))
	if err := attached.Wait(); attached.ProcessState.ExitCode() != 130 {
		t.Fatalf("attached run after %d moves: %v, exit %d, stderr %q", moves, err, attached.ProcessState.ExitCode(), errb.String())
	}
	if !strings.Contains(errb.String(), "KeyboardInterrupt") {
		t.Fatalf("python did not see the SIGINT: stderr %q", errb.String())
	}
	n := checkTicks(t, out.String())
	if err := follower.Wait(); err != nil {
		t.Fatalf("logs -f: %v: %s", err, ferr.String())
	}
	if fn := checkTicks(t, fout.String()); fn != n {
		t.Fatalf("logs -f saw %d ticks, attached run %d", fn, n)
	}
	if n < moves {
		t.Fatalf("only %d ticks over %d moves", n, moves)
	}
	if r := c.ssi(t, "wait", strconv.FormatUint(gpid, 10)); r.code != 130 {
		t.Fatalf("wait: %v", r)
	}
	assertNoMigrationLeftovers(t, c, gpid)
}

// TestMigratePipeline: a job of several processes (a pipeline and a child that
// forks grandchildren) moves as one unit.
func TestMigratePipeline(t *testing.T) {
	c := need(t)
	gpid := c.detach(t, "--node", "node2", "--", "sh", "-c",
		`(sleep 600 & sleep 600 & wait) & i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done | cat | cat`)
	defer c.kill(t, gpid)
	// 7 processes stay (sh, the subshell and its two sleeps, the loop's
	// subshell, two cats); the loop's "sleep 0.05" comes and goes, so a sample
	// shows 7 or 8: comparing one sample before with one after was flaky.
	const stay = 7
	eventually(t, 5*time.Second, "stats", func() error {
		p := c.proc(t, gpid)
		if p.Stats == nil || p.Stats.Procs < stay {
			return fmt.Errorf("stats %+v", p.Stats)
		}
		return nil
	})
	c.migrate(t, gpid, "node3")
	eventually(t, 5*time.Second, "all processes moved", func() error {
		p := c.proc(t, gpid)
		if p.Node != "node3" || p.Stats == nil || p.Stats.Procs < stay || p.Stats.Procs > stay+1 {
			return fmt.Errorf("%s, stats %+v, want %d or %d processes", p.Node, p.Stats, stay, stay+1)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	c.migrate(t, gpid, "node1")
	time.Sleep(300 * time.Millisecond)
	logs := c.ok(t, "logs", strconv.FormatUint(gpid, 10))
	lines := strings.Fields(logs)
	for i, l := range lines {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("pipeline output broken at line %d: %q", i+1, l)
		}
	}
	if len(lines) < 10 {
		t.Fatalf("pipeline printed only %d lines", len(lines))
	}
}

// TestMigrateBadInput: refusals leave the job running where it was.
func TestMigrateBadInput(t *testing.T) {
	c := need(t)
	gpid := c.detach(t, "--node", "node1", "--", "sleep", "600")
	defer c.kill(t, gpid)
	g := strconv.FormatUint(gpid, 10)
	done := c.detach(t, "--node", "node1", "--", "true")
	if r := c.ssi(t, "wait", strconv.FormatUint(done, 10)); r.code != 0 {
		t.Fatal(r)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown gpid", []string{"migrate", "999999", "node2"}, 1, "no such process: gpid 999999"},
		{"unknown node", []string{"migrate", g, "node9"}, 1, `unknown node "node9"`},
		{"same node", []string{"migrate", g, "node1"}, 1, "already runs on node1"},
		{"exited job", []string{"migrate", strconv.FormatUint(done, 10), "node2"}, 1, "has already exited with status 0"},
		{"missing node arg", []string{"migrate", g}, 2, "want GPID NODE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.ssi(t, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("%v; want exit %d and %q", r, tc.code, tc.want)
			}
		})
	}
	// A job CRIU cannot dump (a unix socket whose peer is outside the job): the
	// migration fails in the dump, quotes CRIU, and the job runs on, not stopped.
	sock := filepath.Join(t.TempDir(), "peer.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	holder := c.detach(t, "--node", "node2", "--", "python3", "-c",
		"import socket,time; s=socket.socket(socket.AF_UNIX); s.connect('"+sock+"'); print('connected', flush=True); time.sleep(600)")
	defer c.kill(t, holder)
	eventually(t, 5*time.Second, "job connected", func() error {
		if !strings.Contains(c.ok(t, "logs", strconv.FormatUint(holder, 10)), "connected") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	r := c.ssi(t, "migrate", strconv.FormatUint(holder, 10), "node3")
	if r.code != 1 || !strings.Contains(r.stderr, "during dump") || !strings.Contains(r.stderr, "Error (criu/") || !strings.Contains(r.stderr, "running on its source node again") {
		t.Fatalf("migrate of an undumpable job: %v", r)
	}
	eventually(t, 5*time.Second, "job running again on its node", func() error {
		p := c.proc(t, holder)
		if p.Node != "node2" || p.State != pidtable.Running || p.Stats == nil || p.Stats.Stat == "T" {
			return fmt.Errorf("%+v %+v", p.Proc, p.Stats)
		}
		return nil
	})
	// NotReady target.
	c.stopAgent(t, "node3", syscall.SIGKILL)
	eventually(t, 8*time.Second, "node3 NotReady", func() error {
		if c.nodes(t)["node3"].Ready {
			return fmt.Errorf("still Ready")
		}
		return nil
	})
	r = c.ssi(t, "migrate", g, "node3")
	c.startAgent(t, "node3")
	if r.code != 1 || !strings.Contains(r.stderr, "NotReady") {
		t.Fatalf("migrate to NotReady node: %v", r)
	}
}

// TestConcurrentMigrateRefused: a second migrate of a job in flight is refused,
// not queued; exactly one wins and the job ends up running once.
func TestConcurrentMigrateRefused(t *testing.T) {
	c := need(t)
	gpid := c.detach(t, "--node", "node1", "--", "python3", counterPath(t), "64", "0.05")
	defer c.kill(t, gpid)
	time.Sleep(500 * time.Millisecond)
	g := strconv.FormatUint(gpid, 10)
	results := make(chan result, 2)
	for _, n := range []string{"node2", "node3"} {
		go func() { results <- c.ssi(t, "migrate", g, n) }()
	}
	r1, r2 := <-results, <-results
	ok, refused := 0, 0
	for _, r := range []result{r1, r2} {
		switch {
		case r.code == 0:
			ok++
		case strings.Contains(r.stderr, "already being migrated") || strings.Contains(r.stderr, "not running here"):
			refused++
		default:
			t.Fatalf("unexpected outcome: %v", r)
		}
	}
	// Exactly one winner: two would mean the second migration was queued
	// behind the first, or ran beside it.
	if ok != 1 || refused != 1 {
		t.Fatalf("%d succeeded, %d refused, want 1 and 1: %v / %v", ok, refused, r1, r2)
	}
	p := c.proc(t, gpid)
	if p.State != pidtable.Running || !pidAlive(p.PID) {
		t.Fatalf("job after concurrent migrations: %+v", p.Proc)
	}
	running := 0
	for _, n := range c.Nodes {
		for _, g2 := range liveJobCgroups(t, c.CgroupParent(), n.Name) {
			if g2 == gpid {
				running++
			}
		}
	}
	if running != 1 {
		t.Fatalf("gpid %d has a cgroup on %d nodes, want exactly 1", gpid, running)
	}
}

// assertNoMigrationLeftovers: no images in /dev/shm and no cgroup of the job
// on nodes other than its owner.
func assertNoMigrationLeftovers(t *testing.T, c *testCluster, gpid uint64) {
	t.Helper()
	eventually(t, 10*time.Second, "no leftovers", func() error {
		shm := c.imagesLeft(gpid)
		if len(shm) > 0 {
			return fmt.Errorf("images left in /dev/shm: %v", shm)
		}
		for _, n := range c.Nodes {
			for _, g := range liveJobCgroups(t, c.CgroupParent(), n.Name) {
				if g == gpid {
					return fmt.Errorf("cgroup of ended gpid %d left on %s", gpid, n.Name)
				}
			}
		}
		return nil
	})
}

// TestMigrateJobKinds: jobs with threads, a TCP listener on 0.0.0.0, a file they
// append to, and SysV shared memory with a semaphore keep working after a move.
func TestMigrateJobKinds(t *testing.T) {
	c := need(t)
	appendFile := filepath.Join(t.TempDir(), "appended.txt")
	threads := c.detach(t, "--node", "node1", "--", "python3", "-c", `
import threading, time
c = [0] * 4
def work(i):
    while True:
        c[i] += 1
        time.sleep(0.01)
for i in range(4):
    threading.Thread(target=work, args=(i,), daemon=True).start()
while True:
    print(min(c), flush=True)
    time.sleep(0.1)`)
	listener := c.detach(t, "--node", "node1", "--", "python3", "-c", `
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen()
print("listening", flush=True)
n = 0
while True:
    conn, _ = s.accept()
    n += 1
    conn.sendall(b"hello %d\n" % n)
    conn.close()`)
	appender := c.detach(t, "--node", "node1", "--", "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> "+appendFile+"; sleep 0.05; done")
	sysv := c.detach(t, "--node", "node1", "--", "python3", filepath.Join(filepath.Dir(counterPath(t)), "sysv.py"))
	defer c.kill(t, threads, listener, appender, sysv)
	ask := func(node string) string {
		ip := ""
		for _, n := range c.Nodes {
			if n.Name == node {
				ip = n.IP
			}
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), 3*time.Second)
		if err != nil {
			t.Fatalf("connect to the listener on %s: %v", node, err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		b := make([]byte, 64)
		n, _ := conn.Read(b)
		return strings.TrimSpace(string(b[:n]))
	}
	eventually(t, 5*time.Second, "listener up", func() error {
		if !strings.Contains(c.ok(t, "logs", strconv.FormatUint(listener, 10)), "listening") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if got := ask("node1"); got != "hello 1" {
		t.Fatalf("listener on node1 said %q", got)
	}
	lastNum := func(gpid uint64) int {
		lines := strings.Fields(c.ok(t, "logs", strconv.FormatUint(gpid, 10)))
		n, _ := strconv.Atoi(lines[len(lines)-1])
		return n
	}
	time.Sleep(500 * time.Millisecond)
	threadsBefore, sysvBefore := lastNum(threads), 0
	for _, g := range []uint64{threads, listener, appender, sysv} {
		c.migrate(t, g, "node2")
	}
	time.Sleep(500 * time.Millisecond)
	// Threads: all four still count, and the process still has them.
	if n := lastNum(threads); n <= threadsBefore {
		t.Fatalf("threads stopped counting after the move: %d then %d", threadsBefore, n)
	}
	if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.proc(t, threads).PID)); !strings.Contains(string(st), "Threads:\t5") {
		t.Fatalf("threaded job after the move:\n%s", st)
	}
	// TCP: the listener answers on node2's address, remembering its count.
	if got := ask("node2"); got != "hello 2" {
		t.Fatalf("listener on node2 said %q, want hello 2", got)
	}
	// The appended file goes on from where it was, without a gap.
	b, err := os.ReadFile(appendFile)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Fields(string(b)) {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("appended file broken at line %d: %q", i+1, l)
		}
	}
	// SysV: the counter in shared memory continued.
	var prev int
	for _, line := range strings.Split(strings.TrimSpace(c.ok(t, "logs", strconv.FormatUint(sysv, 10))), "\n") {
		var v int
		if _, err := fmt.Sscanf(line, "shm %d", &v); err != nil || v != prev+1 {
			t.Fatalf("SysV counter line %q after %d", line, prev)
		}
		prev = v
		sysvBefore++
	}
	if sysvBefore < 10 {
		t.Fatalf("SysV job printed only %d lines", sysvBefore)
	}
}

// TestPostCopyMigration: `ssi migrate --postcopy` moves a 64 MiB self-checking
// job around the cluster with its memory following after it resumes (CRIU lazy
// pages): the job keeps its gpid, every tick once and in order, and the same
// memory digest; the freeze is short whatever the size, and no page server,
// lazy-pages daemon or image is left behind.
func TestPostCopyMigration(t *testing.T) {
	c := need(t)
	gpid := c.detach(t, "--node", "node1", "--", "python3", counterPath(t), "64", "0.05", "100000")
	g := strconv.FormatUint(gpid, 10)
	defer c.kill(t, gpid)
	c.waitTicks(t, gpid, 3)
	for i, node := range []string{"node2", "node3", "node1", "node2"} {
		before := c.lastTickOf(t, gpid)
		var st api.MigrateStats
		if err := json.Unmarshal([]byte(c.ok(t, "migrate", "--postcopy", "-o", "json", g, node)), &st); err != nil {
			t.Fatal(err)
		}
		// Figures that say post-copy happened: the 64 MiB went over as lazy
		// pages after the job resumed, not in the images; the freeze is a
		// part of the whole, and the paging another part after it.
		switch {
		case !st.PostCopy || st.StreamLost || st.To != node || st.GPID != gpid:
			t.Fatalf("move %d: not a post-copy move of gpid %d to %s with figures: %+v", i+1, gpid, node, st)
		case st.LazyBytes < 64<<20:
			t.Fatalf("move %d: %d bytes paged over, want the job's 64 MiB or more: %+v", i+1, st.LazyBytes, st)
		case st.ImageBytes <= 0 || st.ImageBytes >= 32<<20 || st.ImageBytes >= st.LazyBytes:
			t.Fatalf("move %d: images of %d bytes, want some, but far less than the %d bytes paged: %+v", i+1, st.ImageBytes, st.LazyBytes, st)
		case st.FrozenMS <= 0 || st.DumpMS <= 0 || st.RestoreMS <= 0 || st.PagesMS <= 0:
			t.Fatalf("move %d: a phase took no time: %+v", i+1, st)
		case st.FrozenMS >= st.TotalMS:
			t.Fatalf("move %d: frozen %.0f ms of %.0f ms in all: the job did not run during the move: %+v", i+1, st.FrozenMS, st.TotalMS, st)
		case st.FrozenMS+st.PagesMS > st.TotalMS+1:
			t.Fatalf("move %d: frozen %.0f ms + paging %.0f ms exceed the total %.0f ms (paging is after the freeze): %+v", i+1, st.FrozenMS, st.PagesMS, st.TotalMS, st)
		}
		t.Logf("move %d -> %s: frozen %.0f ms, images %d KiB, memory %d MiB paged in %.0f ms, total %.0f ms",
			i+1, node, st.FrozenMS, st.ImageBytes>>10, st.LazyBytes>>20, st.PagesMS, st.TotalMS)
		if p := c.proc(t, gpid); p.Node != node || p.State != pidtable.Running {
			t.Fatalf("after move %d: %+v", i+1, p.Proc)
		}
		c.waitTicks(t, gpid, before+3)
		if left := c.imagesLeft(gpid); len(left) > 0 {
			t.Fatalf("images left after move %d: %v", i+1, left)
		}
	}
	n := checkTicks(t, c.ok(t, "logs", g))
	// No page server (criu dump) or lazy-pages daemon of this cluster's left:
	// both run with their images dir under an agent's images root.
	eventually(t, 10*time.Second, "no CRIU process of this cluster left", func() error {
		for _, node := range c.Nodes {
			if pids := pidsWithArg(t, migrate.ImagesRoot(node.DataDir)); len(pids) > 0 {
				return fmt.Errorf("processes using %s's images: %v", node.Name, pids)
			}
		}
		return nil
	})
	t.Logf("gpid %d: %d ticks after 4 post-copy moves, continuous, digest unchanged", gpid, n)
}

// pidsWithArg lists processes with an argument containing s.
func pidsWithArg(t *testing.T, s string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, pid)
		}
	}
	return out
}

// TestChattyJobLogAhead: a job that has printed 20 MB moves without that
// output in its freeze: the log so far goes to the target while the job
// still runs, and only what it printed since travels with the images. Its
// log on the target is the one it had, byte for byte, and goes on.
func TestChattyJobLogAhead(t *testing.T) {
	c := need(t)
	gpid := c.detach(t, "--node", "node1", "--", "sh", "-c", `head -c 20000000 /dev/zero | base64 -w 100; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done`)
	defer c.kill(t, gpid)
	g := strconv.FormatUint(gpid, 10)
	eventually(t, 30*time.Second, "the job past its 20 MB", func() error {
		if out := c.ok(t, "logs", g); !strings.Contains(out, "tick 3\n") {
			return fmt.Errorf("%d bytes of output", len(out))
		}
		return nil
	})
	before := c.ok(t, "logs", g)
	var st api.MigrateStats
	if err := json.Unmarshal([]byte(c.ok(t, "migrate", "-o", "json", g, "node2")), &st); err != nil {
		t.Fatal(err)
	}
	if st.LogAheadBytes < 20_000_000 {
		t.Fatalf("%d bytes of the log sent ahead of the freeze, want all of its 20 MB and more: %+v", st.LogAheadBytes, st)
	}
	var transfer float64
	for _, s := range st.Steps {
		if s.Name == "transfer" {
			transfer = s.MS
		}
	}
	eventually(t, 10*time.Second, "the log going on on node2", func() error {
		after := c.ok(t, "logs", g)
		if !strings.HasPrefix(after, before) || len(after) <= len(before) {
			return fmt.Errorf("log of %d bytes after the move; %d before, and it must go on from there", len(after), len(before))
		}
		return nil
	})
	t.Logf("moved with %d bytes of log sent ahead: frozen %.0f ms, transfer %.0f ms, images %d bytes", st.LogAheadBytes, st.FrozenMS, transfer, st.ImageBytes)
}

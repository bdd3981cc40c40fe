package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// seqLines is the output of `seq from to`.
func seqLines(from, to int) []byte {
	var b bytes.Buffer
	for i := from; i <= to; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sumAwk sums its stdin's lines; %.0f rather than print: Debian's mawk prints
// 5000050000 as 5.00005e+09.
const sumAwk = `{s+=$1} END {printf "%.0f %d\n", s, NR}`

// sumOf is what sumAwk (and slowSum) print for seq 1 n.
func sumOf(n int) string { return fmt.Sprintf("%d %d\n", n*(n+1)/2, n) }

// slowSum is a job that sums its stdin's lines slowly: it sleeps 5 ms every
// 100 lines, so that a fast writer is held back by the pipe and bytes are in
// flight (in the pipe, the agent, the CLI) when the job is moved.
const slowSum = `import sys, time
s = n = 0
for line in sys.stdin:
    s += int(line); n += 1
    if n % 100 == 0: time.sleep(0.005)
print(s, n, flush=True)`

// TestStdinPipeline: `seq 1 100000 | ssi run -- awk ...` sums on another node
// (the CLI's stdin goes to node1's agent and is redirected to the owner) and
// on a node of the placement's choosing.
func TestStdinPipeline(t *testing.T) {
	c := need(t)
	in := seqLines(1, 100000)
	for _, where := range [][]string{{"--node", "node2"}, {}} {
		start := time.Now()
		cmd := c.cmd(context.Background(), append(append([]string{"run"}, where...), "--", "awk", sumAwk)...)
		cmd.Stdin = bytes.NewReader(in)
		r := runCmd(t, cmd)
		if r.code != 0 || r.stdout != sumOf(100000) || r.stderr != "" {
			t.Fatalf("seq 1 100000 | ssi run %v -- awk: %v, want stdout %q", where, r, sumOf(100000))
		}
		t.Logf("ssi run %v: %d bytes of stdin summed in %s", where, len(in), time.Since(start).Round(time.Millisecond))
	}
	// Bytes, not lines: binary input comes out as it went in.
	bin := make([]byte, 3<<20)
	for i := range bin {
		bin[i] = byte(i * 7 / 3)
	}
	cmd := c.cmd(context.Background(), "run", "--node", "node3", "--", "sha256sum")
	cmd.Stdin = bytes.NewReader(bin)
	start := time.Now()
	r := runCmd(t, cmd)
	want := sha256Hex(bin)
	if r.code != 0 || !strings.HasPrefix(r.stdout, want) {
		t.Fatalf("3 MiB through sha256sum: %v, want %s", r, want)
	}
	t.Logf("3 MiB of binary stdin through sha256sum in %s", time.Since(start).Round(time.Millisecond))
}

// TestStdinEOFAndNull: end of file reaches the job; -d and --no-stdin give
// the job /dev/null, an attached run a pipe.
func TestStdinEOFAndNull(t *testing.T) {
	c := need(t)
	// The CLI's stdin is /dev/null (exec's default): cat reads end of file.
	done := make(chan result, 1)
	go func() { done <- c.ssi(t, "run", "--node", "node2", "--", "cat") }()
	select {
	case r := <-done:
		if r.code != 0 || r.stdout != "" {
			t.Fatalf("ssi run -- cat < /dev/null: %v", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ssi run -- cat < /dev/null did not end: the job never read end of file")
	}
	// A stdin that ends after some bytes, and a job that reads it twice.
	cmd := c.cmd(context.Background(), "run", "--node", "node3", "--", "sh", "-c", `cat; echo "after eof: $(cat | wc -c)"`)
	cmd.Stdin = strings.NewReader("one\ntwo\n")
	if r := runCmd(t, cmd); r.code != 0 || r.stdout != "one\ntwo\nafter eof: 0\n" {
		t.Fatalf("ssi run -- cat; cat: %v", r)
	}
	fd0 := []string{"sh", "-c", `readlink /proc/self/fd/0; cat`}
	cmd = c.cmd(context.Background(), append([]string{"run", "--node", "node2", "--"}, fd0...)...)
	cmd.Stdin = strings.NewReader("typed\n")
	if r := runCmd(t, cmd); r.code != 0 || !strings.HasPrefix(r.stdout, "pipe:[") || !strings.HasSuffix(r.stdout, "]\ntyped\n") {
		t.Fatalf("attached run's stdin: %v, want a pipe carrying the input", r)
	}
	for _, flag := range []string{"--no-stdin", "-n"} {
		cmd = c.cmd(context.Background(), append([]string{"run", flag, "--node", "node2", "--"}, fd0...)...)
		cmd.Stdin = strings.NewReader("typed\n")
		if r := runCmd(t, cmd); r.code != 0 || r.stdout != "/dev/null\n" {
			t.Fatalf("ssi run %s: %v, want the job's stdin /dev/null", flag, r)
		}
	}
	gpid := c.detach(t, append([]string{"--node", "node3", "--"}, fd0...)...)
	g := strconv.FormatUint(gpid, 10)
	if r := c.ssi(t, "wait", g); r.code != 0 {
		t.Fatalf("wait: %v", r)
	}
	if out := c.ok(t, "logs", g); out != "/dev/null\n" {
		t.Fatalf("ssi run -d: the job's stdin is %q, want /dev/null", out)
	}
}

// feeder writes seq 1 n to w in three parts: the first part at once, the
// second once gate is closed, the third (then end of file) once gate2 is.
func feeder(t *testing.T, w *io.PipeWriter, n int, gate, gate2 <-chan struct{}) {
	cut1, cut2 := n/2, 3*n/4
	go func() {
		if _, err := w.Write(seqLines(1, cut1)); err != nil {
			return
		}
		<-gate
		if _, err := w.Write(seqLines(cut1+1, cut2)); err != nil {
			return
		}
		<-gate2
		_, _ = w.Write(seqLines(cut2+1, n))
		w.Close()
	}()
}

// heldLog returns what the shims of gpid on node logged about holding its
// stdin for a migration (the bytes drained from its pipe).
func (c *testCluster) heldLog(node string, gpid uint64) string {
	for _, n := range c.Nodes {
		if n.Name != node {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(n.DataDir, "jobs", strconv.FormatUint(gpid, 10), "shim.log"))
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "stdin held") {
				out = append(out, l[strings.Index(l, "offset"):])
			}
		}
		return strings.Join(out, "; ")
	}
	return ""
}

// TestStdinAcrossMigrations: a job summing its stdin slowly is moved twice
// (stop-and-copy, then post-copy) while an attached ssi run feeds it; every
// byte reaches it once, in order, and end of file after the last.
func TestStdinAcrossMigrations(t *testing.T) {
	c := need(t)
	const n = 200000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	gate, gate2 := make(chan struct{}), make(chan struct{})
	defer func() {
		select {
		case <-gate2:
		default:
			close(gate2)
		}
	}()
	feeder(t, pw, n, gate, gate2)
	run := c.cmd(ctx, "run", "--node", "node1", "--", "python3", "-c", slowSum, "migrate-stdin")
	var out, errb bytes.Buffer
	run.Stdin, run.Stdout, run.Stderr = pr, &out, &errb
	start := time.Now()
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	gpid := c.newestRunning(t, func(argv []string) bool { return argv[len(argv)-1] == "migrate-stdin" })
	time.Sleep(time.Second)
	st := c.migrate(t, gpid, "node2")
	t.Logf("stop-and-copy to node2 mid-stream: frozen %.0f ms; source shim: %s", st.FrozenMS, c.heldLog("node1", gpid))
	close(gate)
	time.Sleep(time.Second)
	out2 := c.ok(t, "migrate", "--postcopy", "-o", "json", strconv.FormatUint(gpid, 10), "node3")
	t.Logf("post-copy to node3 mid-stream: %s; source shim: %s", strings.TrimSpace(out2), c.heldLog("node2", gpid))
	if p := c.proc(t, gpid); p.Node != "node3" {
		t.Fatalf("after the moves: %+v", p.Proc)
	}
	close(gate2)
	if err := run.Wait(); err != nil {
		t.Fatalf("attached run across two moves: %v, stdout %q, stderr %q", err, out.String(), errb.String())
	}
	if out.String() != sumOf(n) {
		t.Fatalf("job summed %q, want %q (stderr %q)", out.String(), sumOf(n), errb.String())
	}
	t.Logf("%d lines (%d bytes) summed right across 2 moves in %s", n, len(seqLines(1, n)), time.Since(start).Round(time.Millisecond))
}

// TestStdinAgentRestart: the owner's agent is killed and restarted while an
// attached run feeds its job; the run resumes at the offset the job's shim
// reached, and the sum is right.
func TestStdinAgentRestart(t *testing.T) {
	c := need(t)
	const n = 200000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	gate, gate2 := make(chan struct{}), make(chan struct{})
	feeder(t, pw, n, gate, gate2)
	run := c.cmd(ctx, "run", "--node", "node2", "--", "python3", "-c", slowSum, "restart-stdin")
	var out, errb bytes.Buffer
	run.Stdin, run.Stdout, run.Stderr = pr, &out, &errb
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	gpid := c.newestRunning(t, func(argv []string) bool { return argv[len(argv)-1] == "restart-stdin" })
	time.Sleep(time.Second)
	c.stopAgent(t, "node2", syscall.SIGKILL)
	close(gate) // the feed goes on while the owner's agent is down
	time.Sleep(2 * time.Second)
	c.startAgent(t, "node2")
	close(gate2)
	if err := run.Wait(); err != nil {
		t.Fatalf("attached run across an agent restart: %v, stdout %q, stderr %q", err, out.String(), errb.String())
	}
	if out.String() != sumOf(n) {
		t.Fatalf("job summed %q, want %q (stderr %q)", out.String(), sumOf(n), errb.String())
	}
	if p := c.proc(t, gpid); p.Node != "node2" || p.ExitCode == nil || *p.ExitCode != 0 {
		t.Fatalf("job after the run: %+v", p.Proc)
	}
}

// TestStdinMigrationRollback: a move that fails after the job's stdin was
// held and drained (the target fails after its restore; the source agent
// dies after the dump and its successor rolls back) gives the drained bytes
// back to the job where it was: the sum is right.
func TestStdinMigrationRollback(t *testing.T) {
	c := need(t)
	for _, f := range []struct{ node, spec string }{
		{"node2", "migrate/target/after-restore=error"},
		{"node3", "migrate/source/after-dump=exit"},
	} {
		t.Run(strings.ReplaceAll(f.spec, "/", "_"), func(t *testing.T) {
			const n = 100000
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			c.stopAgent(t, f.node, syscall.SIGTERM)
			if err := c.StartAgentEnv(ctx, f.node, []string{"SSI_FAILPOINTS=" + f.spec}); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if c.agentAlive(f.node) {
					c.stopAgent(t, f.node, syscall.SIGTERM)
				}
				c.startAgent(t, f.node)
			}()
			pr, pw := io.Pipe()
			gate, gate2 := make(chan struct{}), make(chan struct{})
			feeder(t, pw, n, gate, gate2)
			tag := "rollback-stdin-" + f.node
			run := c.cmd(ctx, "run", "--node", "node3", "--", "python3", "-c", slowSum, tag)
			var out, errb bytes.Buffer
			run.Stdin, run.Stdout, run.Stderr = pr, &out, &errb
			if err := run.Start(); err != nil {
				t.Fatal(err)
			}
			gpid := c.newestRunning(t, func(argv []string) bool { return argv[len(argv)-1] == tag })
			time.Sleep(500 * time.Millisecond)
			mig := c.cmd(ctx, "migrate", strconv.FormatUint(gpid, 10), "node2")
			mig.Env = append(mig.Env, "SSI_ENDPOINT="+c.Nodes[0].API())
			r := runCmd(t, mig)
			if r.code == 0 {
				t.Fatalf("migrate with %s: %v, want a failure", f.spec, r)
			}
			if strings.HasSuffix(f.spec, "=exit") {
				eventually(t, 10*time.Second, "faulty agent exited at its failpoint", func() error {
					if c.agentAlive(f.node) {
						return fmt.Errorf("agent of %s still alive", f.node)
					}
					return nil
				})
				c.startAgent(t, f.node) // its successor rolls the move back
			}
			t.Logf("migrate with %s: %s; source shim: %s", f.spec, strings.TrimSpace(r.stderr), c.heldLog("node3", gpid))
			close(gate)
			close(gate2)
			if err := run.Wait(); err != nil {
				t.Fatalf("attached run after a rolled-back move: %v, stdout %q, stderr %q", err, out.String(), errb.String())
			}
			if out.String() != sumOf(n) {
				t.Fatalf("job summed %q, want %q (stderr %q)", out.String(), sumOf(n), errb.String())
			}
			if p := c.proc(t, gpid); p.Node != "node3" {
				t.Fatalf("job after the rollback: %+v", p.Proc)
			}
		})
	}
}

// agentAlive reports whether node's agent process is running.
func (c *testCluster) agentAlive(node string) bool {
	for i := range c.Nodes {
		if c.Nodes[i].Name == node {
			return c.Nodes[i].Agent.Alive()
		}
	}
	return false
}

// TestStdinCheckpointRestore: a checkpoint of a job fed by an attached run
// restores (as a new job, with nobody to feed it): the copy reads what its
// stdin pipe held at the checkpoint, then end of file. The original goes on
// being fed.
func TestStdinCheckpointRestore(t *testing.T) {
	c := need(t)
	const n = 100000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	gate, gate2 := make(chan struct{}), make(chan struct{})
	feeder(t, pw, n, gate, gate2)
	run := c.cmd(ctx, "run", "--node", "node1", "--", "python3", "-c", slowSum, "checkpoint-stdin")
	var out, errb bytes.Buffer
	run.Stdin, run.Stdout, run.Stderr = pr, &out, &errb
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	gpid := c.newestRunning(t, func(argv []string) bool { return argv[len(argv)-1] == "checkpoint-stdin" })
	g := strconv.FormatUint(gpid, 10)
	time.Sleep(500 * time.Millisecond)
	name := "e2e-stdin-" + g
	c.ok(t, "checkpoint", "--leave-running", "--name", name, g)
	defer c.ssi(t, "checkpoints", "rm", name)
	var rr struct {
		GPID uint64 `json:"gpid"`
	}
	if err := json.Unmarshal([]byte(c.ok(t, "restore", name, "--as-new", "--node", "node2", "-o", "json")), &rr); err != nil {
		t.Fatal(err)
	}
	cg := strconv.FormatUint(rr.GPID, 10)
	if r := c.ssi(t, "wait", cg); r.code != 0 {
		t.Fatalf("restored copy: %v, logs %q", r, c.ssi(t, "logs", cg))
	}
	// The input ends where the pipe's contents did, maybe in the middle of
	// line k: the sum of lines 1..k-1, and of a prefix of line k.
	var s, k int
	logs := c.ok(t, "logs", cg)
	if _, err := fmt.Sscanf(logs, "%d %d", &s, &k); err != nil || k <= 0 || k >= n ||
		!strings.HasPrefix(strconv.Itoa(k), strconv.Itoa(s-(k-1)*k/2)) {
		t.Fatalf("restored copy printed %q: want the sum of the first lines", logs)
	}
	t.Logf("restored copy read %d lines (the last %q of %d), then end of file", k, strconv.Itoa(s-(k-1)*k/2), k)
	close(gate)
	close(gate2)
	if err := run.Wait(); err != nil || out.String() != sumOf(n) {
		t.Fatalf("original after the checkpoint: %v, stdout %q, stderr %q", err, out.String(), errb.String())
	}
}

// TestStdinThroughput measures how fast an attached run feeds a job that
// reads as fast as it can (SSI_E2E_STDIN_MB MiB, default 64).
func TestStdinThroughput(t *testing.T) {
	c := need(t)
	mb := 64
	if v, err := strconv.Atoi(os.Getenv("SSI_E2E_STDIN_MB")); err == nil && v > 0 {
		mb = v
	}
	in := make([]byte, mb<<20)
	for i := range in {
		in[i] = byte(i)
	}
	cmd := c.cmd(context.Background(), "run", "--node", "node2", "--", "wc", "-c")
	cmd.Stdin = bytes.NewReader(in)
	start := time.Now()
	r := runCmd(t, cmd)
	d := time.Since(start)
	if r.code != 0 || strings.TrimSpace(r.stdout) != strconv.Itoa(len(in)) {
		t.Fatalf("%d MiB through wc -c: %v", mb, r)
	}
	t.Logf("%d MiB of stdin in %s: %.1f MiB/s (job start and exit included)", mb, d.Round(time.Millisecond), float64(mb)/d.Seconds())
}

// TestStdinInteractive: a line typed reaches the job at once, not when more
// input piles up: a job that answers each line (as a shell does) answers
// each before the next is sent.
func TestStdinInteractive(t *testing.T) {
	c := need(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.cmd(ctx, "run", "--node", "node3", "--", "sh", "-c", `while read l; do echo "got $l"; done; echo bye`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		b := make([]byte, 4096)
		var acc string
		for {
			n, err := stdout.Read(b)
			acc += string(b[:n])
			for {
				i := strings.IndexByte(acc, '\n')
				if i < 0 {
					break
				}
				lines <- acc[:i]
				acc = acc[i+1:]
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	var worst, total time.Duration
	const rounds = 20
	for i := range rounds {
		start := time.Now()
		fmt.Fprintf(stdin, "ping %d\n", i)
		select {
		case l := <-lines:
			if l != fmt.Sprintf("got ping %d", i) {
				t.Fatalf("round %d: job answered %q", i, l)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: no answer in 10 s", i)
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
	}
	stdin.Close()
	if l := <-lines; l != "bye" {
		t.Fatalf("after end of file: %q", l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d lines typed and answered: mean %s, worst %s per round trip", rounds, (total / rounds).Round(time.Microsecond), worst.Round(time.Microsecond))
}

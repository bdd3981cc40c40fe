//go:build soak

package e2e

// The real-workload soak suite (issue 19's proof): `make soak` (hack/soak.sh)
// runs TestSoak, and only it; `make test` does not build this file.
//
// Each program runs as an ssi job on node1 and is moved while it works: five
// times with `ssi migrate` and the balancer off (node2, node3, node1 with
// --postcopy, node2, node3), then by the balancer, switched on with a 2 s
// residency, which is made to move it by pinned CPU hogs started beside it
// (soakBalancerMoves times; the moves are read from `ssi events --gpid`).
// Every move is counted (succeeded, refused, failed, with its message) and
// every frozen time is compared with twice the raw CRIU dump + restore of a
// copy of the same program measured in the same run (the way
// hack/benchmigrate's "raw" method does it: the copy started as PID 1 of new
// PID, IPC and UTS namespaces and session leader, `criu dump` to /dev/shm,
// then `criu restore -d --restore-sibling`, wall clock of each, 3 cycles).
// Afterwards each program's own result is checked (every line once and in
// order, whole transactions and integrity_check, the lock still held, a
// checksum or a build equal to an unmoved run's). The figures go to
// SOAK_REPORT (default /tmp/ssi-soak-report.md) as markdown, for
// docs/ROBUSTNESS.md. A move that does not succeed, or freezes the job
// longer than the bound, fails the test; the remaining moves still run, so
// that the counts are complete.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

const (
	soakPython        = "/usr/bin/python3" // Debian's, with python3-numpy (hack/soak.sh installs it)
	soakCRIU          = "/usr/local/sbin/criu"
	soakRawCycles     = 3 // raw dump + restore cycles per program
	soakBalancerMoves = 2 // balancer moves wanted per program
	soakHogs          = 3 // pinned CPU hogs put beside the job to make the balancer move it
	soakProgress      = 90 * time.Second
	soakBalanceWait   = 60 * time.Second // for one balancer move
)

// soakProg is one real program of the suite.
type soakProg struct {
	name string
	env  []string // KEY=VALUE for the job (and its raw copy)
	// prepare writes what the program needs into work and returns its argv.
	prepare func(t *testing.T, work string) []string
	// progress is a number that grows while the program works, read from its
	// working directory and its output (stdout and stderr).
	progress func(t *testing.T, work, out string) int
	// minStart: progress wanted before the first move; step: growth wanted
	// after each move (the moved job works).
	minStart, step int
	// held, if set, checks from outside that the job still holds what it
	// must (its lock).
	held func(t *testing.T, work string) error
	// finish ends the job and checks its result; it returns a summary.
	finish func(t *testing.T, c *testCluster, gpid uint64, work string) string
}

// soakMove is one move and how it went.
type soakMove struct {
	how      string // "migrate", "migrate --postcopy", "balancer"
	from, to string
	outcome  string // succeeded, refused, failed
	frozen   time.Duration
	msg      string // the error, or the migration's note
	// From ssi migrate -o json (explicit moves only): image bytes shipped
	// while frozen, dump, transfer and restore times, post-copy used.
	images                  int64
	dump, transfer, restore time.Duration
	postCopy                bool
}

// soakResult is one program's line of the report.
type soakResult struct {
	name     string
	raw      []rawCycle
	rawErr   string
	moves    []soakMove
	balTries int // rounds of hogs put beside the job
	check    string
	failures []string
}

func (r *soakResult) fail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	r.failures = append(r.failures, msg)
	t.Error(msg)
}

func TestSoak(t *testing.T) {
	c := need(t)
	if _, err := os.Stat(soakCRIU); err != nil {
		t.Fatalf("raw baseline needs %s: %v", soakCRIU, err)
	}
	if out, err := exec.Command(soakPython, "-c", "import numpy").CombinedOutput(); err != nil {
		t.Fatalf("%s has no numpy (hack/soak.sh installs python3-numpy): %v: %s", soakPython, err, out)
	}
	var results []*soakResult
	start := time.Now()
	defer func() { writeSoakReport(t, results, time.Since(start)) }()
	for _, p := range soakPrograms() {
		r := &soakResult{name: p.name}
		results = append(results, r)
		t.Run(p.name, func(t *testing.T) {
			soakOne(t, c, p, r)
			if t.Failed() && len(r.failures) == 0 {
				r.failures = append(r.failures, "the subtest failed; see its log")
			}
		})
	}
}

func soakOne(t *testing.T, c *testCluster, p soakProg, r *soakResult) {
	// The raw baseline first, alone on the machine (as far as this suite goes).
	rawWork := privateWorkdir(t)
	var err error
	r.raw, err = rawDumpRestore(t, p, rawWork, p.prepare(t, rawWork))
	if err != nil {
		r.rawErr = err.Error()
		r.fail(t, "raw CRIU dump+restore of a copy: %v", err)
	}
	var limit time.Duration // 2 x the median raw dump + restore; 0: unknown
	if len(r.raw) > 0 {
		limit = 2 * medianDur(rawTotals(r.raw))
	}
	t.Logf("raw dump+restore: %v; frozen bound %s", r.raw, limit)

	work := privateWorkdir(t)
	argv := p.prepare(t, work)
	args := []string{"--node", "node1", "--workdir", work}
	for _, e := range p.env {
		args = append(args, "--env", e)
	}
	gpid := c.detach(t, append(append(args, "--"), argv...)...)
	defer c.kill(t, gpid)
	g := strconv.FormatUint(gpid, 10)
	progress := func() int { return p.progress(t, work, c.ok(t, "logs", g)) }
	grows := func(what string, min int) {
		t.Helper()
		eventually(t, soakProgress, what, func() error {
			if n := progress(); n < min {
				return fmt.Errorf("progress %d, want %d", n, min)
			}
			return nil
		})
	}
	grows("the job working", p.minStart)

	after := func(m *soakMove, i int) {
		t.Helper()
		if m.outcome == "succeeded" && limit > 0 && m.frozen > limit {
			r.fail(t, "move %d (%s %s -> %s) froze the job %s, more than 2 x raw dump+restore (%s)", i, m.how, m.from, m.to, m.frozen.Round(time.Millisecond), limit)
		}
		pr := c.proc(t, gpid)
		want := m.to
		if m.outcome != "succeeded" {
			want = m.from
		}
		if pr.State != pidtable.Running || pr.Node != want {
			r.fail(t, "after move %d (%s): the job is %s on %s, want running on %s", i, m.outcome, pr.State, pr.Node, want)
			t.FailNow()
		}
		grows(fmt.Sprintf("the job working after move %d", i), progress()+p.step)
		if p.held != nil {
			if err := p.held(t, work); err != nil {
				r.fail(t, "after move %d: %v", i, err)
			}
		}
	}

	// Balancer off: explicit moves.
	for i, to := range []string{"node2", "node3", "node1", "node2", "node3"} {
		from := c.proc(t, gpid).Node
		m := soakMove{how: "migrate", from: from, to: to}
		margs := []string{"migrate", "-o", "json", g, to}
		if i == 2 {
			m.how += " --postcopy"
			margs = append(margs, "--postcopy")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		res := runCmd(t, c.cmd(ctx, margs...))
		cancel()
		switch {
		case res.code == 0:
			var st api.MigrateStats
			if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
				t.Fatalf("migrate -o json printed %q: %v", res.stdout, err)
			}
			msd := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
			m.outcome, m.frozen, m.msg = "succeeded", msd(st.FrozenMS), st.Note
			m.images, m.dump, m.transfer, m.restore, m.postCopy = st.ImageBytes, msd(st.DumpMS), msd(st.TransferMS), msd(st.RestoreMS), st.PostCopy
			t.Logf("move %d %s -> %s: frozen %s, images %d B, total %.0f ms %s", i+1, from, to, m.frozen.Round(time.Millisecond), st.ImageBytes, st.TotalMS, st.Note)
		case strings.Contains(res.stderr, "running on its source node again"):
			m.outcome, m.msg = "failed", strings.TrimSpace(res.stderr)
		default:
			m.outcome, m.msg = "refused", strings.TrimSpace(res.stderr)
		}
		r.moves = append(r.moves, m)
		if m.outcome != "succeeded" {
			r.fail(t, "move %d (%s %s -> %s) %s: %s", i+1, m.how, from, to, m.outcome, m.msg)
		}
		after(&r.moves[len(r.moves)-1], i+1)
	}

	// Balancer on: pinned hogs beside the job make it move.
	c.ok(t, "balance", "on", "--residency", "2s")
	balOn := true
	balOff := func() {
		if balOn {
			c.ok(t, "balance", "off", "--residency", "0s")
			balOn = false
		}
	}
	defer balOff()
	hogWork := privateWorkdir(t)
	seen := map[string]bool{} // events already counted (or from before the balancer was on)
	for _, ev := range c.events(t, gpid) {
		seen[ev.ID] = true
	}
	for k := 0; k < soakBalancerMoves; k++ {
		before := c.proc(t, gpid)
		r.balTries++
		var hogs []uint64
		for range soakHogs {
			hogs = append(hogs, c.detach(t, append([]string{"--node", before.Node, "--pin", "-w", hogWork, "--"}, busyJob(int(soakBalanceWait/time.Second)+30)...)...))
		}
		waitErr := func() (err error) {
			deadline := time.Now().Add(soakBalanceWait)
			for time.Now().Before(deadline) {
				for _, ev := range c.events(t, gpid) {
					if seen[ev.ID] || (ev.Kind != pidtable.EventMoved && ev.Kind != pidtable.EventFailed) {
						continue
					}
					return nil
				}
				time.Sleep(200 * time.Millisecond)
			}
			return fmt.Errorf("the balancer did not move the job off %s within %s (hogs beside it)", before.Node, soakBalanceWait)
		}()
		c.kill(t, hogs...)
		if waitErr != nil {
			var why []string
			for _, ev := range c.events(t, gpid) {
				if !seen[ev.ID] && ev.Kind == pidtable.EventRejected {
					why = append(why, ev.Reason)
				}
			}
			r.fail(t, "balancer try %d: %v; its rejections: %q", k+1, waitErr, why)
			break
		}
		// Everything of this try is counted (a second move would be too).
		for _, ev := range c.events(t, gpid) {
			if seen[ev.ID] {
				continue
			}
			seen[ev.ID] = true
			switch ev.Kind {
			case pidtable.EventMoved:
				m := soakMove{how: "balancer", from: ev.From, to: ev.To, outcome: "succeeded", frozen: ev.Frozen}
				r.moves = append(r.moves, m)
				t.Logf("balancer move %s -> %s: frozen %s", ev.From, ev.To, ev.Frozen.Round(time.Millisecond))
			case pidtable.EventFailed:
				m := soakMove{how: "balancer", from: ev.From, to: ev.To, outcome: "failed", msg: ev.Reason}
				r.moves = append(r.moves, m)
				r.fail(t, "balancer move %s -> %s failed: %s", ev.From, ev.To, ev.Reason)
			}
		}
		after(&r.moves[len(r.moves)-1], len(r.moves))
	}
	balOff()

	// The record's epoch counts the successful moves.
	ok := 0
	for _, m := range r.moves {
		if m.outcome == "succeeded" {
			ok++
		}
	}
	if e := c.proc(t, gpid).Epoch; e != uint64(1+ok) {
		r.fail(t, "record epoch %d after %d successful moves, want %d", e, ok, 1+ok)
	}
	r.check = p.finish(t, c, gpid, work)
	t.Logf("%s: %s", p.name, r.check)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// lastInt is the last whole number of the last line of out that has one.
func lastInt(out string) int {
	f := strings.Fields(out)
	for i := len(f) - 1; i >= 0; i-- {
		if n, err := strconv.Atoi(f[i]); err == nil {
			return n
		}
	}
	return 0
}

// stopAndWait creates work/stop and waits (3 min at most) for the job to end
// by itself with exit 0.
func stopAndWait(t *testing.T, c *testCluster, gpid uint64, work string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(work, "stop"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if r := runCmd(t, c.cmd(ctx, "wait", strconv.FormatUint(gpid, 10))); r.code != 0 {
		t.Fatalf("the job told to stop: ssi wait: %v; its output ends %q", r, tail(c.ok(t, "logs", strconv.FormatUint(gpid, 10)), 500))
	}
}

func soakPrograms() []soakProg {
	counted := func(name string) func(*testing.T, string, string) int {
		return func(t *testing.T, work, _ string) int { return checkCounted(t, filepath.Join(work, name)) }
	}
	logger := soakProg{
		name:     "logger",
		prepare:  func(*testing.T, string) []string { return appendingJob },
		progress: counted("log.txt"),
		minStart: 100, step: 100,
		finish: func(t *testing.T, c *testCluster, gpid uint64, work string) string {
			c.kill(t, gpid)
			return fmt.Sprintf("%d lines, every one once, in order", checkCounted(t, filepath.Join(work, "log.txt")))
		},
	}
	sqlite := func(mode string) soakProg {
		return soakProg{
			name: "sqlite-" + mode,
			prepare: func(t *testing.T, work string) []string {
				prog := filepath.Join(work, "sqlwriter.py")
				if err := os.WriteFile(prog, mustRead(t, "testdata/sqlwriter.py"), 0o644); err != nil {
					t.Fatal(err)
				}
				return []string{soakPython, prog, mode}
			},
			progress: func(_ *testing.T, _, out string) int { return lastInt(out) },
			minStart: 2000, step: 1000,
			finish: func(t *testing.T, c *testCluster, gpid uint64, work string) string {
				last := lastInt(c.ok(t, "logs", strconv.FormatUint(gpid, 10)))
				c.kill(t, gpid)
				rows, bad := checkSQLite(t, soakPython, filepath.Join(work, "rows.db"), last)
				if bad != "" {
					t.Errorf("database after the moves: %s", bad)
					return "BAD: " + bad
				}
				return fmt.Sprintf("%d rows in whole transactions of 500, integrity_check ok", rows)
			},
		}
	}
	locker := func(kind, name string) soakProg {
		return soakProg{
			name: name,
			prepare: func(t *testing.T, work string) []string {
				dst := filepath.Join(work, "locker.py")
				if err := os.WriteFile(dst, mustRead(t, "testdata/locker.py"), 0o644); err != nil {
					t.Fatal(err)
				}
				return []string{soakPython, dst, kind}
			},
			progress: counted("locked.db"),
			minStart: 10, step: 10,
			held: func(t *testing.T, work string) error {
				if !lockHeld(t, filepath.Join(work, "locked.db"), kind) {
					return fmt.Errorf("the job no longer holds its %s lock (a non-blocking attempt from outside got it)", kind)
				}
				return nil
			},
			finish: func(t *testing.T, c *testCluster, gpid uint64, work string) string {
				db := filepath.Join(work, "locked.db")
				held := lockHeld(t, db, kind)
				c.kill(t, gpid)
				if !held {
					t.Errorf("the %s lock is not held at the end", kind)
				}
				return fmt.Sprintf("lock held after every move (non-blocking %s attempt from outside refused); %d lines in order", kind, checkCounted(t, db))
			},
		}
	}
	const numSeed = 19
	numpy := soakProg{
		name: "numpy",
		env:  []string{"OPENBLAS_NUM_THREADS=2"},
		prepare: func(t *testing.T, work string) []string {
			dst := filepath.Join(work, "numjob.py")
			if err := os.WriteFile(dst, mustRead(t, "testdata/numjob.py"), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{soakPython, dst, strconv.Itoa(numSeed)}
		},
		progress: func(_ *testing.T, _, out string) int { return strings.Count(out, "iter ") },
		minStart: 1, step: 2,
		finish: func(t *testing.T, c *testCluster, gpid uint64, work string) string {
			stopAndWait(t, c, gpid, work)
			var k int
			var sum string
			out := c.ok(t, "logs", strconv.FormatUint(gpid, 10))
			if i := strings.LastIndex(out, "done "); i < 0 {
				t.Fatalf("the numpy job printed no result: %q", tail(out, 300))
			} else if _, err := fmt.Sscan(out[i+len("done "):], &k, &sum); err != nil {
				t.Fatalf("the numpy job's result %q: %v", tail(out, 300), err)
			}
			ref := privateWorkdir(t)
			cmd := exec.Command(soakPython, filepath.Join(work, "numjob.py"), strconv.Itoa(numSeed), strconv.Itoa(k))
			cmd.Dir, cmd.Env = ref, []string{"OPENBLAS_NUM_THREADS=2", "PATH=/usr/bin:/bin"}
			b, err := cmd.Output()
			if err != nil {
				t.Fatalf("unmoved run: %v", err)
			}
			want := fmt.Sprintf("done %d %s", k, sum)
			if !strings.Contains(string(b), want+"\n") {
				t.Errorf("moved run printed %q, the unmoved run of the same seed %q", want, tail(string(b), 100))
				return fmt.Sprintf("BAD: %d iterations, checksum differs from the unmoved run's", k)
			}
			return fmt.Sprintf("%d iterations; SHA-256 of the 200 MB result equal to an unmoved run's", k)
		},
	}
	builds := regexp.MustCompile(`(?m)^build \d+$`)
	mk := soakProg{
		name:    "make-j2",
		prepare: func(t *testing.T, work string) []string { writeCProject(t, work); return buildLoop },
		progress: func(t *testing.T, work, out string) int {
			o, _ := filepath.Glob(filepath.Join(work, "*.o"))
			return 1000*len(builds.FindAllString(out, -1)) + len(o)
		},
		minStart: 2, step: 1,
		finish: func(t *testing.T, c *testCluster, gpid uint64, work string) string {
			stopAndWait(t, c, gpid, work)
			out := c.ok(t, "logs", strconv.FormatUint(gpid, 10))
			n := len(builds.FindAllString(out, -1))
			if !strings.Contains(out, fmt.Sprintf("builds %d\n", n)) || n == 0 {
				t.Fatalf("build loop output %q", tail(out, 500))
			}
			ref := privateWorkdir(t)
			writeCProject(t, ref)
			cmd := exec.Command("sh", "-c", "make -s -j2 app && ./app")
			cmd.Dir = ref
			want, err := cmd.Output()
			if err != nil {
				t.Fatalf("unmoved build: %v", err)
			}
			wantBin := fileSum(t, filepath.Join(ref, "app"))
			bad := 0
			for i := range n {
				if got := mustRead(t, filepath.Join(work, fmt.Sprintf("out.%d", i))); string(got) != string(want) {
					t.Errorf("build %d's program printed %q, the unmoved build's %q", i, tail(string(got), 100), tail(string(want), 100))
					bad++
				}
			}
			if got := fileSum(t, filepath.Join(work, "app.last")); got != wantBin {
				t.Errorf("the last moved build's binary (sha256 %s) differs from the unmoved build's (%s)", got, wantBin)
				bad++
			}
			if bad > 0 {
				return fmt.Sprintf("BAD: %d of %d builds differ from an unmoved build", bad, n)
			}
			return fmt.Sprintf("%d complete builds (41 files each); every build's program output, and the last binary (sha256), equal to an unmoved build's", n)
		},
	}
	return []soakProg{logger, sqlite("wal"), sqlite("delete"), locker("posix", "fcntl-lock"), locker("flock", "flock"), numpy, mk}
}

// buildLoop builds the C project of its working directory with make -j2
// again and again until a file named stop appears there; after each build
// it runs the program (out.N) and keeps the binary (app.last).
var buildLoop = []string{"sh", "-c", `i=0
while [ ! -e stop ]; do
	make -s -j2 app || { echo "build $i failed"; exit 1; }
	./app > out.$i || exit 1
	cp app app.last
	echo "build $i"
	i=$((i+1))
	make -s clean
done
echo "builds $i"`}

// writeCProject writes a small C project into dir: 40 generated modules
// (8 functions of 40 mixing statements each, -O2: a compiler's fraction of a
// second each), main.c printing each module's result for a few inputs, and a
// Makefile. The same every time.
func writeCProject(t *testing.T, dir string) {
	t.Helper()
	rng := rand.New(rand.NewSource(19))
	ops := []string{"a = a * %du + (b >> %d);", "b ^= (a << %d) + %du;", "a += b * %du ^ (a >> %d);", "if (a & %du) b += a; else a -= b >> %d;"}
	var objs []string
	var mainC strings.Builder
	const modules, fns = 40, 8
	mainC.WriteString("#include <stdio.h>\n")
	for n := range modules {
		var b strings.Builder
		for k := range fns {
			fmt.Fprintf(&b, "static unsigned g%d(unsigned a, unsigned b) {\n", k)
			for range 40 {
				i := rng.Intn(len(ops))
				c, s := rng.Int31(), 1+rng.Intn(30)
				if i == 1 {
					fmt.Fprintf(&b, "\t"+ops[i]+"\n", s, c)
				} else {
					fmt.Fprintf(&b, "\t"+ops[i]+"\n", c, s)
				}
			}
			b.WriteString("\treturn a ^ b;\n}\n")
		}
		fmt.Fprintf(&b, "unsigned f%02d(unsigned x) {\n\tunsigned a = x;\n", n)
		for k := range fns {
			fmt.Fprintf(&b, "\tfor (unsigned i = 0; i < 1000; i++) a = g%d(a, %du + i);\n", k, n)
		}
		b.WriteString("\treturn a;\n}\n")
		name := fmt.Sprintf("f%02d", n)
		if err := os.WriteFile(filepath.Join(dir, name+".c"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, name+".o")
		fmt.Fprintf(&mainC, "unsigned %s(unsigned);\n", name)
	}
	mainC.WriteString("int main(void) {\n\tfor (unsigned x = 0; x < 3; x++) {\n")
	for n := range modules {
		fmt.Fprintf(&mainC, "\t\tprintf(\"f%02d(%%u) = %%u\\n\", x, f%02d(x));\n", n, n)
	}
	mainC.WriteString("\t}\n\treturn 0;\n}\n")
	objs = append(objs, "main.o")
	mk := "CFLAGS = -O2\nOBJS = " + strings.Join(objs, " ") + "\napp: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\nclean:\n\trm -f $(OBJS) app\n.PHONY: clean\n"
	for name, text := range map[string]string{"main.c": mainC.String(), "Makefile": mk} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	s := sha256.Sum256(mustRead(t, path))
	return hex.EncodeToString(s[:])
}

// TestSoakCommitOutage: etcd paused for 6 minutes at the commit of a
// migration, before the commit is sent and after it was applied (issue 13
// item 4): one copy, where the record says, within seconds of etcd's
// return, without an agent restart.
func TestSoakCommitOutage(t *testing.T) {
	c := need(t)
	t.Run("unanswered", func(t *testing.T) { runCommitOutage(t, c, 6*time.Minute, false) })
	t.Run("answer-lost", func(t *testing.T) { runCommitOutage(t, c, 6*time.Minute, true) })
}

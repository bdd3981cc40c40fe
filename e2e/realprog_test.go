package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/checkpoint"
	"golang.org/x/sys/unix"
)

// Real programs that must move (issue 19): jobs that write files, hold locks.

// appendingJob appends consecutive numbers to log.txt in its working
// directory as fast as it can, opening the file for every line (as
// `cmd >> file` in a shell loop does).
var appendingJob = []string{"sh", "-c", `i=0; while :; do echo $i >> log.txt; i=$((i+1)); done`}

// checkCounted checks that path holds 0, 1, 2, ... with no gap, no repeat,
// and returns how many lines it has.
func checkCounted(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0 // not written yet
	}
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	for i, l := range lines {
		if i == len(lines)-1 && !strings.HasSuffix(string(b), "\n") {
			break // the line being written
		}
		if l != strconv.Itoa(i) {
			t.Fatalf("%s: line %d is %q, want %d (a gap or a repeat: the file was not restored as it was)", path, i+1, l, i)
		}
	}
	return len(lines)
}

// TestFileWriterMoves: a job appending to a file (a logger) moves around the
// cluster while it writes, stop-and-copy and post-copy, and the file holds
// every number once, in order. Before issue 19 every such move was refused:
// the sizes were compared before the job was frozen.
func TestFileWriterMoves(t *testing.T) {
	c := need(t)
	work := privateWorkdir(t)
	gpid := c.detach(t, append([]string{"--node", "node1", "--workdir", work, "--"}, appendingJob...)...)
	defer c.kill(t, gpid)
	log := filepath.Join(work, "log.txt")
	grown := func(min int) {
		eventually(t, 10*time.Second, "log.txt growing", func() error {
			if n := checkCounted(t, log); n < min {
				return fmt.Errorf("%d lines", n)
			}
			return nil
		})
	}
	grown(100)
	for i, to := range []string{"node2", "node3", "node1", "node2"} {
		args := []string{"migrate", strconv.FormatUint(gpid, 10), to}
		if i == 3 {
			args = append(args, "--postcopy")
		}
		r := c.ssi(t, args...)
		if r.code != 0 {
			t.Fatalf("move %d of a job appending to a file: %v", i+1, r)
		}
		t.Logf("move %d: %s", i+1, strings.TrimSpace(r.stdout))
		before := checkCounted(t, log)
		grown(before + 100)
		if p := c.proc(t, gpid); p.Node != to || p.State != "running" {
			t.Fatalf("after move %d: %s on %s", i+1, p.State, p.Node)
		}
	}
	t.Logf("log.txt: %d lines, in order, after 4 moves", checkCounted(t, log))
}

// TestFileChangedWhileFrozen: a file the job holds open really is changed
// by someone else while the job is frozen for its move: the target refuses
// to restore, the message names the file and says what happened, and the job
// runs on its source again.
func TestFileChangedWhileFrozen(t *testing.T) {
	c := need(t)
	gate := filepath.Join(t.TempDir(), "gate")
	c.withFailpoints(t, "node3", "migrate/source/after-transfer=wait("+gate+")")
	defer os.WriteFile(gate, nil, 0o600)
	work := privateWorkdir(t)
	gpid := c.detach(t, "--node", "node3", "--workdir", work, "--", "sh", "-c", `exec 3>>held.txt; i=0; while :; do echo $i >&3; i=$((i+1)); sleep 0.01; done`)
	defer c.kill(t, gpid)
	held := filepath.Join(work, "held.txt")
	waitCounted(t, held, 10)
	r := c.migrateWithIntruder(t, gpid, gate, held)
	t.Logf("migrate: %v", r)
	for _, want := range []string{held, "something other than the job changed it", "a retry may succeed", "running on its source node again"} {
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("migrate of a job whose file changed while it was frozen: %v; want %q", r, want)
		}
	}
	p := c.proc(t, gpid)
	if p.Node != "node3" || p.State != "running" {
		t.Fatalf("after the refused move: %s on %s", p.State, p.Node)
	}
	n := strings.Count(string(mustRead(t, held)), "\n")
	eventually(t, 10*time.Second, "the job writing on its source again", func() error {
		if m := strings.Count(string(mustRead(t, held)), "\n"); m <= n+5 {
			return fmt.Errorf("%d lines, was %d", m, n)
		}
		return nil
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lockerPath is testdata/locker.py, copied where any job can read it.
func lockerPath(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(privateWorkdir(t), "locker.py")
	if err := os.WriteFile(dst, mustRead(t, "testdata/locker.py"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// lockHeld reports whether someone holds a lock of kind on path, by trying
// to take it without waiting (from the test process: another owner).
func lockHeld(t *testing.T, path, kind string) bool {
	t.Helper()
	if kind == "lease" {
		// Opening the leased file for writing would break the lease: read
		// the kernel's table instead.
		return leaseHeld(t, filepath.Join(filepath.Dir(path), "lease.db"))
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	switch kind {
	case "posix":
		err = unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
	case "ofd":
		err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
	case "flock":
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	switch {
	case err == nil:
		return false // we got it: nobody held it (closing f drops it)
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EACCES):
		return true
	}
	t.Fatalf("try %s lock on %s: %v", kind, path, err)
	return false
}

// leaseHeld says whether /proc/locks lists a lease on the file at path.
func leaseHeld(t *testing.T, path string) bool {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	// "1: LEASE  ACTIVE    READ  4242 fe:00:1234 0 EOF": the file is MAJ:MIN:INODE.
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "LEASE" && strings.HasSuffix(f[5], fmt.Sprintf(":%d", st.Ino)) {
			return true
		}
	}
	return false
}

// frozenOf reads the frozen time from ssi migrate's summary line.
func frozenOf(t *testing.T, summary string) time.Duration {
	t.Helper()
	_, rest, ok := strings.Cut(summary, "frozen ")
	if !ok {
		t.Fatalf("no frozen time in %q", summary)
	}
	d, err := time.ParseDuration(strings.TrimRight(strings.Fields(rest)[0], ","))
	if err != nil {
		t.Fatalf("frozen time in %q: %v", summary, err)
	}
	return d
}

// TestLockHolderMoves: a job holding a POSIX, an OFD or a flock lock or a lease on a
// file both nodes see moves, stop-and-copy and post-copy, with no long
// freeze; the lock is held by the job on its new node after each move (an
// outsider cannot take it), and the lines it wrote under the lock are all
// there once. Before issue 19 the restore waited for the frozen source
// copy's lock until its 20 s bound and the move failed.
func TestLockHolderMoves(t *testing.T) {
	c := need(t)
	for _, kind := range []string{"posix", "ofd", "flock", "lease"} {
		t.Run(kind, func(t *testing.T) {
			gpid, db := c.startLocker(t, "node1", kind)
			if !lockHeld(t, db, kind) {
				t.Fatalf("the job does not hold its %s lock before any move", kind)
			}
			stopSampler := startCopySampler(t, c, gpid)
			for i, to := range []string{"node2", "node3", "node1"} {
				args := []string{"migrate", strconv.FormatUint(gpid, 10), to}
				if i == 2 {
					args = append(args, "--postcopy")
				}
				start := time.Now()
				r := c.ssi(t, args...)
				if r.code != 0 {
					t.Fatalf("move %d of a %s lock holder: %v (after %s)", i+1, kind, r, time.Since(start))
				}
				summary := strings.TrimSpace(r.stdout)
				if f := frozenOf(t, summary); f > 3*time.Second {
					t.Fatalf("move %d froze the job %s: %s", i+1, f, summary)
				}
				t.Logf("move %d: %s", i+1, summary)
				if i == 2 && !strings.Contains(summary, "post-copy fell back to a full copy: the job holds file locks") {
					t.Fatalf("a post-copy move of a lock holder does not say it fell back: %s", summary)
				}
				waitCounted(t, db, checkCounted(t, db)+10)
				if !lockHeld(t, db, kind) {
					t.Fatalf("after move %d the job no longer holds its %s lock", i+1, kind)
				}
				if p := c.proc(t, gpid); p.Node != to || p.State != "running" {
					t.Fatalf("after move %d: %s on %s", i+1, p.State, p.Node)
				}
			}
			t.Logf("%s: locked.db holds %d lines in order after 3 moves; %d samples, never two live copies", kind, checkCounted(t, db), stopSampler())
		})
	}
}

// TestLockHolderRollback: the target's restore of a lock holder fails after
// the source copy handed its locks over (it is dead by then): the source
// brings the job back from its images, with its lock, and it goes on writing.
func TestLockHolderRollback(t *testing.T) {
	c := need(t)
	c.withFailpoints(t, "node2", "migrate/target/after-restore=error")
	gpid, db := c.startLocker(t, "node1", "posix")
	pidBefore := c.proc(t, gpid).PID
	defer startCopySampler(t, c, gpid)()
	r := c.ssi(t, "migrate", strconv.FormatUint(gpid, 10), "node2")
	if r.code == 0 || !strings.Contains(r.stderr, "failpoint") || !strings.Contains(r.stderr, "running on its source node again") {
		t.Fatalf("migrate with a failing target restore: %v", r)
	}
	p := c.proc(t, gpid)
	if p.Node != "node1" || p.State != "running" || p.PID == pidBefore || p.PID == 0 {
		t.Fatalf("after the rollback: %s on %s, pid %d (was %d): want running on node1 restored from its images", p.State, p.Node, p.PID, pidBefore)
	}
	waitCounted(t, db, checkCounted(t, db)+10)
	if !lockHeld(t, db, "posix") {
		t.Fatal("the job restored on its source does not hold its lock")
	}
	if left := c.imagesLeft(gpid); len(left) > 0 {
		t.Fatalf("images left: %v", left)
	}
	t.Logf("rolled back from images: %s; the job holds its lock on node1, pid %d -> %d, %d lines in order", strings.TrimSpace(r.stderr), pidBefore, p.PID, checkCounted(t, db))
}

// TestSQLiteWriterMoves: an SQLite writer committing 500-row transactions
// back to back, in WAL and in DELETE journal mode, moves 5 times while it
// writes (stop-and-copy; the last move post-copy, which falls back to a full
// copy while it holds a lock); afterwards the database holds whole
// transactions only and passes PRAGMA integrity_check. Before issue 19, 0 of
// 12 such moves succeeded.
func TestSQLiteWriterMoves(t *testing.T) {
	c := need(t)
	src, err := filepath.Abs("testdata/sqlwriter.py")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"wal", "delete"} {
		t.Run(mode, func(t *testing.T) {
			work := privateWorkdir(t)
			prog := filepath.Join(work, "sqlwriter.py")
			if err := os.WriteFile(prog, mustRead(t, src), 0o644); err != nil {
				t.Fatal(err)
			}
			gpid := c.detach(t, "--node", "node1", "--workdir", work, "--", "python3", prog, mode)
			g := strconv.FormatUint(gpid, 10)
			committed := func() int {
				lines := strings.Fields(c.ok(t, "logs", g))
				if len(lines) == 0 {
					return 0
				}
				n, _ := strconv.Atoi(lines[len(lines)-1])
				return n
			}
			eventually(t, 15*time.Second, "committing", func() error {
				if committed() < 2000 {
					return fmt.Errorf("not yet")
				}
				return nil
			})
			moved := 0
			for i, to := range []string{"node2", "node3", "node1", "node2", "node3"} {
				args := []string{"migrate", g, to}
				if i == 4 {
					args = append(args, "--postcopy")
				}
				r := c.ssi(t, args...)
				if r.code != 0 {
					t.Fatalf("move %d of an SQLite writer (%s): %v", i+1, mode, r)
				}
				moved++
				summary := strings.TrimSpace(r.stdout)
				if f := frozenOf(t, summary); f > 3*time.Second {
					t.Fatalf("move %d froze the writer %s", i+1, f)
				}
				t.Logf("move %d: %s", i+1, summary)
				n := committed()
				eventually(t, 15*time.Second, "committing after the move", func() error {
					if committed() < n+1000 {
						return fmt.Errorf("%d rows, was %d", committed(), n)
					}
					return nil
				})
			}
			last := committed()
			c.kill(t, gpid)
			rows, out := checkSQLite(t, "python3", filepath.Join(work, "rows.db"), last)
			if out != "" {
				t.Fatalf("database after %d moves: %s", moved, out)
			}
			t.Logf("%s: %d moves, %d rows in whole transactions, integrity_check ok", mode, moved, rows)
		})
	}
}

// TestJobEnvironment: a job's environment is what the user passed plus ssi's
// own variables, who the job is among them, nothing of the agent's (which
// runs with GODEBUG, SSI_*, and the harness's own variables); a user's
// --env cannot say who the job is.
func TestJobEnvironment(t *testing.T) {
	c := need(t)
	if r := c.ssi(t, "run", "--env", "SSI_USER=mallory", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "ssi sets SSI_USER itself") {
		t.Fatalf("--env SSI_USER=mallory: %v, want refused", r)
	}
	out := c.ok(t, "run", "--node", "node2", "--env", "FOO=bar", "--env", "PATH=/usr/bin:/bin", "--", "env")
	for _, v := range []string{"SSI_USER=root\n", "SSI_NODE=node2\n", "SSI_GPID="} {
		if !strings.Contains(out, v) {
			t.Errorf("the job's environment lacks %q: %q", v, out)
		}
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, _, _ := strings.Cut(l, "=")
		got = append(got, k)
	}
	want := map[string]bool{"SSI_GPID": true, "SSI_USER": true, "SSI_NODE": true, "SSI_CONFIG": true, "PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "GODEBUG": true, "FOO": true,
		"SSI_NATS_URL": true, "SSI_NATS_INBOX": true} // the node's broker (agent/msg.go)
	seen := map[string]bool{}
	for _, k := range got {
		if !want[k] {
			t.Errorf("the job's environment has %s, which neither the user nor ssi set: %q", k, out)
		}
		seen[k] = true
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("the job's environment lacks %s: %q", k, out)
		}
	}
	if !strings.Contains(out, "FOO=bar\n") || !strings.Contains(out, "GODEBUG=containermaxprocs=0,updatemaxprocs=0\n") {
		t.Errorf("environment: %q", out)
	}
}

// TestLockHolderSourceCrash: the source agent dies after its lock holder
// handed its locks over and the target restored it, before the commit. Its
// restarted agent rolls the migration back: the target discards its copy and
// the job is restored on the source from the images its dump left in memory.
func TestLockHolderSourceCrash(t *testing.T) {
	c := need(t)
	ctx := context.Background()
	c.withFailpoints(t, "node3", "migrate/source/after-restore=exit")
	gpid, db := c.startLocker(t, "node3", "flock")
	pidBefore := c.proc(t, gpid).PID
	defer startCopySampler(t, c, gpid)()
	mctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	mig := c.cmd(mctx, "migrate", strconv.FormatUint(gpid, 10), "node2")
	mig.Env = append(mig.Env, "SSI_ENDPOINT="+c.Nodes[0].API())
	r := runCmd(t, mig)
	t.Logf("migrate with the source crashing after the target's restore: %v", r)
	eventually(t, 10*time.Second, "source agent gone at its failpoint", func() error {
		if c.agentAlive("node3") {
			return fmt.Errorf("still alive")
		}
		return nil
	})
	c.startAgent(t, "node3")
	eventually(t, 20*time.Second, "job back on node3 from its images", func() error {
		p := c.proc(t, gpid)
		if p.Node != "node3" || p.State != "running" || p.PID == pidBefore {
			return fmt.Errorf("%s on %s pid %d (was %d)", p.State, p.Node, p.PID, pidBefore)
		}
		return nil
	})
	waitCounted(t, db, checkCounted(t, db)+10)
	if !lockHeld(t, db, "flock") {
		t.Fatal("the restored job does not hold its lock")
	}
	eventually(t, 15*time.Second, "no copy on the target", func() error {
		if jobCgroupOn(t, c, "node2", gpid) {
			return fmt.Errorf("node2 still has a cgroup of gpid %d", gpid)
		}
		return nil
	})
	t.Logf("restored on node3 from its images after the crash: pid %d -> %d, %d lines in order", pidBefore, c.proc(t, gpid).PID, checkCounted(t, db))
}

// withFailpoints restarts node's agent with SSI_FAILPOINTS=spec for the rest of
// the test; a normal agent is back at its end (also one that died at a
// failpoint).
func (c *testCluster) withFailpoints(t *testing.T, node, spec string) {
	t.Helper()
	c.stopAgent(t, node, syscall.SIGTERM)
	if err := c.StartAgentEnv(context.Background(), node, []string{"SSI_FAILPOINTS=" + spec}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.agentAlive(node) {
			c.stopAgent(t, node, syscall.SIGTERM)
		}
		c.startAgent(t, node)
	})
}

// startLocker starts testdata/locker.py holding a lock of kind on node and
// waits until it writes under it; it returns the job and its locked file.
func (c *testCluster) startLocker(t *testing.T, node, kind string) (uint64, string) {
	t.Helper()
	work := privateWorkdir(t)
	gpid := c.detach(t, "--node", node, "--workdir", work, "--", "python3", lockerPath(t), kind)
	t.Cleanup(func() { c.kill(t, gpid) })
	db := filepath.Join(work, "locked.db")
	waitCounted(t, db, 10)
	return gpid, db
}

// waitCounted waits until path (checkCounted) holds at least n lines.
func waitCounted(t *testing.T, path string, n int) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("%s reaching %d lines", filepath.Base(path), n), func() error {
		if got := checkCounted(t, path); got < n {
			return fmt.Errorf("%d lines", got)
		}
		return nil
	})
}

// TestLockHolderFileChanged: a lock holder's file is changed by someone else
// while the job is frozen for its move: the target refuses before the source
// copy hands its locks over, so the very same process runs on (no restore
// from images on either side).
func TestLockHolderFileChanged(t *testing.T) {
	c := need(t)
	gate := filepath.Join(t.TempDir(), "gate")
	c.withFailpoints(t, "node3", "migrate/source/after-transfer=wait("+gate+")")
	defer os.WriteFile(gate, nil, 0o600)
	gpid, db := c.startLocker(t, "node3", "posix")
	pidBefore := c.proc(t, gpid).PID
	r := c.migrateWithIntruder(t, gpid, gate, db)
	if r.code == 0 || !strings.Contains(r.stderr, "something other than the job changed it") || !strings.Contains(r.stderr, "running on its source node again") {
		t.Fatalf("migrate of a lock holder whose file changed while frozen: %v", r)
	}
	p := c.proc(t, gpid)
	if p.Node != "node3" || p.State != "running" || p.PID != pidBefore {
		t.Fatalf("after the refusal: %s on %s, pid %d (was %d): want the same process running on node3", p.State, p.Node, p.PID, pidBefore)
	}
	if !lockHeld(t, db, "posix") {
		t.Fatal("the job no longer holds its lock")
	}
	t.Logf("refused before the hand-over: %s", strings.TrimSpace(r.stderr))
}

// TestLockHolderFileUnseen: the file a lock holder locks is not where the
// target looks (renamed away while the job is frozen, as a file on a disk
// only the source has would be): the target refuses before the hand-over,
// naming the file, and the same process runs on, its lock held.
func TestLockHolderFileUnseen(t *testing.T) {
	c := need(t)
	gate := filepath.Join(t.TempDir(), "gate")
	c.withFailpoints(t, "node3", "migrate/source/after-transfer=wait("+gate+")")
	defer os.WriteFile(gate, nil, 0o600)
	gpid, db := c.startLocker(t, "node3", "posix")
	pidBefore := c.proc(t, gpid).PID
	away := db + ".away"
	r := c.migrateWhileFrozen(t, gpid, gate, func() {
		if err := os.Rename(db, away); err != nil {
			t.Fatal(err)
		}
	})
	if r.code == 0 || !strings.Contains(r.stderr, "node node2 lacks "+db) || !strings.Contains(r.stderr, "running on its source node again") {
		t.Fatalf("migrate of a lock holder whose file the target cannot see: %v", r)
	}
	p := c.proc(t, gpid)
	if p.Node != "node3" || p.State != "running" || p.PID != pidBefore {
		t.Fatalf("after the refusal: %s on %s, pid %d (was %d): want the same process running on node3", p.State, p.Node, p.PID, pidBefore)
	}
	if !lockHeld(t, away, "posix") {
		t.Fatal("the job no longer holds its lock")
	}
	t.Logf("refused before the hand-over: %s", strings.TrimSpace(r.stderr))
}

// migrateWithIntruder moves gpid to node2 while its source (whose agent waits
// at gate after the transfer: withFailpoints) holds it frozen, appends a line
// to path meanwhile, as someone else on the machine might, and returns what
// ssi migrate did.
func (c *testCluster) migrateWithIntruder(t *testing.T, gpid uint64, gate, path string) result {
	t.Helper()
	return c.migrateWhileFrozen(t, gpid, gate, func() {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.WriteString("an intruder's line\n")
		f.Close()
	})
}

// migrateWhileFrozen moves gpid to node2 while its source (held at gate
// after the transfer: withFailpoints) holds it frozen, runs intrude
// meanwhile, and returns what ssi migrate did.
func (c *testCluster) migrateWhileFrozen(t *testing.T, gpid uint64, gate string, intrude func()) result {
	t.Helper()
	mctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mig := c.cmd(mctx, "migrate", strconv.FormatUint(gpid, 10), "node2")
	mig.Env = append(mig.Env, "SSI_ENDPOINT="+c.Nodes[0].API())
	done := make(chan result, 1)
	go func() { done <- runCmd(t, mig) }()
	eventually(t, 30*time.Second, "source held after the transfer", func() error {
		_, err := os.Stat(gate + ".reached")
		return err
	})
	intrude()
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return <-done
}

// checkSQLite checks the database testdata/sqlwriter.py wrote, after its
// writer printed last as its committed count: PRAGMA integrity_check is ok,
// it holds whole 500-row transactions only, no fewer rows than last, and row
// ids without holes. It returns the row count, and what is wrong ("" when
// nothing is).
func checkSQLite(t *testing.T, python, db string, last int) (int, string) {
	t.Helper()
	out, err := exec.Command(python, "-c", `import sqlite3,sys
db=sqlite3.connect(sys.argv[1])
print(db.execute("PRAGMA integrity_check").fetchone()[0], db.execute("SELECT count(*) FROM t").fetchone()[0], db.execute("SELECT max(i) FROM t").fetchone()[0])`, db).CombinedOutput()
	if err != nil {
		t.Fatalf("check the database: %v: %s", err, out)
	}
	var check string
	var rows, maxID int
	if _, err := fmt.Sscan(string(out), &check, &rows, &maxID); err != nil || check != "ok" || rows%500 != 0 || rows < last || rows != maxID {
		return rows, fmt.Sprintf("%q (integrity_check, rows, max id; last committed count printed %d)", strings.TrimSpace(string(out)), last)
	}
	return rows, ""
}

// TestLockTakenDuringPostCopyDump: a job holds no lock when its post-copy
// move checks, and takes one before the lazy dump freezes it: the move falls
// back to a full copy (the lazy dump undone) instead of failing, and the job
// holds its lock on the target.
func TestLockTakenDuringPostCopyDump(t *testing.T) {
	c := need(t)
	gate := filepath.Join(t.TempDir(), "gate")
	c.withFailpoints(t, "node3", "migrate/source/before-lazy-dump=wait("+gate+")")
	defer os.WriteFile(gate, nil, 0o600)
	work := privateWorkdir(t)
	gpid := c.detach(t, "--node", "node3", "--workdir", work, "--", "python3", lockerPath(t), "posix", "late")
	defer c.kill(t, gpid)
	db := filepath.Join(work, "locked.db")
	waitCounted(t, db, 10)
	if lockHeld(t, db, "posix") {
		t.Fatal("the job holds its lock before it was told to take it")
	}
	mctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mig := c.cmd(mctx, "migrate", "--postcopy", strconv.FormatUint(gpid, 10), "node2")
	mig.Env = append(mig.Env, "SSI_ENDPOINT="+c.Nodes[0].API())
	done := make(chan result, 1)
	go func() { done <- runCmd(t, mig) }()
	eventually(t, 30*time.Second, "source held before the lazy dump", func() error {
		_, err := os.Stat(gate + ".reached")
		return err
	})
	if err := os.WriteFile(filepath.Join(work, "lock-now"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the job holding its lock", func() error {
		if !lockHeld(t, db, "posix") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code != 0 || !strings.Contains(r.stdout, "post-copy fell back to a full copy: the job holds file locks") {
		t.Fatalf("post-copy move of a job that took a lock during its dump: %v", r)
	}
	if p := c.proc(t, gpid); p.Node != "node2" || p.State != "running" {
		t.Fatalf("after the move: %s on %s", p.State, p.Node)
	}
	waitCounted(t, db, checkCounted(t, db)+10)
	if !lockHeld(t, db, "posix") {
		t.Fatal("the job does not hold its lock on the target")
	}
	t.Logf("fell back: %s", strings.TrimSpace(r.stdout))
}

// TestRestoreBlockedByLockExplained: someone else takes a lock holder's lock
// while the job is in flight (a process queued for it gets it the moment the
// source copy hands its locks over), so the target's restore waits for it.
// The move fails within its bound, saying which lock, on which file, held by
// which process, not "context deadline exceeded"; once that process lets go,
// the job runs on its source again, restored from its images, with its lock.
func TestRestoreBlockedByLockExplained(t *testing.T) {
	c := need(t)
	gpid, db := c.startLocker(t, "node1", "posix")
	const hold = 30 * time.Second
	q := exec.Command("python3", "-c", `import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.lockf(f, fcntl.LOCK_EX)
time.sleep(float(sys.argv[2]))`, db, strconv.Itoa(int(hold.Seconds())))
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	qDone := make(chan error, 1)
	go func() { qDone <- q.Wait() }()
	t.Cleanup(func() { _ = q.Process.Kill(); <-qDone })
	eventually(t, 10*time.Second, "the intruder queued for the job's lock", func() error {
		b, err := os.ReadFile("/proc/locks")
		if err != nil {
			return err
		}
		for _, l := range checkpoint.ParseLocks(string(b)) {
			if l.Waiting && l.PID == q.Process.Pid {
				return nil
			}
		}
		return errors.New("not queued yet")
	})
	start := time.Now()
	r := c.ssi(t, "migrate", strconv.FormatUint(gpid, 10), "node2")
	took := time.Since(start)
	want := fmt.Sprintf("waiting for a write POSIX lock on %s held by process %d (python3)", db, q.Process.Pid)
	if r.code == 0 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "context deadline exceeded") {
		t.Fatalf("migrate while another process took the job's lock (after %s): %v; want a failure saying %q", took, r, want)
	}
	if !strings.Contains(r.stderr, "running on its source node again") {
		t.Fatalf("after the failed restore the job is not said to run on its source again: %v", r)
	}
	p := c.proc(t, gpid)
	if p.Node != "node1" || p.State != "running" {
		t.Fatalf("after the failed move: %s on %s", p.State, p.Node)
	}
	waitCounted(t, db, checkCounted(t, db)+10)
	if !lockHeld(t, db, "posix") {
		t.Fatal("the job restored on its source does not hold its lock")
	}
	t.Logf("after %s: %s", took.Round(100*time.Millisecond), strings.TrimSpace(r.stderr))
}

// TestMoveAfterShimUpgrade: the job's init binary (ssi-init) is replaced on
// disk while the job runs (an upgrade of ssi): the init still maps the old,
// now deleted, binary. CRIU refused such a job ("Can't dump ghost file ... increase
// limit"); it moves, the deleted binary carried in its images.
func TestMoveAfterShimUpgrade(t *testing.T) {
	c := need(t)
	work := privateWorkdir(t)
	gpid := c.detach(t, append([]string{"--node", "node1", "--workdir", work, "--"}, appendingJob...)...)
	t.Cleanup(func() { c.kill(t, gpid) })
	waitCounted(t, filepath.Join(work, "log.txt"), 10)
	init := c.proc(t, gpid).InitPID
	shimPath, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", init)) // ssi-init (or ssi-shim's Go init)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(shimPath)
	if err != nil {
		t.Fatal(err)
	}
	tmp := shimPath + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, shimPath); err != nil { // a new inode: the old one is deleted
		t.Fatal(err)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", init)); !strings.HasSuffix(exe, " (deleted)") {
		t.Fatalf("the job's init runs %q, want the replaced (deleted) %s", exe, shimPath)
	}
	for _, to := range []string{"node2", "node3"} {
		if r := c.ssi(t, "migrate", strconv.FormatUint(gpid, 10), to); r.code != 0 {
			t.Fatalf("migrate to %s after ssi-shim was replaced: %v", to, r)
		}
		if p := c.proc(t, gpid); p.Node != to || p.State != "running" {
			t.Fatalf("after the move to %s: %s on %s", to, p.State, p.Node)
		}
		waitCounted(t, filepath.Join(work, "log.txt"), checkCounted(t, filepath.Join(work, "log.txt"))+10)
	}
}

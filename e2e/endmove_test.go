package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// The end of a job racing its migration (issue 16). A job may end while it is
// being moved: by `ssi kill` (any signal), by a kill from outside ssi, or by
// its own exit, at any step of the move. Whatever the step, its record and
// the kernel must agree afterwards: an ended job is recorded once, with its
// real status, and never runs again; a job still running is recorded where it
// runs; `ssi wait` returns; `ssi migrate` says what happened; a signal sent
// during the move is delivered where the job ends up.

// endWay is one way a job ends during a move.
type endWay string

const (
	endByKill    endWay = "ssi-kill-KILL"
	endByTerm    endWay = "ssi-kill-TERM"
	endFromHost  endWay = "host-kill-9"
	endByItself  endWay = "own-exit-7"
	endTrigger          = "stop-now" // the job exits 7 once this file exists in its workdir
	sourceWaitSt        = "migrate/source/"
)

// endingJob is a job that ticks until endTrigger appears in its working
// directory, then exits with status 7.
var endingJob = []string{"sh", "-c", `i=0; while [ ! -e ` + endTrigger + ` ]; do echo $i; i=$((i+1)); sleep 0.02; done; exit 7`}

// moveOp is what moves (or saves) the job while it ends.
type moveOp string

const (
	opMigrate    moveOp = "migrate"
	opPostCopy   moveOp = "postcopy"
	opCheckpoint moveOp = "checkpoint" // ssi checkpoint --leave-running
)

// TestEndDuringMigration holds the source agent at every step boundary of a
// migration (failpoint wait), ends the job one of four ways there, lets the
// migration go on, and checks the outcome. Stop-and-copy at every step;
// post-copy at the steps where its CRIU holds the job; `ssi checkpoint
// --leave-running` at both of its steps that hold the job.
func TestEndDuringMigration(t *testing.T) {
	c := need(t)
	gates := t.TempDir()
	migSteps := []string{"after-claim", "after-prepare", "after-dump", "after-transfer", "after-restore", "after-commit", "after-resume"}
	var steps, spec []string // failpoint names, and their wait actions
	for _, s := range migSteps {
		steps = append(steps, sourceWaitSt+s)
	}
	steps = append(steps, "checkpoint/after-claim", "checkpoint/after-dump")
	for _, s := range steps {
		spec = append(spec, s+"=wait("+filepath.Join(gates, gateName(s))+")")
	}
	c.withFailpoints(t, "node3", strings.Join(spec, ";"))
	ways := []endWay{endByKill, endByTerm, endFromHost, endByItself}
	cases, passed := 0, 0
	for _, op := range []moveOp{opMigrate, opPostCopy, opCheckpoint} {
		var at []string
		switch op {
		case opMigrate:
			at = steps[:len(migSteps)]
		case opPostCopy:
			at = []string{sourceWaitSt + "after-dump", sourceWaitSt + "after-restore", sourceWaitSt + "after-commit"}
		case opCheckpoint:
			at = steps[len(migSteps):]
		}
		for _, step := range at {
			for _, way := range ways {
				name := string(op) + "/" + strings.TrimPrefix(step, sourceWaitSt)
				name = strings.ReplaceAll(name, "checkpoint/checkpoint/", "checkpoint/") + "/" + string(way)
				cases++
				if t.Run(name, func(t *testing.T) { endDuringMove(t, c, gates, steps, step, way, op) }) {
					passed++
				}
			}
		}
	}
	t.Logf("end-during-migration cases: %d, passed: %d", cases, passed)
}

// gateName is the gate file of failpoint point.
func gateName(point string) string { return strings.ReplaceAll(point, "/", "_") }

// dumped reports whether the source copy is already frozen at step (and so
// cannot end by itself, or be killed from outside for good: its images are
// taken).
func dumped(step string) bool {
	return !strings.HasSuffix(step, "/after-claim") && !strings.HasSuffix(step, "/after-prepare")
}

func endDuringMove(t *testing.T, c *testCluster, gates string, steps []string, step string, way endWay, op moveOp) {
	// Every gate open but this step's.
	for _, s := range steps {
		f := filepath.Join(gates, gateName(s))
		_ = os.Remove(f + ".reached")
		if s == step {
			_ = os.Remove(f)
		} else if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	gate := filepath.Join(gates, gateName(step))
	opened := false
	open := func() {
		if !opened {
			opened = true
			if err := os.WriteFile(gate, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer open()

	work := privateWorkdir(t)
	gpid := c.detach(t, append([]string{"--node", "node3", "--workdir", work, "--"}, endingJob...)...)
	g := strconv.FormatUint(gpid, 10)
	eventually(t, 10*time.Second, "job ticking", func() error {
		if !strings.Contains(c.ok(t, "logs", g), "\n3\n") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	mainPID := c.proc(t, gpid).PID
	// Never two live copies, at any moment of the move.
	defer startCopySampler(t, c, gpid)()

	mctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"migrate", g, "node2"}
	switch op {
	case opPostCopy:
		args = append(args, "--postcopy")
	case opCheckpoint:
		args = []string{"checkpoint", g, "--leave-running", "--name", "endmove-" + g}
		defer c.ssi(t, "checkpoints", "rm", "endmove-"+g)
	}
	mig := c.cmd(mctx, args...)
	mig.Env = append(mig.Env, "SSI_ENDPOINT="+c.Nodes[0].API())
	var mout, merr strings.Builder
	mig.Stdout, mig.Stderr = &mout, &merr
	if err := mig.Start(); err != nil {
		t.Fatal(err)
	}
	migDone := make(chan error, 1)
	go func() { migDone <- mig.Wait() }()
	eventually(t, 30*time.Second, "source held at "+step, func() error {
		if _, err := os.Stat(gate + ".reached"); err != nil {
			return err
		}
		return nil
	})

	want := 137
	expectRunning := false // the job outlives the way it was ended
	var killDone chan result
	switch way {
	case endByKill, endByTerm:
		sig := "KILL"
		if way == endByTerm {
			sig, want = "TERM", 143
		}
		killDone = make(chan result, 1)
		go func() {
			kctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			killDone <- runCmd(t, c.cmd(kctx, "kill", "-s", sig, g))
		}()
		if !strings.HasSuffix(step, "/after-commit") && !strings.HasSuffix(step, "/after-resume") {
			// Held off while the source holds the job: not sent, not dropped.
			select {
			case r := <-killDone:
				t.Fatalf("ssi kill returned while the job was held for its move: %v", r)
			case <-time.After(300 * time.Millisecond):
			}
			if p := c.proc(t, gpid); p.State.Ended() {
				t.Fatalf("the job ended while its signal should be held off: %+v", p.Proc)
			}
		}
	case endFromHost:
		if err := syscall.Kill(mainPID, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", mainPID, err)
		}
		// A frozen copy whose images are taken is not the job any more: the
		// move goes on, and the job runs where the record says. (A
		// checkpoint left running resumes that very copy, which then ends.)
		expectRunning = dumped(step) && op != opCheckpoint
	case endByItself:
		if err := os.WriteFile(filepath.Join(work, endTrigger), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		want = 7
	}
	if (way == endFromHost || way == endByItself) && !dumped(step) {
		// The job really ends while the migration is held: its end is
		// recorded before the migration goes on.
		eventually(t, 15*time.Second, "end recorded during the move", func() error {
			if p := c.proc(t, gpid); !p.State.Ended() {
				return fmt.Errorf("record says %s", p.State)
			}
			return nil
		})
	}
	open()
	var merrv error
	select {
	case merrv = <-migDone:
	case <-time.After(90 * time.Second):
		t.Fatalf("ssi migrate did not return within 90 s of the gate opening; stdout %q stderr %q", mout.String(), merr.String())
	}
	t.Logf("%s: %v, stdout %q, stderr %q", op, merrv, mout.String(), merr.String())
	if killDone != nil {
		if r := <-killDone; r.code != 0 {
			t.Fatalf("ssi kill: %v", r)
		}
	}
	if strings.Contains(merr.String(), "running on its source node again") {
		if p := c.proc(t, gpid); p.State.Ended() || p.Node != "node3" {
			t.Fatalf("migrate said the job runs on its source again, but the record says %s on %s", p.State, p.Node)
		}
	}
	if (way == endFromHost || way == endByItself) && !dumped(step) {
		during := "ended during the migration"
		if op == opCheckpoint {
			during = "ended during the checkpoint"
		}
		if merrv == nil || !strings.Contains(merr.String(), during) || !strings.Contains(merr.String(), fmt.Sprintf("status %d", want)) {
			t.Fatalf("%s of a job that ended during it: %v, stderr %q; want it to say it %s, with status %d", op, merrv, merr.String(), during, want)
		}
	}
	if expectRunning {
		p := c.proc(t, gpid)
		if p.State.Ended() {
			t.Fatalf("the job's copy that was moved on ended: %+v", p.Proc)
		}
		eventually(t, 10*time.Second, "job running where its record says", func() error {
			p := c.proc(t, gpid)
			if !jobCgroupOn(t, c, p.Node, gpid) {
				return fmt.Errorf("record says %s on %s, which has no cgroup of it", p.State, p.Node)
			}
			return nil
		})
		c.ok(t, "kill", "-s", "KILL", g)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	r := runCmd(t, c.cmd(wctx, "wait", g))
	if r.code != want {
		t.Fatalf("ssi wait: %v, want exit %d; record %+v", r, want, c.proc(t, gpid).Proc)
	}
	p := c.proc(t, gpid)
	if p.State != pidtable.Exited || p.ExitCode == nil || *p.ExitCode != want || p.Migration != nil {
		t.Fatalf("record after the end: %+v", p.Proc)
	}
	eventually(t, 15*time.Second, "no copy left on any node", func() error {
		for _, n := range c.Nodes {
			if jobCgroupOn(t, c, n.Name, gpid) {
				return fmt.Errorf("a cgroup of gpid %d is left on %s", gpid, n.Name)
			}
		}
		if left := c.imagesLeft(gpid); len(left) > 0 {
			return fmt.Errorf("images left: %v", left)
		}
		return nil
	})
}

// jobCgroupOn reports whether node holds a live job cgroup of gpid.
func jobCgroupOn(t *testing.T, c *testCluster, node string, gpid uint64) bool {
	for _, g := range liveJobCgroups(t, c.CgroupParent(), node) {
		if g == gpid {
			return true
		}
	}
	return false
}

// etcdStore opens the cluster's etcd with node1's credentials, for tests that
// plant records as a broken agent might have left them.
func (c *testCluster) etcdStore(t *testing.T) *pidtable.Store {
	t.Helper()
	creds, err := pki.LoadNode(filepath.Join(c.Nodes[0].DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	ec, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + net.JoinHostPort(c.Nodes[0].IP, "2379")}, TLS: creds.ClientTLS(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ec.Close() })
	return pidtable.New(ec)
}

// TestPhantomHealed plants a record that says a job runs on node2 where no
// process of it exists (what issue 16's races left behind): node2's phantom
// check records it lost within seconds, `ssi wait` returns, and an event says
// why.
func TestPhantomHealed(t *testing.T) {
	c := need(t)
	store := c.etcdStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now().UTC()
	p, err := store.Create(ctx, pidtable.Proc{Node: "node2", State: pidtable.Running, User: "root", Argv: []string{"phantom"}, Started: now, Arrived: now, PID: 1 << 22})
	if err != nil {
		t.Fatal(err)
	}
	g := strconv.FormatUint(p.GPID, 10)
	start := time.Now()
	r := runCmd(t, c.cmd(ctx, "wait", g))
	took := time.Since(start)
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "lost") {
		t.Fatalf("ssi wait of a phantom: %v", r)
	}
	if took > 3*healPeriod+2*time.Second {
		t.Fatalf("the phantom lived %s", took)
	}
	got := c.proc(t, p.GPID)
	if got.State != pidtable.Lost || !strings.Contains(got.Error, "no process of the job exists on node node2") {
		t.Fatalf("healed record: %+v", got.Proc)
	}
	found := false
	for _, ev := range c.events(t, p.GPID) {
		found = found || ev.Kind == pidtable.EventLost && ev.Node == "node2"
	}
	if !found {
		t.Fatalf("no lost event for gpid %d: %+v", p.GPID, c.events(t, p.GPID))
	}
	t.Logf("phantom gpid %d recorded lost after %s: %s", p.GPID, took.Round(time.Millisecond), got.Error)
}

// healPeriod is the agent's phantom check period (agent.healEvery).
const healPeriod = 2 * time.Second

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/localcluster"
	"github.com/ssi-cluster/ssi/pidtable"
)

// TestMigrationFaults crashes the source or the target agent at every step of a
// migration (and makes target steps fail), restarts it, and checks the
// invariant: the job never runs on two nodes at once (sampled at 50 Hz from
// before the migration until the job has settled and ticked on), and once
// settled it runs exactly once, on the node its record names, not stopped,
// its output without gap or repetition; nothing is left behind. The fault must
// have fired (the agent's log says so), and the CLI must say what happened: a
// failure before the commit, success after it.
func TestMigrationFaults(t *testing.T) {
	c := need(t)
	var faults []fault
	for _, p := range []string{"after-claim", "after-prepare", "after-dump", "after-transfer", "after-restore", "after-commit", "after-resume"} {
		faults = append(faults, fault{"node3", "migrate/source/" + p, "exit", false})
	}
	for _, p := range []string{"after-prepare", "after-images", "after-restore"} {
		faults = append(faults, fault{"node2", "migrate/target/" + p, "exit", false})
		faults = append(faults, fault{"node2", "migrate/target/" + p, "error", false})
	}
	// Post-copy: the source's CRIU still holds the tree when a fault hits.
	for _, f := range []fault{
		{"node3", "migrate/source/after-dump", "exit", true},
		{"node3", "migrate/source/after-restore", "exit", true},
		{"node3", "migrate/source/after-commit", "exit", true},
		{"node2", "migrate/target/after-images", "exit", true},
		{"node2", "migrate/target/after-restore", "error", true},
		{"node2", "migrate/target/after-restore", "exit", true},
	} {
		faults = append(faults, f)
	}
	passed := 0
	for _, f := range faults {
		name := strings.ReplaceAll(f.point, "/", "_") + "=" + f.action
		if f.postcopy {
			name += "/postcopy"
		}
		t.Run(name, func(t *testing.T) {
			runFault(t, c, f)
			if !t.Failed() {
				passed++
			}
		})
	}
	t.Logf("fault cases run: %d, passed: %d", len(faults), passed)
}

// fault is one case of TestMigrationFaults: the agent of node hits point
// (failpoint name) and does action there (exit or error).
type fault struct {
	node, point, action string
	postcopy            bool
}

// committed reports whether the fault hits after the migration committed
// (the record names the target): then the job must end up on the target and
// the CLI report success; before, on the source, and the CLI a failure.
func (f fault) committed() bool {
	return f.point == "migrate/source/after-commit" || f.point == "migrate/source/after-resume"
}

// fired is what the failpoint writes to its agent's log when it fires.
func (f fault) fired() string {
	if f.action == "exit" {
		return "failpoint " + f.point + ": exiting"
	}
	return "failpoint " + f.point + ": returning an error"
}

func runFault(t *testing.T, c *testCluster, f fault) {
	ctx := context.Background()
	faulty, spec := f.node, f.point+"="+f.action
	c.stopAgent(t, faulty, syscall.SIGTERM)
	if err := c.StartAgentEnv(ctx, faulty, []string{"SSI_FAILPOINTS=" + spec}); err != nil {
		t.Fatal(err)
	}
	agentOf := func() *localcluster.NodeState {
		for i := range c.Nodes {
			if c.Nodes[i].Name == faulty {
				return &c.Nodes[i]
			}
		}
		t.Fatalf("no node %s", faulty)
		return nil
	}
	// Back to a normal agent at the end, whatever happened.
	defer func() {
		if agentOf().Agent.Alive() {
			c.stopAgent(t, faulty, syscall.SIGTERM)
		}
		c.startAgent(t, faulty)
	}()
	logPath := filepath.Join(agentOf().DataDir, "agent.log")
	logStart := fileSize(t, logPath)

	// Source node3, target node2; node1 (which runs etcd) is never crashed.
	gpid := c.detach(t, "--node", "node3", "--", "python3", counterPath(t), "8", "0.02")
	defer c.kill(t, gpid)
	eventually(t, 10*time.Second, "job ticking", func() error {
		if !strings.Contains(c.ok(t, "logs", strconv.FormatUint(gpid, 10)), "tick 5 ") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	stopSampler := startCopySampler(t, c, gpid)
	// Ask node1, which no fault touches; restart the faulty agent as soon as its
	// failpoint has killed it, as an operator (or systemd) would.
	mctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	args := []string{"migrate", strconv.FormatUint(gpid, 10), "node2"}
	if f.postcopy {
		args = append(args, "--postcopy")
	}
	mig := c.cmd(mctx, args...)
	mig.Env = append(mig.Env, "SSI_ENDPOINT="+c.Nodes[0].API())
	var out, errb strings.Builder
	mig.Stdout, mig.Stderr = &out, &errb
	started := time.Now()
	if err := mig.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mig.Wait() }()
	crashed := false
	for !crashed {
		select {
		case err := <-done:
			done <- err
			crashed = true // or finished: either way, go on
		case <-time.After(20 * time.Millisecond):
			crashed = !agentOf().Agent.Alive()
		}
	}
	if f.action == "exit" {
		// The migrate command can see the agent's sockets close before its
		// process is gone: wait for it to be gone, then restart it.
		eventually(t, 10*time.Second, "faulty agent exited at its failpoint", func() error {
			if agentOf().Agent.Alive() {
				return fmt.Errorf("agent of %s still alive", faulty)
			}
			return nil
		})
	}
	if !agentOf().Agent.Alive() {
		t.Logf("%s: restarting the agent of %s", time.Now().Format("05.000"), faulty)
		c.startAgent(t, faulty)
		t.Logf("%s: agent of %s serves", time.Now().Format("05.000"), faulty)
	}
	err := <-done
	t.Logf("migrate with %s on %s (started %s): %v, stdout %q, stderr %q", spec, faulty, started.Format("05.000"), err, out.String(), errb.String())

	// The fault fired: a case whose failpoint is never reached tests nothing.
	if log := readFrom(t, logPath, logStart); !strings.Contains(log, f.fired()) {
		t.Errorf("%s never fired: %q not in the log of %s's agent since the case began", spec, f.fired(), faulty)
	}
	// The CLI says what happened.
	switch {
	case f.committed() && err != nil:
		t.Errorf("fault %s after the commit: the migration happened, but ssi migrate failed: %v, stderr %q", spec, err, errb.String())
	case !f.committed() && err == nil:
		t.Errorf("fault %s before the commit: ssi migrate reported success: stdout %q", spec, out.String())
	case !f.committed() && strings.TrimSpace(errb.String()) == "":
		t.Errorf("fault %s: ssi migrate failed (%v) without saying why", spec, err)
	}

	p := assertOneCopy(t, c, gpid, spec)
	if want := map[bool]string{true: "node2", false: "node3"}[f.committed()]; p.Node != want {
		t.Errorf("fault %s: the job settled on %s, want %s", spec, p.Node, want)
	}
	if n := stopSampler(); n < 2 {
		t.Errorf("copy sampler took only %d samples", n)
	}
}

// fileSize returns the size of the file at path, 0 if it does not exist.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// readFrom returns the file at path from offset on.
func readFrom(t *testing.T, path string, offset int64) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if offset > int64(len(b)) {
		t.Fatalf("%s shrank below %d bytes", path, offset)
	}
	return string(b[offset:])
}

// assertOneCopy checks the migration invariant once things settle (with
// startCopySampler checking that it never ran twice on the way): gpid runs
// exactly once, on the node its record names, not stopped, its output without
// gap or repetition and growing, and no images left anywhere.
func assertOneCopy(t *testing.T, c *testCluster, gpid uint64, what string) pidtable.Proc {
	t.Helper()
	// The record settles (a source crashed mid-migration rolls back when it
	// restarts), and the job runs on exactly the node the record names.
	var p pidtable.Proc
	eventually(t, 20*time.Second, "one running copy on the recorded node", func() error {
		pi := c.proc(t, gpid)
		p = pi.Proc
		if p.State != pidtable.Running {
			return fmt.Errorf("state %s", p.State)
		}
		holders := []string{}
		for _, n := range c.Nodes {
			for _, g := range liveJobCgroups(t, c.CgroupParent(), n.Name) {
				if g == gpid {
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
		shm := c.imagesLeft(gpid)
		if len(shm) > 0 {
			return fmt.Errorf("images left in /dev/shm: %v", shm)
		}
		return nil
	})
	// Still running: the output keeps growing, every tick once, in order.
	before := checkTicks(t, c.ok(t, "logs", strconv.FormatUint(gpid, 10)))
	eventually(t, 10*time.Second, "job keeps ticking", func() error {
		if n := checkTicks(t, c.ok(t, "logs", strconv.FormatUint(gpid, 10))); n <= before+5 {
			return fmt.Errorf("%d ticks, had %d", n, before)
		}
		return nil
	})
	t.Logf("%s: job on %s (epoch %d), output continuous", what, p.Node, p.Epoch)
	return p
}

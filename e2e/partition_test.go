package e2e

import (
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

	"github.com/ssi-cluster/ssi/localcluster"
	"github.com/ssi-cluster/ssi/migrate"
)

// partition cuts the network between nodes a and b (both still reach every
// other node, etcd included) with blackhole routes, as a failed switch port or
// a firewall would: packets vanish, nothing is refused. It returns the heal.
func (c *testCluster) partition(t *testing.T, a, b string) (heal func()) {
	t.Helper()
	var na, nb *localcluster.NodeState
	for i := range c.Nodes {
		switch c.Nodes[i].Name {
		case a:
			na = &c.Nodes[i]
		case b:
			nb = &c.Nodes[i]
		}
	}
	if na == nil || nb == nil {
		t.Fatalf("partition %s/%s: unknown node", a, b)
	}
	route := func(op string, from, to *localcluster.NodeState) error {
		out, err := exec.Command("ip", "-n", from.Namespace, "route", op, "blackhole", to.IP+"/32").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip -n %s route %s blackhole %s: %v: %s", from.Namespace, op, to.IP, err, out)
		}
		return nil
	}
	for _, p := range [][2]*localcluster.NodeState{{na, nb}, {nb, na}} {
		if err := route("add", p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	healed := false
	heal = func() {
		if healed {
			return
		}
		healed = true
		for _, p := range [][2]*localcluster.NodeState{{na, nb}, {nb, na}} {
			if err := route("del", p[0], p[1]); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(heal)
	return heal
}

// TestMigrationPartition cuts the network between the source and the target
// of a migration after each of its steps (the source is held at the step's
// failpoint while the test cuts).
// Both agents still reach etcd. The migration must end within
// partitionBound, the job must never run on two nodes at once (sampled at
// 50 Hz throughout), and the invariant must hold once the network is back:
// one running copy, on the node the record names, output continuous, nothing
// left stopped or stored on either side. The CLI must say what happened.
func TestMigrationPartition(t *testing.T) {
	c := need(t)
	cases := []struct {
		// hold is the source failpoint the migration waits at while the test
		// cuts; phase is the phase the record shows then; committed, whether
		// the migration commits all the same (the source reaches etcd: once
		// the target has restored, the commit needs no word from it).
		hold, phase string
		committed   bool
	}{
		{"migrate/source/after-claim", "claim", false},
		{"migrate/source/after-prepare", "prepare", false},
		{"migrate/source/after-dump", "dump", false},
		{"migrate/source/after-transfer", "dump", false},
		{"migrate/source/after-restore", "dump", true},
		{"migrate/source/after-commit", "", true},
		{"migrate/source/after-resume", "", true},
	}
	passed := 0
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.hold, "/", "_"), func(t *testing.T) {
			runPartition(t, c, tc.hold, tc.phase, tc.committed)
			if !t.Failed() {
				passed++
			}
		})
	}
	t.Logf("partition cases run: %d, passed: %d", len(cases), passed)
}

// partitionBound is how long a migration may take once the network between
// its source and target is cut: the longest bound of one call to the target
// (prepare, 30 s; transfer, restore: 15-20 s for these small images), then the
// abort call's 10 s and the record updates' 10 s, with room for a loaded
// machine. Without per-step bounds it would hang until the 5-minute
// migration bound (ROBUSTNESS 19).
const partitionBound = 90 * time.Second

func runPartition(t *testing.T, c *testCluster, hold, phase string, committed bool) {
	gate := filepath.Join(t.TempDir(), "gate")
	m := c.heldMigration(t, hold+"=wait("+gate+")", 0)
	// The source holds at the failpoint (the step's call has returned): cut,
	// then let it go on into the cut network.
	waitGate(t, gate, hold)
	if p := c.proc(t, m.gpid); phase != "" && (p.Migration == nil || p.Migration.Phase != phase) || phase == "" && p.Node != "node2" {
		t.Fatalf("held at %s, the record says %s on %s, migration %+v", hold, p.State, p.Node, p.Migration)
	}
	heal := c.partition(t, "node3", "node2")
	start := time.Now()
	openGate(t, gate)
	finished, err := m.wait(partitionBound)
	took := time.Since(start)
	heal()
	if !finished {
		t.Fatalf("migrate, cut at %s: still running %s after the cut (bound %s); stdout %q, stderr %q", hold, took.Round(100*time.Millisecond), partitionBound, m.out.String(), m.errb.String())
	}
	t.Logf("migrate, cut at %s: %v after %s, stdout %q, stderr %q", hold, err, took.Round(100*time.Millisecond), m.out.String(), m.errb.String())
	switch {
	case committed && err != nil:
		t.Errorf("cut at %s, after the target restored: ssi migrate failed (%v), want success", hold, err)
	case !committed && err == nil:
		t.Errorf("cut at %s, before the target restored: ssi migrate reported success, stdout %q", hold, m.out.String())
	}
	p := assertOneCopy(t, c, m.gpid, "cut at "+hold)
	if want := map[bool]string{true: "node2", false: "node3"}[committed]; p.Node != want {
		t.Errorf("cut at %s: the job settled on %s, want %s", hold, p.Node, want)
	}
	// The target keeps no prepared or stopped copy of a migration that did not
	// commit to it (its own watch discards it when the record rolls back).
	if p.Node == "node3" {
		eventually(t, 10*time.Second, "nothing left on node2", func() error {
			for _, x := range liveJobCgroups(t, c.CgroupParent(), "node2") {
				if x == m.gpid {
					return fmt.Errorf("node2 still has a cgroup for gpid %d", m.gpid)
				}
			}
			return nil
		})
	}
	if n := m.stopSampler(); n < 2 {
		t.Errorf("copy sampler took only %d samples", n)
	}
}

// TestMigrationEtcdOutage: etcd (embedded in node1's agent) dies while a
// migration from node3 to node2 is between transfer and restore. The source
// cannot record the next phase, so it rolls back: the job runs on node3 again
// at once, and its record, which still says migrating, is released as soon as
// etcd is back. The target discards its part. Nothing runs twice, nothing is
// lost or left behind.
func TestMigrationEtcdOutage(t *testing.T) {
	c := need(t)
	gate := filepath.Join(t.TempDir(), "gate")
	m := c.heldMigration(t, "migrate/source/after-transfer=wait("+gate+")", 1)
	gpid, g := m.gpid, m.g
	waitGate(t, gate, "migrate/source/after-transfer")
	c.stopAgent(t, "node1", syscall.SIGKILL) // etcd with it
	restarted := false
	defer func() {
		if !restarted {
			c.startAgent(t, "node1")
		}
	}()
	openGate(t, gate)
	// Bounded: the source gives up on etcd after its step bound (10 s) and
	// the CLI then reads the outcome; 90 s leaves room for a loaded machine.
	finished, err := m.wait(90 * time.Second)
	if !finished {
		t.Fatalf("migrate during an etcd outage: still running after 90 s; stdout %q, stderr %q", m.out.String(), m.errb.String())
	}
	t.Logf("migrate during an etcd outage: %v, stdout %q, stderr %q", err, m.out.String(), m.errb.String())
	if err == nil {
		t.Fatalf("migration succeeded without etcd")
	}
	// While etcd is down the job runs on node3 again: its output grows.
	logf := func() int64 {
		fi, err := os.Stat(filepath.Join(c.Nodes[2].DataDir, "jobs", g, "log"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	size := logf()
	eventually(t, 5*time.Second, "job running on node3 during the outage", func() error {
		if n := logf(); n <= size {
			return fmt.Errorf("log still %d bytes", n)
		}
		return nil
	})
	c.startAgent(t, "node1")
	restarted = true
	assertOneCopy(t, c, gpid, "etcd outage")
	p := c.proc(t, gpid)
	if p.Node != "node3" || p.Migration != nil || p.MigrationError == "" {
		t.Fatalf("record after the outage: %+v", p.Proc)
	}
	t.Logf("record released after the outage: running on %s, migration_error %q", p.Node, p.MigrationError)
	if n := m.stopSampler(); n < 2 {
		t.Errorf("copy sampler took only %d samples", n)
	}
	// Leave the cluster as found: agents whose etcd sessions outlived their
	// lease during the outage take a new one; let the old leases run out (TTL
	// 5 s) and every node start jobs again before the next test.
	time.Sleep(6 * time.Second)
	for _, n := range c.Nodes {
		eventually(t, 20*time.Second, n.Name+" starts jobs again", func() error {
			if r := c.ssi(t, "run", "--node", n.Name, "--", "true"); r.code != 0 {
				return fmt.Errorf("%v", r)
			}
			return nil
		})
	}
}

// waitGate waits until a process reached the failpoint wait(gate).
func waitGate(t *testing.T, gate, point string) {
	t.Helper()
	eventually(t, 30*time.Second, "held at "+point, func() error {
		_, err := os.Stat(gate + ".reached")
		return err
	})
}

// openGate lets the process held at wait(gate) go on.
func openGate(t *testing.T, gate string) {
	t.Helper()
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// heldMig is a migration heldMigration started.
type heldMig struct {
	gpid      uint64
	g         string // gpid in decimal
	cmd       *exec.Cmd
	out, errb *strings.Builder
	done      chan error // cmd.Wait's result
	// stopSampler stops the copy sampler started before the migration.
	stopSampler func() int
}

// wait waits up to bound for the migrate command to exit and returns its
// result; finished is false if it was still running then (it is killed when
// the test ends).
func (m *heldMig) wait(bound time.Duration) (finished bool, err error) {
	select {
	case err := <-m.done:
		m.done <- err
		return true, err
	case <-time.After(bound):
		return false, nil
	}
}

// heldMigration restarts node3's agent with the failpoint spec, starts a
// self-checking job there and a copy sampler on it (startCopySampler) and,
// through the agent of c.Nodes[entry], a migration of it to node2, and returns
// without waiting for it. The agent is restarted without failpoints and the
// job killed when the test ends.
func (c *testCluster) heldMigration(t *testing.T, spec string, entry int) *heldMig {
	t.Helper()
	ctx := context.Background()
	c.stopAgent(t, "node3", syscall.SIGTERM)
	if err := c.StartAgentEnv(ctx, "node3", []string{"SSI_FAILPOINTS=" + spec}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stopAgent(t, "node3", syscall.SIGTERM)
		c.startAgent(t, "node3")
	})
	m := &heldMig{out: &strings.Builder{}, errb: &strings.Builder{}, done: make(chan error, 1)}
	m.gpid = c.detach(t, "--node", "node3", "--", "python3", counterPath(t), "8", "0.02")
	m.g = strconv.FormatUint(m.gpid, 10)
	t.Cleanup(func() { c.kill(t, m.gpid) })
	c.waitTicks(t, m.gpid, 5)
	m.stopSampler = startCopySampler(t, c, m.gpid)
	// The CLI is bounded past the migration's own bound (a commit left
	// unknown by a long etcd outage answers only then).
	mctx, cancel := context.WithTimeout(ctx, migrate.Timeout+2*time.Minute)
	t.Cleanup(cancel)
	m.cmd = c.cmd(mctx, "migrate", m.g, "node2")
	m.cmd.Env = append(m.cmd.Env, "SSI_ENDPOINT="+c.Nodes[entry].API())
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.errb
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	return m
}

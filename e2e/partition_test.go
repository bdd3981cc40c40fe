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
// Both agents still reach etcd. The invariant must hold once the network is
// back: one running copy, on the node the record names, output continuous,
// nothing left stopped or stored on either side.
func TestMigrationPartition(t *testing.T) {
	c := need(t)
	cases := []struct {
		// hold is the source failpoint the migration waits at while the test
		// cuts; phase is the phase the record shows then.
		hold, phase string
	}{
		{"migrate/source/after-claim", "claim"},
		{"migrate/source/after-prepare", "prepare"},
		{"migrate/source/after-dump", "dump"},
		{"migrate/source/after-transfer", "transfer"},
		{"migrate/source/after-restore", "restore"},
		{"migrate/source/after-commit", ""},
		{"migrate/source/after-resume", ""},
	}
	passed := 0
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.hold, "/", "_"), func(t *testing.T) {
			runPartition(t, c, tc.hold, tc.phase)
			passed++
		})
	}
	t.Logf("partition cases run: %d, passed: %d", len(cases), passed)
}

func runPartition(t *testing.T, c *testCluster, hold, phase string) {
	gate := filepath.Join(t.TempDir(), "gate")
	gpid, _, mig, out, errb := c.heldMigration(t, hold+"=wait("+gate+")", 0)
	start := time.Now()
	// The source holds at the failpoint (the step's call has returned): cut,
	// then let it go on into the cut network.
	waitGate(t, gate, hold)
	if p := c.proc(t, gpid); phase != "" && (p.Migration == nil || p.Migration.Phase != phase) || phase == "" && p.Node != "node2" {
		t.Fatalf("held at %s, the record says %s on %s, migration %+v", hold, p.State, p.Node, p.Migration)
	}
	heal := c.partition(t, "node3", "node2")
	openGate(t, gate)
	err := mig.Wait()
	took := time.Since(start)
	heal()
	t.Logf("migrate, cut at %s: %v after %s, stdout %q, stderr %q", hold, err, took.Round(100*time.Millisecond), out.String(), errb.String())
	assertOneCopy(t, c, gpid, "cut at "+hold)
	// The target keeps no prepared or stopped copy of a migration that did not
	// commit to it (its own watch discards it when the record rolls back).
	if p := c.proc(t, gpid); p.Node == "node3" {
		eventually(t, 10*time.Second, "nothing left on node2", func() error {
			if gs := liveJobCgroups(t, c.CgroupParent(), "node2"); len(gs) > 0 {
				for _, x := range gs {
					if x == gpid {
						return fmt.Errorf("node2 still has a cgroup for gpid %d", gpid)
					}
				}
			}
			return nil
		})
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
	gpid, g, mig, out, errb := c.heldMigration(t, "migrate/source/after-transfer=wait("+gate+")", 1)
	waitGate(t, gate, "migrate/source/after-transfer")
	c.stopAgent(t, "node1", syscall.SIGKILL) // etcd with it
	restarted := false
	defer func() {
		if !restarted {
			c.startAgent(t, "node1")
		}
	}()
	openGate(t, gate)
	err := mig.Wait()
	t.Logf("migrate during an etcd outage: %v, stdout %q, stderr %q", err, out.String(), errb.String())
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

// heldMigration restarts node3's agent with the failpoint spec, starts a
// self-checking job there and, through the agent of c.Nodes[entry], a
// migration of it to node2, and returns without waiting for it. The agent is
// restarted without failpoints and the job killed when the test ends.
func (c *testCluster) heldMigration(t *testing.T, spec string, entry int) (gpid uint64, g string, mig *exec.Cmd, out, errb *strings.Builder) {
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
	gpid = c.detach(t, "--node", "node3", "--", "python3", counterPath(t), "8", "0.02")
	g = strconv.FormatUint(gpid, 10)
	t.Cleanup(func() { c.kill(t, gpid) })
	c.waitTicks(t, gpid, 5)
	mctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel)
	mig = c.cmd(mctx, "migrate", g, "node2")
	mig.Env = append(mig.Env, "SSI_ENDPOINT="+c.Nodes[entry].API())
	out, errb = &strings.Builder{}, &strings.Builder{}
	mig.Stdout, mig.Stderr = out, errb
	if err := mig.Start(); err != nil {
		t.Fatal(err)
	}
	return gpid, g, mig, out, errb
}

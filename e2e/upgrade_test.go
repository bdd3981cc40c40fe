package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
)

// TestRollingUpgrade (issue 20, item 6): the binaries are replaced in place,
// as a package upgrade does (a new file renamed over the old one: the
// running agents, shims and jobs keep the old inodes), by a build with
// another version string; then each agent in turn is restarted in place
// (SIGUSR2: no drain, even on node2, whose agent drains on SIGTERM) while
// 10 jobs run, one of them with automatic checkpoints (it must not fail
// over: its node's lease is not revoked at the stop). Between the first and the last restart a job
// moves from a node still on the old agent to an upgraded one (its ssi-init
// is the replaced, now deleted, file), while a third node restarts. Every
// job keeps running, its output continuous, and is adopted by the new agent
// of its node (a kill through it ends the job, recorded); every node ends
// Ready on the new version. A node record of another migration protocol
// makes a move to it refused with "versions differ".
func TestRollingUpgrade(t *testing.T) {
	c := need(t)
	restoreNodes(t, c)
	const version = "e2e-upgrade"
	// node2's agent drains on SIGTERM, as a real one does: the restart in
	// place (SIGUSR2) must not.
	orig := c.NodeArgs["node2"]
	setArgs := func(args []string) {
		if c.NodeArgs == nil {
			c.NodeArgs = map[string][]string{}
		}
		c.NodeArgs["node2"] = args
	}
	setArgs(append(slices.Clone(orig), "--no-drain=false"))
	c.stopAgent(t, "node2", syscall.SIGUSR2)
	c.startAgent(t, "node2")
	defer func() {
		setArgs(orig)
		c.stopAgent(t, "node2", syscall.SIGUSR2)
		c.startAgent(t, "node2")
	}()
	replaceBinaries(t, filepath.Dir(c.State.Binary), version)

	// Ten counters, on every node; the 32 MiB one on node2 will move. One
	// more on node3, with automatic checkpoints (a failover copy), starts
	// after node1's restart: node1 holds etcd's only member, and while it
	// is away no lease is renewed, so a fence of that job would be right
	// (README, "Upgrading a cluster"); its own node's restart must not.
	placed := map[string]int{"node1": 4, "node2": 3, "node3": 2}
	var gpids []uint64
	var mover, checkpointed uint64
	for _, node := range []string{"node1", "node2", "node3"} {
		for i := range placed[node] {
			mib := "8"
			if node == "node2" && i == 0 {
				mib = "32"
			}
			g := c.detach(t, "--node", node, "--", "python3", counterPath(t), mib, "0.2")
			if mib == "32" {
				mover = g
			}
			gpids = append(gpids, g)
		}
	}
	defer func() { c.kill(t, gpids...) }()
	ticks := func(g uint64) int {
		out := c.ok(t, "logs", strconv.FormatUint(g, 10))
		if strings.TrimSpace(out) == "" {
			return 0
		}
		return checkTicks(t, out)
	}
	eventually(t, 20*time.Second, "every counter ticking", func() error {
		for _, g := range gpids {
			if n := ticks(g); n < 2 {
				return fmt.Errorf("gpid %d at tick %d", g, n)
			}
		}
		return nil
	})

	upgrade := func(node string) {
		t.Helper()
		before := ticksOn(t, c, gpids, node, ticks)
		t0 := time.Now()
		c.stopAgent(t, node, syscall.SIGUSR2)
		c.startAgent(t, node)
		eventually(t, 30*time.Second, node+" Ready on "+version, func() error {
			n := c.nodes(t)[node]
			if !n.Ready || n.Version != version || n.Protocol != migrate.Protocol {
				return fmt.Errorf("ready %v, version %q, protocol %d", n.Ready, n.Version, n.Protocol)
			}
			return nil
		})
		took := time.Since(t0)
		// Its jobs ran on through the restart, there.
		eventually(t, 10*time.Second, "the jobs of "+node+" ticking after its restart", func() error {
			for g, n := range before {
				if now := ticks(g); now <= n+1 {
					return fmt.Errorf("gpid %d at tick %d, %d before the restart", g, now, n)
				}
			}
			return nil
		})
		for g := range before {
			if p := c.proc(t, g); p.Node != node || p.State != pidtable.Running || p.FailedOver != 0 {
				t.Fatalf("gpid %d after the restart in place of %s: %s on %s, failed over %d times", g, node, p.State, p.Node, p.FailedOver)
			}
		}
		t.Logf("%s upgraded (Ready on %s %.1fs after SIGUSR2): %d jobs ran on through its restart, there", node, version, took.Seconds(), len(before))
	}

	upgrade("node1")
	checkpointed = c.detach(t, "--node", "node3", "--checkpoint-every", "3s", "--", "python3", counterPath(t), "8", "0.2")
	gpids = append(gpids, checkpointed)
	eventually(t, 20*time.Second, "the checkpointed counter ticking", func() error {
		if n := ticks(checkpointed); n < 2 {
			return fmt.Errorf("at tick %d", n)
		}
		return nil
	})

	// Bad input first: a node of another migration protocol is refused.
	st := c.etcdStore(t)
	n3 := c.nodes(t)["node3"].Node
	faked := n3
	faked.Version, faked.Protocol = "v-future", migrate.Protocol+1
	if err := st.RegisterNode(context.Background(), faked); err != nil {
		t.Fatal(err)
	}
	var refused result
	eventually(t, 10*time.Second, "a move to a node of another protocol refused", func() error {
		refused = c.ssi(t, "migrate", strconv.FormatUint(mover, 10), "node3")
		if refused.code == 0 || !strings.Contains(refused.stderr, "versions differ") || !strings.Contains(refused.stderr, "v-future") {
			return fmt.Errorf("%v", refused)
		}
		return nil
	})
	t.Logf("refused: %s", strings.TrimSpace(refused.stderr))
	if err := st.RegisterNode(context.Background(), n3); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "node3's record back", func() error {
		if p := c.nodes(t)["node3"].Protocol; p != migrate.Protocol {
			return fmt.Errorf("protocol %d", p)
		}
		return nil
	})

	// node2 (old agent) moves its 32 MiB job to node1 (new agent) while
	// node3 restarts.
	moved := make(chan result, 1)
	go func() { moved <- c.ssi(t, "migrate", strconv.FormatUint(mover, 10), "node1") }()
	upgrade("node3")
	if r := <-moved; r.code != 0 {
		t.Fatalf("migrate from the old agent of node2 to the new one of node1: %v", r)
	}
	if p := c.proc(t, mover); p.Node != "node1" || p.State != pidtable.Running {
		t.Fatalf("moved job: %s on %s", p.State, p.Node)
	}
	upgrade("node2")

	// The checkpointed job kept its node, and its checkpoints go on under
	// the new agent.
	eventually(t, 20*time.Second, "an automatic checkpoint of the checkpointed job", func() error {
		var cs []pidtable.Checkpoint
		if err := json.Unmarshal([]byte(c.ok(t, "checkpoints", "-o", "json")), &cs); err != nil {
			return err
		}
		for _, ck := range cs {
			if ck.GPID == checkpointed && ck.Auto && ck.State == pidtable.Ready {
				return nil
			}
		}
		return fmt.Errorf("none ready")
	})
	if p := c.proc(t, checkpointed); p.Node != "node3" || p.FailedOver != 0 {
		t.Fatalf("checkpointed gpid %d: on %s, failed over %d times", checkpointed, p.Node, p.FailedOver)
	}

	// Adopted: each job is running, its output continuous, and a kill
	// through its node's new agent ends it and is recorded.
	for _, g := range gpids {
		p := c.proc(t, g)
		if p.State != pidtable.Running {
			t.Fatalf("gpid %d is %s on %s after the upgrade", g, p.State, p.Node)
		}
		n := ticks(g)
		c.ok(t, "kill", "-s", "TERM", strconv.FormatUint(g, 10))
		eventually(t, 10*time.Second, fmt.Sprintf("gpid %d's kill recorded", g), func() error {
			if p := c.proc(t, g); p.State != pidtable.Exited || p.ExitCode == nil || *p.ExitCode != 128+int(syscall.SIGTERM) {
				return fmt.Errorf("%s, exit code %v", p.State, p.ExitCode)
			}
			return nil
		})
		t.Logf("gpid %d on %s: %d ticks, continuous; SIGTERM recorded by its new agent", g, p.Node, n)
	}
}

// ticksOn returns the tick count of each of gpids running on node.
func ticksOn(t *testing.T, c *testCluster, gpids []uint64, node string, ticks func(uint64) int) map[uint64]int {
	t.Helper()
	out := map[uint64]int{}
	for _, g := range gpids {
		if c.proc(t, g).Node == node {
			out[g] = ticks(g)
		}
	}
	return out
}

// replaceBinaries builds ssi with version as its version string and puts it,
// with copies of ssi-shim and ssi-init, over the binaries in dir the way a
// package upgrade does: each written beside its target and renamed over it.
func replaceBinaries(t *testing.T, dir, version string) {
	t.Helper()
	tmp := filepath.Join(dir, ".ssi.upgrade")
	cmd := exec.Command("go", "build", "-tags", "failpoints", "-ldflags", "-X main.version="+version, "-o", tmp, "./cmd/ssi")
	cmd.Dir, cmd.Env = "..", append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ssi %s: %v\n%s", version, err, out)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "ssi")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ssi-shim", "ssi-init"} {
		src := filepath.Join(dir, name)
		if _, err := os.Stat(src); os.IsNotExist(err) {
			continue
		}
		if err := copyFile(src, src+".upgrade"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(src+".upgrade", src); err != nil {
			t.Fatal(err)
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

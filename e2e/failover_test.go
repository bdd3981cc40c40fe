package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// TestFailoverFromCheckpoint: a job started with --checkpoint-every on
// node3 has its checkpoints copied to another node; then node3 fails, two
// ways: partition, cut off from etcd and node1 (its lease expires: its
// agent fences the job), and node-kill, its agent and the job's processes
// killed and its links cut. The failover controller restores the job
// elsewhere from the newest copy, same gpid, epoch+1. The job runs on from
// the checkpoint and finishes with its memory intact and its output
// continuous; an `ssi wait` started before the fault returns its exit
// status; at no sampled instant (100 Hz) do two copies run, and when node3
// is back none runs there.
func TestFailoverFromCheckpoint(t *testing.T) {
	c := need(t)
	t.Run("partition", func(t *testing.T) { runFailover(t, c, false) })
	t.Run("node-kill", func(t *testing.T) { runFailover(t, c, true) })
}

func runFailover(t *testing.T, c *testCluster, killNode bool) {
	const ticks = 150 // 0.2 s each: 30 s of work
	gpid := c.detach(t, "--node", "node3", "--checkpoint-every", "3s", "--", "python3", counterPath(t), "16", "0.2", strconv.Itoa(ticks))
	defer c.kill(t, gpid)
	waitDone := make(chan result, 1)
	go func() { waitDone <- c.ssi(t, "wait", strconv.FormatUint(gpid, 10)) }()

	// Two automatic checkpoints, each with a copy on another node.
	var copies []pidtable.Checkpoint
	eventually(t, 30*time.Second, "two automatic checkpoints copied off node3", func() error {
		var cs []pidtable.Checkpoint
		if err := json.Unmarshal([]byte(c.ok(t, "checkpoints", "-o", "json")), &cs); err != nil {
			return err
		}
		copies = copies[:0]
		for _, ck := range cs {
			if ck.GPID == gpid && ck.Auto && ck.CopyOf != "" && ck.State == pidtable.Ready {
				if ck.Node == "node3" {
					return fmt.Errorf("copy %s on node3, the original's node", ck.Name)
				}
				copies = append(copies, ck)
			}
		}
		if len(copies) < 2 {
			return fmt.Errorf("%d copies", len(copies))
		}
		return nil
	})
	before := checkTicks(t, c.ok(t, "logs", strconv.FormatUint(gpid, 10)))
	t.Logf("%d copies of automatic checkpoints (e.g. %s on %s); job at tick %d", len(copies), copies[0].Name, copies[0].Node, before)

	stop := startCopySampler(t, c, gpid)
	cut := time.Now()
	heal := c.partition(t, "node3", "node1") // node1 runs etcd
	if killNode {
		healAll := c.partition(t, "node3", "node2")
		c.stopAgent(t, "node3", syscall.SIGKILL)
		killed := killJobProcs(t, c, "node3", gpid)
		t.Logf("node3 killed: its agent, the job's %d processes, its links", killed)
		prev := heal
		heal = func() {
			prev()
			healAll()
			c.startAgent(t, "node3")
		}
	}
	var p api.ProcInfo
	eventually(t, 40*time.Second, "the job running off node3", func() error {
		p = c.proc(t, gpid)
		if p.Node == "node3" || p.State != pidtable.Running {
			return fmt.Errorf("%s on %s", p.State, p.Node)
		}
		return nil
	})
	took := time.Since(cut)
	if p.FailedOver != 1 || p.FailedOverFrom != "node3" || p.RestoredFrom == "" || p.Epoch == 0 {
		t.Fatalf("failed-over record: %+v", p.Proc)
	}
	t.Logf("cut node3 off; gpid %d running on %s from %s (epoch %d) %.1fs later (lease TTL 5 s, grace 2 s)", gpid, p.Node, p.RestoredFrom, p.Epoch, took.Seconds())

	r := <-waitDone
	if r.code != 0 {
		t.Fatalf("ssi wait across the failover: %v", r)
	}
	out := c.ok(t, "logs", strconv.FormatUint(gpid, 10))
	if n := checkTicks(t, out); n != ticks {
		t.Fatalf("finished at tick %d, want %d", n, ticks)
	}
	ev := c.ok(t, "events")
	if !strings.Contains(ev, "failover") || !strings.Contains(ev, "node node3 died") {
		t.Fatalf("no failover event:\n%s", ev)
	}
	heal()
	eventually(t, 30*time.Second, "node3 Ready again", func() error {
		if !c.nodes(t)["node3"].Ready {
			return fmt.Errorf("NotReady")
		}
		return nil
	})
	if left := liveJobCgroups(t, c.CgroupParent(), "node3"); slices.Contains(left, gpid) {
		t.Fatalf("node3 still has a cgroup of gpid %d after it came back", gpid)
	}
	stop()
	// A job with a failover copy started on node3 as soon as it is Ready
	// runs (bug 43: its shim read the old lease's bound and killed it).
	fresh := c.detach(t, "--node", "node3", "--checkpoint-every", "3s", "--", "sleep", "60")
	defer c.kill(t, fresh)
	time.Sleep(1500 * time.Millisecond)
	if p := c.proc(t, fresh); p.State != pidtable.Running || p.Node != "node3" {
		t.Fatalf("a checkpointed job started on node3 right after it came back is %s on %s, want running on node3", p.State, p.Node)
	}
	if left := liveJobCgroups(t, c.CgroupParent(), "node3"); !slices.Contains(left, fresh) {
		t.Fatalf("gpid %d, started on node3 right after it came back, has no live cgroup there", fresh)
	}
}

// killJobProcs SIGKILLs the processes of gpid's cgroup on node (which the
// test's cluster started) and returns how many.
func killJobProcs(t *testing.T, c *testCluster, node string, gpid uint64) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(jobCgroupRoot(), c.CgroupParent(), node, strconv.FormatUint(gpid, 10), "cgroup.procs"))
	if err != nil {
		t.Fatalf("job cgroup of gpid %d on %s: %v", gpid, node, err)
	}
	n := 0
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no process of gpid %d on %s to kill", gpid, node)
	}
	return n
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// TestDrainFallsBackToCheckpoint: node2's agent cannot move jobs live (every
// migration fails after its prepare step, a failpoint). A counter started
// with --checkpoint-every is on it, and a plain sleep. ssi node drain node2
// tries each live move three times; then the counter, which has checkpoints,
// is killed on node2 and restored from its newest checkpoint on another node
// under the same gpid (a handover): its output stays continuous (the ticks
// after the checkpoint are printed again, not skipped or doubled), an `ssi
// wait` started before the drain is still waiting, and the drain's table
// says so; the plain job stays on node2, failed, with the reason. ssi migrate
// --from-checkpoint of a job with no checkpoint is refused and leaves it
// running.
func TestDrainFallsBackToCheckpoint(t *testing.T) {
	c := need(t)
	restoreNodes(t, c)
	c.withFailpoints(t, "node2", "migrate/source/after-prepare=error")
	gpid := c.detach(t, "--node", "node2", "--checkpoint-every", "2s", "--", "python3", counterPath(t), "16", "0.2")
	plain := c.detach(t, "--node", "node2", "--", "sleep", "600")
	defer c.kill(t, gpid, plain)
	g := strconv.FormatUint(gpid, 10)

	// Bad input first: no checkpoint, or two kinds of move at once.
	if r := c.ssi(t, "migrate", "--from-checkpoint", strconv.FormatUint(plain, 10), "node1"); r.code != 1 || !strings.Contains(r.stderr, "no ready checkpoint") {
		t.Fatalf("handover of a job without checkpoints: %v", r)
	}
	if p := c.proc(t, plain); p.State != pidtable.Running || p.Node != "node2" || !pidAlive(p.PID) {
		t.Fatalf("the refused job after the refusal: %+v", p.Proc)
	}
	if r := c.ssi(t, "migrate", "--from-checkpoint", "--postcopy", g, "node1"); r.code != 2 {
		t.Fatalf("--from-checkpoint --postcopy: %v, want a usage error", r)
	}

	eventually(t, 30*time.Second, "an automatic checkpoint of the counter", func() error {
		var cs []pidtable.Checkpoint
		if err := json.Unmarshal([]byte(c.ok(t, "checkpoints", "-o", "json")), &cs); err != nil {
			return err
		}
		for _, ck := range cs {
			if ck.GPID == gpid && ck.Auto && ck.State == pidtable.Ready && ck.CopyOf != "" {
				return nil
			}
		}
		return fmt.Errorf("none copied yet")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	waitDone := make(chan result, 1)
	go func() { waitDone <- runCmd(t, c.cmd(ctx, "wait", g)) }()

	t0 := time.Now()
	r := runCmd(t, c.cmd(ctx, "node", "drain", "node2", "--wait", "--deadline", "3m"))
	t.Logf("drain of node2 took %s (exit %d):\n%s%s", time.Since(t0).Round(100*time.Millisecond), r.code, r.stderr, r.stdout)
	if !strings.Contains(r.stdout, "1 moved") || !strings.Contains(r.stdout, "1 failed") {
		t.Fatalf("drain output: want 1 moved (the checkpointed job) and 1 failed (the plain one)")
	}
	p := c.proc(t, gpid)
	if p.State != pidtable.Running || p.Node == "node2" || !strings.HasPrefix(p.RestoredFrom, "auto-") || p.Epoch < 2 || !pidAlive(p.PID) {
		t.Fatalf("the checkpointed job after the drain: %+v", p.Proc)
	}
	d := c.drainStatus(t, "node2")
	if j, ok := d.Job(gpid); !ok || j.State != pidtable.JobMoved || !j.FromCheckpoint || !strings.Contains(j.Reason, "restored from checkpoint") {
		t.Fatalf("drain entry of the checkpointed job: %+v", j)
	}
	if j, _ := d.Job(plain); j.State != pidtable.JobFailed || j.FromCheckpoint {
		t.Fatalf("drain entry of the plain job: %+v", j)
	}
	if q := c.proc(t, plain); q.Node != "node2" || q.State != pidtable.Running {
		t.Fatalf("the plain job after the drain: %+v", q.Proc)
	}
	var restored bool
	for _, ev := range c.events(t, gpid) {
		if ev.Kind == pidtable.EventMoved && ev.From == "node2" && ev.To == p.Node && strings.Contains(ev.Reason, "restored from checkpoint") {
			restored = true
		}
	}
	if !restored {
		t.Fatalf("no moved event saying the checkpoint was restored: %+v", c.events(t, gpid))
	}
	select {
	case r := <-waitDone:
		t.Fatalf("ssi wait returned across the handover: %v", r)
	default:
	}
	// Continuous output, and it ticks on from the checkpoint.
	before := checkTicks(t, c.ok(t, "logs", g))
	eventually(t, 20*time.Second, "the counter ticking after the handover", func() error {
		if n := checkTicks(t, c.ok(t, "logs", g)); n <= before+3 {
			return fmt.Errorf("at tick %d", n)
		}
		return nil
	})
	c.kill(t, gpid)
	select {
	case r := <-waitDone:
		if r.code == 0 {
			t.Fatalf("ssi wait after the kill: %v, want the kill's status", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ssi wait did not return after the kill")
	}
}

package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCommitUnanswered: etcd stops answering (the agent that embeds it,
// node1, is paused with SIGSTOP) exactly when a migration from node3 to node2
// commits, for 2 s and for 30 s, then comes back. The commit's outcome is
// unknown to the source while etcd is away; it must be settled by the running
// agents alone (no restart): within seconds of etcd's return exactly one copy
// runs, on the node the record names, and it makes progress. A copy sampler
// (50 Hz, every node's job cgroup) checks that two copies never run
// at once, through the whole fault (issue 13 item 4). Paused at this point
// the commit's read goes unanswered, so the commit is never sent (2 s: it is
// answered late and commits; 30 s: the source rolls back and releases the
// record once etcd is back); a pause between the commit's write and its
// answer (the settle-by-release path, agent/commit.go) has no failpoint yet.
func TestCommitUnanswered(t *testing.T) {
	c := need(t)
	for _, pause := range []time.Duration{2 * time.Second, 30 * time.Second} {
		t.Run(pause.String(), func(t *testing.T) { runCommitOutage(t, c, pause) })
	}
}

// runCommitOutage pauses etcd for pause at the commit of a migration and
// checks how it is settled; it returns how long after etcd's return the job
// ran as one copy where its record says.
func runCommitOutage(t *testing.T, c *testCluster, pause time.Duration) time.Duration {
	t.Helper()
	gate := t.TempDir() + "/gate"
	m := c.heldMigration(t, "migrate/source/after-restore=wait("+gate+")", 1)
	waitGate(t, gate, "migrate/source/after-restore")
	etcd := c.Nodes[0].Agent // node1's agent embeds the cluster's etcd
	if err := syscall.Kill(etcd.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	cont := func() {
		if !resumed {
			_ = syscall.Kill(etcd.PID, syscall.SIGCONT)
			resumed = true
		}
	}
	defer cont()
	openGate(t, gate) // the source commits into the silence
	time.Sleep(pause)
	cont()
	back := time.Now()
	p := assertOneCopy(t, c, m.gpid, "etcd paused "+pause.String()+" at the commit")
	settled := time.Since(back)
	// The issue asks for 1 s; the bound here leaves room for a loaded
	// machine, and the log says what it was.
	if settled > 5*time.Second {
		t.Errorf("one running copy only %s after etcd came back, want within seconds", settled)
	}
	if p.State != "running" || (p.Node != "node2" && p.Node != "node3") {
		t.Fatalf("after the pause: %s on %s, want running on node2 (committed) or node3 (released)", p.State, p.Node)
	}
	before := c.lastTickOf(t, m.gpid)
	c.waitTicks(t, m.gpid, before+3)
	finished, err := m.wait(2 * time.Minute)
	if !finished {
		t.Fatalf("ssi migrate still running 2 minutes after etcd came back; stdout %q, stderr %q", m.out.String(), m.errb.String())
	}
	out := strings.TrimSpace(m.out.String() + " " + m.errb.String())
	switch {
	case p.Node == "node2" && err != nil:
		t.Errorf("the record names node2 (committed) but ssi migrate failed: %v: %s", err, out)
	case p.Node == "node3" && (err == nil || !strings.Contains(out, "running on its source node again") && !strings.Contains(out, "runs on node3 again")):
		t.Errorf("the record names node3 (released) but ssi migrate said: %v: %s", err, out)
	}
	if !etcd.Alive() {
		t.Fatal("node1's agent did not survive its pause")
	}
	n := m.stopSampler()
	t.Logf("etcd paused %s at the commit: settled on %s %s after etcd came back (one copy, running); ssi migrate: %s; %d samples, never two live copies", pause, p.Node, settled.Round(10*time.Millisecond), out, n)
	return settled
}

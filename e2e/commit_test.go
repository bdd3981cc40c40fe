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
// record once etcd is back). TestCommitAnswerLost covers the other half.
// The soak suite (`make soak`) runs both with a 6-minute pause.
func TestCommitUnanswered(t *testing.T) {
	c := need(t)
	for _, pause := range []time.Duration{2 * time.Second, 30 * time.Second} {
		t.Run(pause.String(), func(t *testing.T) { runCommitOutage(t, c, pause, false) })
	}
}

// TestCommitAnswerLost: the commit is applied by etcd, and then etcd stops
// answering before the source reads the answer (a failpoint takes the
// answer as lost at the moment node1, which embeds etcd, is paused). The
// source cannot know the outcome; it settles it by trying to release the
// record at the commit's revision, which fails once etcd is back because
// the commit took that revision: the job must then run as one copy, on
// node2, without any agent restart, within seconds of etcd's return (2 s:
// settled inside the migration; 30 s: settled after the migration's bound,
// by the source's background settle, while the target resumes its copy by
// itself once it reads the record).
func TestCommitAnswerLost(t *testing.T) {
	c := need(t)
	for _, pause := range []time.Duration{2 * time.Second, 30 * time.Second} {
		t.Run(pause.String(), func(t *testing.T) { runCommitOutage(t, c, pause, true) })
	}
}

// runCommitOutage pauses etcd for pause at the commit of a migration and
// checks how it is settled; it returns how long after etcd's return the job
// ran as one copy where its record says. With answerLost the pause starts
// after etcd applied the commit, and the source takes its answer as lost.
func runCommitOutage(t *testing.T, c *testCluster, pause time.Duration, answerLost bool) time.Duration {
	t.Helper()
	gate := t.TempDir() + "/gate"
	point := "migrate/source/after-restore"
	spec := point + "=wait(" + gate + ")"
	if answerLost {
		point = "migrate/source/commit-applied"
		spec = point + "=wait(" + gate + ");migrate/source/commit-answer-lost=error"
	}
	m := c.heldMigration(t, spec, 1)
	waitGate(t, gate, point)
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
	if answerLost && p.Node != "node2" {
		t.Fatalf("etcd applied the commit, but the record names %s", p.Node)
	}
	before := c.lastTickOf(t, m.gpid)
	c.waitTicks(t, m.gpid, before+3)
	finished, err := m.wait(2 * time.Minute)
	if !finished {
		t.Fatalf("ssi migrate still running 2 minutes after etcd came back; stdout %q, stderr %q", m.out.String(), m.errb.String())
	}
	out := strings.TrimSpace(m.out.String() + " " + m.errb.String())
	switch {
	case p.Node == "node2" && err != nil && !(answerLost && strings.Contains(out, "commit outcome unknown")):
		// (With the answer lost past the migration's bound, ssi migrate
		// says the outcome is unknown, and the source settles it after.)
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

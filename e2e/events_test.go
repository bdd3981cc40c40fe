package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// eventsMatching runs `ssi events -o json ARGS...` and decodes its lines.
func (c *testCluster) eventsMatching(t *testing.T, args ...string) []pidtable.Event {
	t.Helper()
	return decodeEvents(t, c.ok(t, append([]string{"events", "-o", "json"}, args...)...))
}

func decodeEvents(t *testing.T, out string) []pidtable.Event {
	t.Helper()
	var evs []pidtable.Event
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var ev pidtable.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events -o json line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// kinds is "kind[/phase]" of each event.
func kinds(evs []pidtable.Event) []string {
	var out []string
	for _, ev := range evs {
		k := ev.Kind
		if ev.Phase != "" {
			k += "/" + ev.Phase
		}
		out = append(out, k)
	}
	return out
}

// follower is a running `ssi events -f ARGS...`: the events it printed and
// when each line arrived.
type follower struct {
	mu   sync.Mutex
	evs  []pidtable.Event
	when []time.Time
}

func (c *testCluster) follow(t *testing.T, ctx context.Context, args ...string) *follower {
	t.Helper()
	cmd := c.cmd(ctx, append([]string{"events", "-f", "-o", "json"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &follower{}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			now := time.Now()
			var ev pidtable.Event
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			f.mu.Lock()
			f.evs, f.when = append(f.evs, ev), append(f.when, now)
			f.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return f
}

// find returns the first event that match accepts and when it arrived.
func (f *follower) find(match func(pidtable.Event) bool) (pidtable.Event, time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, ev := range f.evs {
		if match(ev) {
			return ev, f.when[i], true
		}
	}
	return pidtable.Event{}, time.Time{}, false
}

// TestEventsLifecycle: every step of jobs' lives is in the event log with
// its fields (run, kill, exit with code or signal, a hand migration started
// and done with its phase timings, a checkpoint and a restore); `ssi events
// -f --type exit` started before a job exits prints its exit within a
// second; --node and --type filter; a user sees only their own jobs' events.
func TestEventsLifecycle(t *testing.T) {
	c := need(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exits := c.follow(t, ctx, "--type", "exit")
	time.Sleep(500 * time.Millisecond) // the follower's stream is open

	// A job that exits 3, on node1.
	g3 := c.detach(t, "--node", "node1", "--", "sh", "-c", "sleep 1; exit 3")
	var ev3 pidtable.Event
	var got3 time.Time
	eventually(t, 15*time.Second, "the follower prints the exit of gpid "+fmt.Sprint(g3), func() error {
		var ok bool
		if ev3, got3, ok = exits.find(func(ev pidtable.Event) bool { return ev.GPID == g3 }); !ok {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	delay := got3.Sub(ev3.Time)
	t.Logf("exit event of gpid %d: written %s, printed by ssi events -f %s later", g3, ev3.Time.Format(time.RFC3339Nano), delay)
	if delay > time.Second*time.Duration(timingSlack()) {
		t.Errorf("ssi events -f printed the exit %s after it was written; want within 1 s", delay)
	}
	if ev3.ExitCode == nil || *ev3.ExitCode != 3 || ev3.Signal != "" || ev3.Node != "node1" || ev3.User != "root" {
		t.Errorf("exit event: %+v; want exit_code 3, no signal, node node1, user root", ev3)
	}
	if _, _, ok := exits.find(func(ev pidtable.Event) bool { return ev.Kind != pidtable.EventExit }); ok {
		t.Errorf("ssi events -f --type exit printed another kind: %+v", exits.evs)
	}
	evs := c.eventsMatching(t, "--gpid", fmt.Sprint(g3))
	if got := strings.Join(kinds(evs), " "); got != "run exit" {
		t.Errorf("events of gpid %d: %q, want \"run exit\"", g3, got)
	} else if evs[0].Command != "sh -c sleep 1; exit 3" || evs[0].To != "node1" {
		t.Errorf("run event: %+v", evs[0])
	}

	// A job killed with TERM.
	gk := c.detach(t, "--node", "node1", "--", "sleep", "600")
	c.ok(t, "kill", "-s", "TERM", fmt.Sprint(gk))
	eventually(t, 10*time.Second, "kill and exit events", func() error {
		evs = c.eventsMatching(t, "--gpid", fmt.Sprint(gk))
		if got := strings.Join(kinds(evs), " "); got != "run kill exit" {
			return fmt.Errorf("events of gpid %d: %q", gk, got)
		}
		return nil
	})
	if k := evs[1]; k.Signal != "TERM" || k.Caller != "admin root" || k.User != "root" {
		t.Errorf("kill event: %+v; want signal TERM by admin root", k)
	}
	if x := evs[2]; x.ExitCode == nil || *x.ExitCode != 143 || x.Signal != "TERM" {
		t.Errorf("exit event of a killed job: %+v; want exit_code 143, signal TERM", x)
	}

	// A hand migration, node1 -> node2.
	gm := c.detach(t, "--node", "node1", "--", "sleep", "600")
	defer c.kill(t, gm)
	c.migrate(t, gm, "node2")
	eventually(t, 10*time.Second, "migrate events", func() error {
		evs = c.eventsMatching(t, "--gpid", fmt.Sprint(gm), "--type", "migrate")
		if got := strings.Join(kinds(evs), " "); got != "migrate/started migrate/done" {
			return fmt.Errorf("migrate events of gpid %d: %q", gm, got)
		}
		return nil
	})
	if s, d := evs[0], evs[1]; s.From != "node1" || s.To != "node2" || d.From != "node1" || d.To != "node2" ||
		d.Took <= 0 || d.Frozen <= 0 || d.Bytes <= 0 || d.Phases["dump"] <= 0 || d.Phases["restore"] <= 0 {
		t.Errorf("migrate events: %+v / %+v; want node1 -> node2, done with took, frozen, bytes and dump/restore timings", s, d)
	}

	// A checkpoint that stops the job, restored on node3.
	gc := c.detach(t, "--node", "node1", "--", "sleep", "600")
	defer c.kill(t, gc)
	ck := "e2e-events-" + fmt.Sprint(gc)
	c.ok(t, "checkpoint", "--name", ck, fmt.Sprint(gc))
	defer c.ssi(t, "checkpoints", "rm", ck)
	c.ok(t, "restore", ck, "--node", "node3")
	eventually(t, 10*time.Second, "checkpoint and restore events", func() error {
		evs = c.eventsMatching(t, "--gpid", fmt.Sprint(gc))
		if got := strings.Join(kinds(evs), " "); got != "run checkpoint restore" {
			return fmt.Errorf("events of gpid %d: %q", gc, got)
		}
		return nil
	})
	if k, r := evs[1], evs[2]; k.Checkpoint != ck || k.Bytes <= 0 || r.Checkpoint != ck || r.To != "node3" {
		t.Errorf("checkpoint / restore events: %+v / %+v", k, r)
	}

	for _, g := range []uint64{g3, gk, gm, gc} {
		t.Logf("ssi events --gpid %d:\n%s", g, c.ok(t, "events", "--gpid", fmt.Sprint(g)))
	}

	// --node: only events written by node3 or naming it.
	for _, ev := range c.eventsMatching(t, "--node", "node3", "--limit", "2000") {
		if !ev.About("node3") {
			t.Errorf("--node node3 printed %+v", ev)
		}
	}
	if evs := c.eventsMatching(t, "--node", "node3", "--type", "restore"); !slices.ContainsFunc(evs, func(ev pidtable.Event) bool { return ev.GPID == gc }) {
		t.Errorf("--node node3 --type restore: %+v; want gpid %d's restore", evs, gc)
	}
	// --type with an unknown kind: a usage error naming the valid ones.
	if r := c.ssi(t, "events", "--type", "exit,bogus"); r.code != 2 || !strings.Contains(r.stderr, "checkpoint") {
		t.Errorf("events --type exit,bogus: %v; want exit 2 naming the valid kinds", r)
	}

	// A user sees their own jobs' events and the cluster's, never root's.
	uid, gid := ensureUser(t, "ssitest1")
	cfg := c.userConfig(t, "ssitest1", uid, gid)
	uctx, ucancel := context.WithTimeout(ctx, 60*time.Second)
	defer ucancel()
	r := runCmd(t, c.as(uctx, cfg, uid, gid, "run", "--node", "node2", "--", "true"))
	if r.code != 0 {
		t.Fatalf("ssitest1 run: %v", r)
	}
	r = runCmd(t, c.as(uctx, cfg, uid, gid, "events", "-o", "json", "--limit", "5000"))
	if r.code != 0 {
		t.Fatalf("ssitest1 events: %v", r)
	}
	own := 0
	for _, ev := range decodeEvents(t, r.stdout) {
		if ev.GPID != 0 && ev.User != "ssitest1" {
			t.Fatalf("ssitest1 sees an event of %q's job: %+v", ev.User, ev)
		}
		if ev.User == "ssitest1" && (ev.Kind == pidtable.EventRun || ev.Kind == pidtable.EventExit) {
			own++
		}
	}
	if own < 2 {
		t.Errorf("ssitest1 sees %d run/exit events of its own job, want 2: %s", own, r.stdout)
	}
	r = runCmd(t, c.as(uctx, cfg, uid, gid, "events", "-o", "json", "--gpid", fmt.Sprint(g3)))
	if r.code != 0 || strings.TrimSpace(r.stdout) != "" {
		t.Errorf("ssitest1 sees events of root's gpid %d: %v", g3, r)
	}
}

// TestEventsNodes: a node whose agent stops (SIGTERM) has left and is
// NotReady in the log, and Ready again when its agent comes back; the
// housekeeper's leadership is there too.
func TestEventsNodes(t *testing.T) {
	c := need(t)
	// The watcher of NotReady is the housekeeper (the service controller's
	// leader); stop a node that is not it.
	var leader string
	eventually(t, 20*time.Second, "a leader event of the service controller", func() error {
		for _, ev := range c.eventsMatching(t, "--type", "leader") {
			if ev.Role == "service" {
				leader = ev.From
			}
		}
		if leader == "" {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	victim := "node3"
	if leader == victim {
		victim = "node2"
	}
	// The e2e agents run with --no-drain: restart the victim with the
	// drain on stop (as a real agent runs), so that SIGTERM makes it leave.
	orig := c.NodeArgs[victim]
	if c.NodeArgs == nil {
		c.NodeArgs = map[string][]string{}
	}
	c.NodeArgs[victim] = append(slices.Clone(orig), "--no-drain=false", "--drain-timeout", "5s")
	c.stopAgent(t, victim, syscall.SIGKILL)
	c.startAgent(t, victim)
	c.NodeArgs[victim] = orig // its next start is as before
	eventually(t, 30*time.Second, victim+" Ready", func() error {
		if !c.nodes(t)[victim].Ready {
			return fmt.Errorf("%s is NotReady", victim)
		}
		return nil
	})
	// A SIGTERM in the agent's first moments stops it without the drain
	// (seen once, 50 ms after Ready): let it settle.
	time.Sleep(2 * time.Second)
	start := time.Now()
	c.stopAgent(t, victim, syscall.SIGTERM) // it leaves: drained, Left, its lease revoked
	started := false
	defer func() {
		if !started {
			c.startAgent(t, victim)
		}
	}()
	eventually(t, 30*time.Second, victim+" left and NotReady in the log", func() error {
		var left, notready bool
		for _, ev := range c.eventsMatching(t, "--node", victim, "--type", "node") {
			if ev.From == victim && ev.Time.After(start) {
				left = left || ev.Phase == pidtable.PhaseLeft
				notready = notready || ev.Phase == pidtable.PhaseNotReady
			}
		}
		if !left || !notready {
			return fmt.Errorf("left %v, notready %v", left, notready)
		}
		return nil
	})
	c.startAgent(t, victim)
	started = true
	eventually(t, 30*time.Second, victim+" Ready again in the log", func() error {
		for _, ev := range c.eventsMatching(t, "--node", victim, "--type", "node") {
			if ev.Phase == pidtable.PhaseReady && ev.From == victim && ev.Node == victim && ev.Time.After(start) {
				return nil
			}
		}
		return fmt.Errorf("no ready event of %s", victim)
	})
	eventually(t, 30*time.Second, victim+" Ready", func() error {
		if !c.nodes(t)[victim].Ready {
			return fmt.Errorf("%s is NotReady", victim)
		}
		return nil
	})
}

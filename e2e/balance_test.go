package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// balancerOff switches the cluster's balancer off (TestMain, before any test).
// balancerOff switches the cluster's balancer off, as the admin.
func (c *testCluster) balancerOff(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := c.cmd(ctx, "balance", "off").CombinedOutput(); err != nil {
		return fmt.Errorf("ssi balance off: %w: %s", err, out)
	}
	return nil
}

// busyJob is a CPU-bound job that runs for secs seconds of wall time whatever
// CPU share it gets (bash's SECONDS: no child process, nothing but CPU), and
// says when it starts and ends: a job run twice would say so twice.
func busyJob(secs int) []string {
	return []string{"bash", "-c", "echo start; while [ $SECONDS -lt " + strconv.Itoa(secs) + " ]; do :; done; echo done"}
}

// balanceOn switches the balancer on with a short residency (so tests need
// not wait the default 10 s) and off again at the end of the test.
func balanceOn(t *testing.T, c *testCluster) {
	t.Helper()
	c.ok(t, "balance", "on", "--residency", "2s")
	t.Cleanup(func() { c.ok(t, "balance", "off", "--residency", "0s") })
}

func (c *testCluster) balance(t *testing.T) api.BalanceStatus {
	t.Helper()
	var st api.BalanceStatus
	if err := json.Unmarshal([]byte(c.ok(t, "balance", "status", "-o", "json")), &st); err != nil {
		t.Fatalf("balance status -o json: %v", err)
	}
	return st
}

// events returns the events of gpid (ssi events --gpid -o json).
func (c *testCluster) events(t *testing.T, gpid uint64) []pidtable.Event {
	t.Helper()
	var out []pidtable.Event
	for _, line := range strings.Split(strings.TrimSpace(c.ok(t, "events", "--gpid", strconv.FormatUint(gpid, 10), "-o", "json")), "\n") {
		if line == "" {
			continue
		}
		var ev pidtable.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events -o json line %q: %v", line, err)
		}
		out = append(out, ev)
	}
	return out
}

// privateWorkdir returns a directory of the test's own for jobs to run (and
// write their files) in, removed when the test ends.
func privateWorkdir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ssi-e2e-bal-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(d, 0o755)
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// TestBalanceSpreadsAndFailsOver: a batch submitted to node1 ends up spread
// over the nodes; the balancer's leader is killed mid-batch, another agent
// takes over within seconds and goes on; every job ends with exit 0 and its
// output shows it ran exactly once.
func TestBalanceSpreadsAndFailsOver(t *testing.T) {
	c := need(t)
	// `ssi events -f` follows the whole batch, through the leader's death,
	// from node1 (which never leads: see below).
	fctx, fcancel := context.WithCancel(context.Background())
	defer fcancel()
	follower := c.cmd(fctx, "events", "-f", "-o", "json")
	var followed bytes.Buffer
	follower.Stdout = &followed
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	balanceOn(t, c)
	wd := privateWorkdir(t)
	const jobs, secs = 6, 35
	var gpids []uint64
	for range jobs {
		gpids = append(gpids, c.detach(t, append([]string{"--node", "node1", "-w", wd, "--"}, busyJob(secs)...)...))
	}
	defer c.kill(t, gpids...)
	t0 := time.Now()

	spread := func() map[string]int {
		on := map[string]int{}
		for _, p := range c.ps(t) {
			if slices.Contains(gpids, p.GPID) && !p.State.Ended() {
				on[p.Node]++
			}
		}
		return on
	}
	eventually(t, 30*time.Second, "batch spread over the nodes", func() error {
		if on := spread(); len(on) < 2 || on["node1"] == jobs {
			return fmt.Errorf("jobs per node: %v", on)
		}
		return nil
	})
	t.Logf("spread after %s: %v", time.Since(t0).Round(100*time.Millisecond), spread())

	// Kill the leader (node1 never leads: it runs etcd, see TestMain).
	st := c.balance(t)
	leader := st.Leader
	if leader == "" || leader == "node1" {
		t.Fatalf("balancer leader %q: want node2 or node3 (%+v)", leader, st)
	}
	c.stopAgent(t, leader, syscall.SIGKILL)
	killed := time.Now()
	restarted := false
	defer func() {
		if !restarted {
			c.startAgent(t, leader)
		}
	}()
	eventually(t, 20*time.Second, "a new balancer leader", func() error {
		st := c.balance(t)
		if st.Leader == "" || st.Leader == leader || st.Status == nil || st.Status.Leader != st.Leader || st.Status.LastRound.Before(killed) {
			return fmt.Errorf("leader %q, status %+v", st.Leader, st.Status)
		}
		return nil
	})
	took := time.Since(killed)
	t.Logf("leader %s killed; %s leads after %s", leader, c.balance(t).Leader, took.Round(100*time.Millisecond))
	c.startAgent(t, leader)
	restarted = true

	// The new leader goes on: its rounds keep coming.
	first := c.balance(t).Status.LastRound
	eventually(t, 10*time.Second, "rounds of the new leader", func() error {
		if st := c.balance(t); st.Status == nil || !st.Status.LastRound.After(first) {
			return fmt.Errorf("no round since %s", first)
		}
		return nil
	})

	// Every job ends once, with exit 0, having said start and done once.
	nodes := map[string]bool{}
	for _, g := range gpids {
		wctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		r := runCmd(t, c.cmd(wctx, "wait", strconv.FormatUint(g, 10)))
		cancel()
		if r.code != 0 {
			t.Errorf("gpid %d: ssi wait: %v", g, r)
		}
		out := c.ok(t, "logs", strconv.FormatUint(g, 10))
		if out != "start\ndone\n" {
			t.Errorf("gpid %d output %q, want start and done once each", g, out)
		}
		p := c.proc(t, g)
		if p.State != pidtable.Exited || p.ExitCode == nil || *p.ExitCode != 0 {
			t.Errorf("gpid %d ended %s (%v)", g, p.State, p.ExitCode)
		}
		nodes[p.Node] = true
	}
	moved := 0
	for _, g := range gpids {
		for _, ev := range c.events(t, g) {
			if ev.Kind == pidtable.EventMoved {
				moved++
			}
		}
	}
	if moved == 0 || len(nodes) < 2 {
		t.Errorf("batch submitted to node1 ended on nodes %v with %d moves; want it spread", nodes, moved)
	}
	t.Logf("%d jobs ended on nodes %v; %d moves", jobs, nodes, moved)

	// The follower printed every event once: the batch's moves as the event
	// log has them, and the new leader taking over.
	time.Sleep(1500 * time.Millisecond) // one more poll of the follower
	fcancel()
	_ = follower.Wait()
	seen := map[string]bool{}
	followedMoves, leaderAfterKill := 0, false
	for _, line := range strings.Split(strings.TrimSpace(followed.String()), "\n") {
		var ev pidtable.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events -f -o json printed %q: %v", line, err)
		}
		if seen[ev.ID] {
			t.Fatalf("events -f: event %s printed twice", ev.ID)
		}
		seen[ev.ID] = true
		switch {
		case ev.Kind == pidtable.EventMoved && slices.Contains(gpids, ev.GPID):
			followedMoves++
		case ev.Kind == pidtable.EventLeader && ev.Node != leader && ev.Time.After(killed):
			leaderAfterKill = true
		}
	}
	if followedMoves != moved || !leaderAfterKill {
		t.Errorf("events -f showed %d of the batch's %d moves, new leader shown: %v", followedMoves, moved, leaderAfterKill)
	}
	t.Logf("events -f: %d events, the batch's %d moves and the new leader", len(seen), followedMoves)
}

// TestBalanceOffAndPinned: with the balancer off nothing moves; switched on,
// it moves unpinned jobs of an overloaded node and never pinned ones, and says
// why it leaves those.
func TestBalanceOffAndPinned(t *testing.T) {
	c := need(t)
	wd := privateWorkdir(t)
	c.ok(t, "balance", "off")
	var free, pinned []uint64
	for range 3 {
		free = append(free, c.detach(t, append([]string{"--node", "node1", "-w", wd, "--"}, busyJob(60)...)...))
		pinned = append(pinned, c.detach(t, append([]string{"--node", "node1", "--pin", "-w", wd, "--"}, busyJob(60)...)...))
	}
	all := append(slices.Clone(free), pinned...)
	defer c.kill(t, all...)

	// Off: well past the residency and several rounds, nothing has moved.
	time.Sleep(6 * time.Second)
	for _, g := range all {
		if p := c.proc(t, g); p.Node != "node1" || p.Epoch != 1 {
			t.Fatalf("balancer off, yet gpid %d is on %s at epoch %d", g, p.Node, p.Epoch)
		}
		for _, ev := range c.events(t, g) {
			if ev.Kind == pidtable.EventMove || ev.Kind == pidtable.EventMoved {
				t.Fatalf("balancer off, yet gpid %d has event %+v", g, ev)
			}
		}
	}

	// On: an unpinned job moves; pinned ones stay, rejected as pinned.
	balanceOn(t, c)
	eventually(t, 30*time.Second, "an unpinned job moved", func() error {
		for _, g := range free {
			if p := c.proc(t, g); p.Epoch > 1 && p.Node != "node1" {
				return nil
			}
		}
		return fmt.Errorf("none moved yet")
	})
	for _, g := range pinned {
		eventually(t, 15*time.Second, fmt.Sprintf("pinned gpid %d rejected as pinned", g), func() error {
			for _, ev := range c.events(t, g) {
				if ev.Kind == pidtable.EventRejected && strings.Contains(ev.Reason, "pinned") {
					return nil
				}
			}
			return fmt.Errorf("no such event")
		})
	}
	// A few more rounds: pinned jobs never moved, and ps -o wide says pinned.
	time.Sleep(3 * time.Second)
	for _, g := range pinned {
		p := c.proc(t, g)
		if p.Node != "node1" || p.Epoch != 1 || !p.Pinned {
			t.Errorf("pinned gpid %d: node %s, epoch %d, pinned %v", g, p.Node, p.Epoch, p.Pinned)
		}
		for _, ev := range c.events(t, g) {
			if ev.Kind == pidtable.EventMove {
				t.Errorf("pinned gpid %d: move event %+v", g, ev)
			}
		}
	}
	if wide := c.ok(t, "ps", "-A", "-o", "wide"); !strings.Contains(wide, "PIN") || !strings.Contains(wide, " pin ") {
		t.Errorf("ps -o wide shows no PIN column or pinned job:\n%s", wide)
	}
}

// TestBalanceTuning: ssi balance off|on retunes the balancer cluster-wide
// (--max-moves and --max-inflight here), says so in ssi events, and 0 restores
// the defaults.
func TestBalanceTuning(t *testing.T) {
	c := need(t)
	config := func() pidtable.BalancerConfig {
		var st api.BalanceStatus
		if err := json.Unmarshal([]byte(c.ok(t, "balance", "status", "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		return st.Config
	}
	c.ok(t, "balance", "off", "--max-moves", "3", "--max-inflight", "2")
	defer c.ok(t, "balance", "off", "--max-moves", "0", "--max-inflight", "0")
	if got := config(); got.Enabled || got.MaxMovesPerRound != 3 || got.MaxInflightPerNode != 2 {
		t.Fatalf("after balance off --max-moves 3 --max-inflight 2: %+v", got)
	}
	if out := c.ok(t, "balance", "status"); !strings.Contains(out, "max in flight per node 2, max moves per round 3") {
		t.Errorf("balance status does not show the tuning:\n%s", out)
	}
	evs := c.ok(t, "events", "--limit", "1")
	if !strings.Contains(evs, "config") || !strings.Contains(evs, "max moves per round 3") {
		t.Errorf("newest event is not the retuning: %q", evs)
	}
	c.ok(t, "balance", "off", "--max-moves", "0", "--max-inflight", "0")
	if got := config(); got.MaxMovesPerRound != 0 || got.MaxInflightPerNode != 0 {
		t.Fatalf("after --max-moves 0 --max-inflight 0: %+v, want the defaults (0)", got)
	}
}

// TestBalanceCLIErrors: bad input gets a usage error naming what was wrong.
func TestBalanceCLIErrors(t *testing.T) {
	c := need(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"balance", "foo"}, `unknown action "foo": want status, on or off`},
		{[]string{"balance"}, "want one of status, on, off"},
		{[]string{"balance", "status", "--residency", "5s"}, "go with 'ssi balance on' or 'off'"},
		{[]string{"balance", "on", "--residency", "-1s"}, "must not be negative"},
		{[]string{"balance", "off", "--max-moves", "-2"}, "must not be negative"},
		{[]string{"events", "--gpid", "x"}, `invalid gpid "x"`},
	} {
		r := c.ssi(t, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("ssi %s: %v; want exit 2 and %q", strings.Join(tc.args, " "), r, tc.want)
		}
	}
	r := c.ssi(t, "agent", "--name", "x", "--listen", "127.0.0.1:1", "--data-dir", t.TempDir(), "--cpuset", "99")
	if r.code != 2 || !strings.Contains(r.stderr, `--cpuset "99"`) || !strings.Contains(r.stderr, "CPU 99 is not online") {
		t.Errorf("ssi agent --cpuset 99: %v; want exit 2 naming the flag and the CPU", r)
	}
	r = c.ssi(t, "agent", "--name", "x", "--listen", "127.0.0.1:1", "--data-dir", t.TempDir(), "--cpuset", "zero")
	if r.code != 2 || !strings.Contains(r.stderr, `--cpuset "zero"`) {
		t.Errorf("ssi agent --cpuset zero: %v; want exit 2 naming the flag", r)
	}
}

// TestMigrateBackSoon: a job moved away and back within the 30 s its old
// directory is kept must keep its new one: the delayed removal of the old
// directory once removed the job's files, and the job was recorded lost at
// its end (found by the balancer benchmark, which moves jobs back and forth).
func TestMigrateBackSoon(t *testing.T) {
	c := need(t)
	wd := privateWorkdir(t)
	gpid := c.detach(t, append([]string{"--node", "node2", "-w", wd, "--"}, busyJob(300)...)...)
	defer c.kill(t, gpid)
	g := strconv.FormatUint(gpid, 10)
	eventually(t, 10*time.Second, "job started", func() error {
		if !strings.Contains(c.ok(t, "logs", g), "start") {
			return fmt.Errorf("no output yet")
		}
		return nil
	})
	c.ok(t, "migrate", g, "node3")
	c.ok(t, "migrate", g, "node2")
	time.Sleep(33 * time.Second) // past the removal of the first stay's directory
	if p := c.proc(t, gpid); p.State != pidtable.Running || p.Node != "node2" || p.Epoch != 3 {
		t.Fatalf("after moving away and back: %s on %s at epoch %d", p.State, p.Node, p.Epoch)
	}
	c.ok(t, "kill", "-s", "KILL", g)
	wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := runCmd(t, c.cmd(wctx, "wait", g))
	if p := c.proc(t, gpid); p.State != pidtable.Exited || p.ExitCode == nil || *p.ExitCode != 137 {
		t.Fatalf("killed job ended %s (%v, %q), want exited 137; ssi wait: %v", p.State, p.ExitCode, p.Error, r)
	}
	if out := c.ok(t, "logs", g); out != "start\n" {
		t.Errorf("output %q after the moves, want %q", out, "start\n")
	}
}

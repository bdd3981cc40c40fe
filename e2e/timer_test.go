package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// timerRuns is a timer's ticks from ssi timer status -o json, oldest first.
func (c *testCluster) timerTicks(t *testing.T, name string) []api.TimerRun {
	t.Helper()
	var info api.TimerInfo
	if err := json.Unmarshal([]byte(c.ok(t, "timer", "status", name, "-o", "json")), &info); err != nil {
		t.Fatalf("timer status -o json: %v", err)
	}
	runs := info.Runs
	sort.Slice(runs, func(i, j int) bool { return runs[i].Tick.Scheduled.Before(runs[j].Tick.Scheduled) })
	return runs
}

// runLog is a file every run of a test timer appends one line to: the tick
// it was started for and its gpid (the nodes share the host's file system),
// so runs are counted from what ran, not from the controller's records.
func runLog(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ssi-timer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "runs.log")
}

// runsPerTick reads a run log: tick → gpids that ran for it.
func runsPerTick(t *testing.T, log string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			out[f[0]] = append(out[f[0]], f[1])
		}
	}
	return out
}

const tickService = `[Service]
ExecStart=/bin/sh -c "echo $${SSI_TIMER_TICK} $${SSI_GPID} >> %s; sleep %s"
`

// TestTimerEveryTickOnce: a timer every 5 s on the 3-node cluster for 32 s
// (SSI_E2E_TIMER_WINDOW=2m: the two minutes): every tick ran exactly once (counted from what the runs wrote),
// on more than one node, with SSI_TIMER set; ssi timers lists it; a
// re-apply changes the schedule in place; ssi timer run fires now; rm.
func TestTimerEveryTickOnce(t *testing.T) {
	c := need(t)
	dir := t.TempDir()
	log := runLog(t)
	writeUnit(t, dir, "tick.service", fmt.Sprintf(tickService, log, "1"))
	unit := writeUnit(t, dir, "tick.timer", "[Unit]\nDescription=every 5s\n\n[Timer]\nOnCalendar=*:*:0/5\n\n[Install]\nWantedBy=timers.target\n")
	out := c.ok(t, "apply", unit)
	if !strings.Contains(out, "tick.timer: created (activates tick.service)") {
		t.Fatalf("apply printed %q", out)
	}
	t.Cleanup(func() { c.ssi(t, "timer", "rm", "tick") })
	if out := c.ok(t, "apply", unit); !strings.Contains(out, "tick.timer: unchanged") {
		t.Fatalf("second apply printed %q", out)
	}
	// 32 s in the suite (6 ticks); SSI_E2E_TIMER_WINDOW=2m for the issue's
	// two minutes.
	window := 32 * time.Second
	if d, err := time.ParseDuration(os.Getenv("SSI_E2E_TIMER_WINDOW")); err == nil && d > window {
		window = d
	}
	start := time.Now()
	time.Sleep(window)

	ticks := c.timerTicks(t, "tick")
	ran := runsPerTick(t, log)
	nodes := map[string]int{}
	var started []api.TimerRun
	for _, r := range ticks {
		if r.Tick.Scheduled.Before(start) {
			continue
		}
		if r.Tick.State != pidtable.TickStarted {
			t.Errorf("tick %s is %s (%s), want started", r.Tick.Scheduled.Format(time.TimeOnly), r.Tick.State, r.Tick.Reason)
			continue
		}
		started = append(started, r)
		nodes[r.Tick.Node]++
		if s := r.Tick.Scheduled; s.Nanosecond() != 0 || s.Second()%5 != 0 {
			t.Errorf("tick %s is not on a 5 s boundary", s)
		}
	}
	for i := 1; i < len(started); i++ {
		if gap := started[i].Tick.Scheduled.Sub(started[i-1].Tick.Scheduled); gap != 5*time.Second {
			t.Errorf("ticks %s and %s are %s apart: a tick is missing", started[i-1].Tick.Scheduled.Format(time.TimeOnly), started[i].Tick.Scheduled.Format(time.TimeOnly), gap)
		}
	}
	if want := int(window/(5*time.Second)) - 1; len(started) < want {
		t.Fatalf("%d ticks in %s, want at least %d", len(started), window, want)
	}
	var late []time.Duration
	for _, r := range started {
		key := r.Tick.Scheduled.UTC().Format(time.RFC3339Nano)
		gpids := ran[key]
		if len(gpids) != 1 || gpids[0] != fmt.Sprint(r.Tick.GPID) {
			t.Errorf("tick %s (gpid %d): runs %v, want exactly one, gpid %d", key, r.Tick.GPID, gpids, r.Tick.GPID)
		}
		late = append(late, r.Tick.Started.Sub(r.Tick.Scheduled))
	}
	for tick, gpids := range ran {
		if len(gpids) > 1 {
			t.Errorf("tick %s ran %d times: %v", tick, len(gpids), gpids)
		}
	}
	if len(nodes) < 2 {
		t.Errorf("every run on one node: %v", nodes)
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	t.Logf("%d ticks, each run exactly once; runs per node %v; start delay after the tick p50 %s max %s", len(started), nodes, late[len(late)/2].Round(time.Millisecond), late[len(late)-1].Round(time.Millisecond))

	// Exit statuses recorded; ssi timers lists it with its last run.
	eventually(t, 10*time.Second, "the last run's exit status", func() error {
		out := c.ok(t, "timers")
		if !strings.Contains(out, "tick.timer") || !strings.Contains(out, "tick.service") {
			return fmt.Errorf("timers: %s", out)
		}
		if !strings.Contains(out, "NEXT") || !strings.Contains(out, "ACTIVATES") {
			return fmt.Errorf("timers: %s", out)
		}
		return nil
	})
	t.Logf("ssi timers:\n%s", c.ok(t, "timers"))
	st := c.ok(t, "timer", "status", "tick")
	if !strings.Contains(st, "started") {
		t.Fatalf("timer status: %s", st)
	}
	t.Logf("ssi timer status tick:\n%s", st)

	// ssi apply again changes the schedule in place: every 3 s now.
	writeUnit(t, dir, "tick.timer", "[Timer]\nOnCalendar=*:*:0/3\n")
	if out := c.ok(t, "apply", unit); !strings.Contains(out, "tick.timer: updated") {
		t.Fatalf("changed apply printed %q", out)
	}
	changed := time.Now()
	eventually(t, 15*time.Second, "a tick on the new schedule", func() error {
		for _, r := range c.timerTicks(t, "tick") {
			if r.Tick.Scheduled.After(changed) && r.Tick.State == pidtable.TickStarted {
				if r.Tick.Scheduled.Second()%3 != 0 {
					return fmt.Errorf("tick %s not on the 3 s schedule", r.Tick.Scheduled)
				}
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})

	// ssi timer run fires now.
	out = c.ok(t, "timer", "run", "tick")
	if !strings.Contains(out, "tick: fired (gpid") {
		t.Fatalf("timer run printed %q", out)
	}
	eventually(t, 10*time.Second, "the manual run started", func() error {
		for _, r := range c.timerTicks(t, "tick") {
			if r.Tick.Manual && r.Tick.State == pidtable.TickStarted {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})

	// rm removes it: no tick after.
	c.ok(t, "timer", "rm", "tick")
	if r := c.ssi(t, "timer", "status", "tick"); r.code == 0 {
		t.Fatalf("status after rm: %v", r)
	}
	if out := c.ok(t, "timers"); strings.Contains(out, "tick.timer") {
		t.Fatalf("timers after rm: %s", out)
	}
}

// TestTimerOverlapSkip: runs longer than the period: the ticks meanwhile
// are recorded skipped, and no two runs overlap.
func TestTimerOverlapSkip(t *testing.T) {
	c := need(t)
	dir := t.TempDir()
	log := runLog(t)
	writeUnit(t, dir, "slow.service", fmt.Sprintf(tickService, log, "7"))
	unit := writeUnit(t, dir, "slow.timer", "[Timer]\nOnCalendar=*:*:0/2\n\n[X-SSI]\nOverlap=skip\n")
	c.ok(t, "apply", unit)
	t.Cleanup(func() { c.ssi(t, "timer", "rm", "slow") })
	time.Sleep(20 * time.Second)
	var skipped, started int
	for _, r := range c.timerTicks(t, "slow") {
		switch r.Tick.State {
		case pidtable.TickSkipped:
			skipped++
			if !strings.Contains(r.Tick.Reason, "still runs") {
				t.Errorf("skipped tick's reason %q", r.Tick.Reason)
			}
		case pidtable.TickStarted:
			started++
		}
	}
	if skipped < 3 || started < 2 {
		t.Fatalf("%d skipped, %d started ticks in 20 s of 7 s runs every 2 s", skipped, started)
	}
	for tick, gpids := range runsPerTick(t, log) {
		if len(gpids) != 1 {
			t.Errorf("tick %s ran %v", tick, gpids)
		}
	}
	t.Logf("%d ticks started, %d skipped (Overlap=skip)", started, skipped)
	if out := c.ok(t, "events"); !strings.Contains(out, "skipped tick") {
		t.Errorf("no skipped event in ssi events:\n%s", out)
	}
}

// TestTimerBadInput: a malformed OnCalendar= and a timer without its
// service are refused with one error naming file:line, and nothing is
// created.
func TestTimerBadInput(t *testing.T) {
	c := need(t)
	dir := t.TempDir()
	writeUnit(t, dir, "bad.service", "[Service]\nExecStart=/bin/true\n")
	bad := writeUnit(t, dir, "bad.timer", "[Timer]\n# every weekday\nOnCalendar=Mon..Fry 02:00\n")
	r := c.ssi(t, "apply", bad)
	if r.code == 0 || !strings.Contains(r.stderr, "bad.timer:3: OnCalendar=Mon..Fry 02:00") || !strings.Contains(r.stderr, "expected a weekday") || !strings.Contains(r.stderr, "nothing was applied") {
		t.Fatalf("malformed OnCalendar: %v", r)
	}
	t.Logf("malformed OnCalendar: %s", strings.TrimSpace(r.stderr))
	lone := writeUnit(t, t.TempDir(), "lone.timer", "[Timer]\nOnCalendar=daily\n")
	r = c.ssi(t, "apply", lone)
	if r.code == 0 || !strings.Contains(r.stderr, "lone.service") {
		t.Fatalf("timer without service: %v", r)
	}
	t.Logf("timer without service: %s", strings.TrimSpace(r.stderr))
	never := writeUnit(t, dir, "never.timer", "[Timer]\nPersistent=true\nUnit=bad.service\n")
	r = c.ssi(t, "apply", never)
	if r.code == 0 || !strings.Contains(r.stderr, "never fire") {
		t.Fatalf("timer without trigger: %v", r)
	}
	if out := c.ok(t, "timers"); strings.Contains(out, "bad.timer") || strings.Contains(out, "lone.timer") || strings.Contains(out, "never.timer") {
		t.Fatalf("a refused timer was created: %s", out)
	}
}

// TestTimerPersistentAfterDowntime: the cluster's etcd (node1's agent) is
// killed for 15 s under two timers every 5 s, one Persistent=true: when it
// is back, the persistent timer runs the last missed tick once (caught up)
// and records the others missed; the other records them all missed; no
// tick of either ever runs twice. node1's agent is often the timer
// controller too: then this is also the controller killed mid-run.
func TestTimerPersistentAfterDowntime(t *testing.T) {
	c := need(t)
	dir := t.TempDir()
	logs := map[string]string{"pers": runLog(t), "nopers": runLog(t)}
	for name, persistent := range map[string]bool{"pers": true, "nopers": false} {
		writeUnit(t, dir, name+".service", fmt.Sprintf(tickService, logs[name], "1"))
		writeUnit(t, dir, name+".timer", fmt.Sprintf("[Timer]\nOnCalendar=*:*:0/5\nPersistent=%v\n\n[X-SSI]\nMissAfter=2s\n", persistent))
		c.ok(t, "apply", filepath.Join(dir, name+".timer"))
		t.Cleanup(func() { c.ssi(t, "timer", "rm", name) })
	}
	eventually(t, 20*time.Second, "two runs of each timer", func() error {
		for name := range logs {
			n := 0
			for _, r := range c.timerTicks(t, name) {
				if r.Tick.State == pidtable.TickStarted {
					n++
				}
			}
			if n < 2 {
				return fmt.Errorf("%s: %d runs", name, n)
			}
		}
		return nil
	})
	// The runs (1 s) ended and their ends are recorded: a run whose end
	// could not be written while etcd was down would still run in the
	// records when it is back, and Overlap=skip would skip the catch-up.
	eventually(t, 10*time.Second, "the last runs' ends recorded", func() error {
		for name := range logs {
			for _, r := range c.timerTicks(t, name) {
				if r.Tick.State == pidtable.TickStarted && !r.State.Ended() || r.Tick.State == pidtable.TickClaimed {
					return fmt.Errorf("%s: tick %s %s, run %s", name, r.Tick.Scheduled.Format(time.TimeOnly), r.Tick.State, r.State)
				}
			}
		}
		return nil
	})
	ticks := c.timerTicks(t, "pers")
	leader := ticks[len(ticks)-1].Tick.By
	c.stopAgent(t, "node1", syscall.SIGKILL)
	down := time.Now()
	restarted := false
	defer func() {
		if !restarted {
			c.startAgent(t, "node1")
		}
	}()
	time.Sleep(15 * time.Second)
	c.startAgent(t, "node1")
	restarted = true
	up := time.Now()
	t.Logf("node1 (etcd; the timer controller was %s) down from %s to %s", leader, down.Format(time.TimeOnly), up.Format(time.TimeOnly))
	eventually(t, 60*time.Second, "runs after the downtime", func() error {
		for name := range logs {
			ok := false
			for _, r := range c.timerTicks(t, name) {
				if r.Tick.State == pidtable.TickStarted && r.Tick.Scheduled.After(up) {
					ok = true
				}
			}
			if !ok {
				return fmt.Errorf("%s: no run of a tick after %s", name, up.Format(time.TimeOnly))
			}
		}
		return nil
	})
	for name, persistent := range map[string]bool{"pers": true, "nopers": false} {
		var missed, caught int
		var during []string
		for _, r := range c.timerTicks(t, name) {
			tk := r.Tick
			if tk.Scheduled.After(down) && tk.Scheduled.Before(up) {
				during = append(during, fmt.Sprintf("%s %s", tk.Scheduled.Format(time.TimeOnly), tk.State))
			}
			switch {
			case tk.State == pidtable.TickMissed:
				missed++
			case tk.CatchUp:
				caught++
				if tk.State != pidtable.TickStarted {
					t.Errorf("%s: caught-up tick %s is %s", name, tk.Scheduled.Format(time.TimeOnly), tk.State)
				}
			}
		}
		for tick, gpids := range runsPerTick(t, logs[name]) {
			if len(gpids) != 1 {
				t.Errorf("%s: tick %s ran %d times: %v", name, tick, len(gpids), gpids)
			}
		}
		want := 0
		if persistent {
			want = 1
		}
		if caught != want || missed < 1 {
			t.Errorf("%s (Persistent=%v): %d caught up, %d missed; want %d caught up and some missed; ticks while down: %v", name, persistent, caught, missed, want, during)
		}
		t.Logf("%s (Persistent=%v): %d missed, %d caught up, none twice; ticks while down: %v", name, persistent, missed, caught, during)
	}
	if out := c.ok(t, "events"); !strings.Contains(out, "caught up missed tick") || !strings.Contains(out, "missed tick") {
		t.Errorf("events lack missed/caught up:\n%s", out)
	}
}

// TestTimerControllerKilled: the timer controller's agent is killed with
// SIGKILL while a run runs, under a timer every 5 s: every tick runs once
// (the ones during the failover late), none twice. node1 hosts the test
// cluster's only etcd member, so when it leads, its election key is
// deleted first: it goes on as a deposed leader that has not noticed (its
// writes fail on the guard), and another node leads; that one is killed.
func TestTimerControllerKilled(t *testing.T) {
	c := need(t)
	dir := t.TempDir()
	log := runLog(t)
	writeUnit(t, dir, "fo.service", fmt.Sprintf(tickService, log, "2"))
	c.ok(t, "apply", writeUnit(t, dir, "fo.timer", "[Timer]\nOnCalendar=*:*:0/5\n"))
	t.Cleanup(func() { c.ssi(t, "timer", "rm", "fo") })
	leaderOf := func() string {
		ticks := c.timerTicks(t, "fo")
		if len(ticks) == 0 {
			return ""
		}
		return ticks[len(ticks)-1].Tick.By
	}
	eventually(t, 15*time.Second, "a first run", func() error {
		if leaderOf() == "" {
			return fmt.Errorf("no tick yet")
		}
		return nil
	})
	ec := c.etcdStore(t).Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if leaderOf() == "node1" {
		resp, err := ec.Get(ctx, "/ssi/timers/leader/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if string(kv.Value) == "node1" {
				if _, err := ec.Delete(ctx, string(kv.Key)); err != nil {
					t.Fatal(err)
				}
			}
		}
		deposed := time.Now()
		eventually(t, 20*time.Second, "another timer controller", func() error {
			for _, r := range c.timerTicks(t, "fo") {
				if r.Tick.Scheduled.After(deposed) && r.Tick.By != "node1" {
					return nil
				}
			}
			return fmt.Errorf("ticks still by node1")
		})
	}
	leader := leaderOf()
	if leader == "node1" || leader == "" {
		t.Fatalf("leader %q", leader)
	}
	// Kill it while a run runs: 1 s after a tick (runs take 2 s).
	for time.Now().Second()%5 != 1 {
		time.Sleep(100 * time.Millisecond)
	}
	c.stopAgent(t, leader, syscall.SIGKILL)
	killed := time.Now()
	restarted := false
	defer func() {
		if !restarted {
			c.startAgent(t, leader)
		}
	}()
	eventually(t, 60*time.Second, "ticks from a new controller", func() error {
		for _, r := range c.timerTicks(t, "fo") {
			if r.Tick.Scheduled.After(killed.Add(5*time.Second)) && r.Tick.State == pidtable.TickStarted && r.Tick.By != leader {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	c.startAgent(t, leader)
	restarted = true
	time.Sleep(11 * time.Second)

	ran := runsPerTick(t, log)
	for tick, gpids := range ran {
		if len(gpids) != 1 {
			t.Errorf("tick %s ran %d times: %v", tick, len(gpids), gpids)
		}
	}
	ticks := c.timerTicks(t, "fo")
	var around []string
	for i, r := range ticks {
		tk := r.Tick
		if i > 0 && tk.Scheduled.Sub(ticks[i-1].Tick.Scheduled) != 5*time.Second && !tk.Manual {
			t.Errorf("tick %s follows %s: a tick has no record", tk.Scheduled.Format(time.TimeOnly), ticks[i-1].Tick.Scheduled.Format(time.TimeOnly))
		}
		switch tk.State {
		case pidtable.TickStarted:
			if n := len(ran[tk.Scheduled.UTC().Format(time.RFC3339Nano)]); n != 1 {
				t.Errorf("started tick %s: %d runs", tk.Scheduled.Format(time.TimeOnly), n)
			}
		case pidtable.TickMissed:
		default:
			t.Errorf("tick %s is %s (%s)", tk.Scheduled.Format(time.TimeOnly), tk.State, tk.Reason)
		}
		if tk.Scheduled.After(killed.Add(-5*time.Second)) && tk.Scheduled.Before(killed.Add(30*time.Second)) {
			around = append(around, fmt.Sprintf("%s %s by %s on %s %s late", tk.Scheduled.Format(time.TimeOnly), tk.State, tk.By, tk.Node, tk.Started.Sub(tk.Scheduled).Round(100*time.Millisecond)))
		}
	}
	t.Logf("controller %s killed at %s; ticks around it: %v", leader, killed.Format(time.TimeOnly), around)
}

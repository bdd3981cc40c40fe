package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// withAgentArgs restarts node's agent with extra flags for the rest of the
// test, and with its own flags again at the end.
func (c *testCluster) withAgentArgs(t *testing.T, node string, args ...string) {
	t.Helper()
	old := slices.Clone(c.NodeArgs[node])
	restart := func(a []string) {
		c.stopAgent(t, node, syscall.SIGTERM)
		if c.NodeArgs == nil {
			c.NodeArgs = map[string][]string{}
		}
		c.NodeArgs[node] = a
		c.startAgent(t, node)
	}
	restart(append(slices.Clone(old), args...))
	t.Cleanup(func() { restart(old) })
}

// TestRetentionArchives: with a short --retention, an ended job leaves the
// live table (/ssi/procs/) for the history; `ssi wait` still gives its exit
// status at once, `ssi ps -a` still lists it (archived), `ssi ps` without -a
// does not, and `ssi logs` says its output is gone and why. A running job
// stays.
func TestRetentionArchives(t *testing.T) {
	c := need(t)
	c.withAgentArgs(t, "node3", "--retention=2s")
	ended := c.detach(t, "--node", "node3", "--", "sh", "-c", "exit 7")
	running := c.detach(t, "--node", "node3", "--", "sleep", "600")
	defer c.kill(t, running)
	store := c.etcdStore(t)
	ctx := context.Background()
	// The agent's gc runs every 30 s.
	eventually(t, 75*time.Second, "the ended job leaves the live table", func() error {
		p, _, err := store.Get(ctx, ended)
		if errors.Is(err, pidtable.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("still in /ssi/procs/: %+v, %v", p, err)
	})
	p, _, err := store.Find(ctx, ended)
	if err != nil || p.Archived.IsZero() || p.ExitCode == nil || *p.ExitCode != 7 {
		t.Fatalf("archived record: %+v, %v", p, err)
	}
	start := time.Now()
	r := c.ssi(t, "wait", fmt.Sprint(ended))
	if r.code != 7 || !strings.Contains(r.stdout, "exited 7") {
		t.Fatalf("ssi wait on an archived job: %v", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("ssi wait on an archived job took %s", d)
	}
	var procs []api.ProcInfo
	if err := json.Unmarshal([]byte(c.ok(t, "ps", "-A", "-a", "-o", "json")), &procs); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(procs, func(p api.ProcInfo) bool { return p.GPID == ended })
	if i < 0 || procs[i].Archived.IsZero() || procs[i].State != pidtable.Exited {
		t.Fatalf("ssi ps -A -a: gpid %d missing or not archived", ended)
	}
	if !slices.ContainsFunc(procs, func(p api.ProcInfo) bool { return p.GPID == running && p.State == pidtable.Running }) {
		t.Fatalf("ssi ps -A -a: the running job %d is missing", running)
	}
	if out := c.ok(t, "ps", "-A"); strings.Contains(out, fmt.Sprintf("\n%d ", ended)) {
		t.Fatalf("ssi ps -A (no -a) lists the archived job:\n%s", out)
	}
	if r := c.ssi(t, "logs", fmt.Sprint(ended)); r.code == 0 || !strings.Contains(r.stderr, "--retention") {
		t.Fatalf("ssi logs of an archived job: %v", r)
	}
	if p, _, err := store.Get(ctx, running); err != nil || p.State != pidtable.Running {
		t.Fatalf("the running job's record: %+v, %v", p, err)
	}
}

// synthetic writes n records straight into etcd, in the layout pidtable
// writes, from gpid base on: nodes fake0..fake999 (no agent), users
// alternating between the given ones, every fifth ended (exited), every
// eleventh lost. It returns a cleanup that deletes them.
func synthetic(t *testing.T, c *testCluster, base uint64, n int, users []string) func() {
	t.Helper()
	ec := c.etcdStore(t).Client()
	ctx := context.Background()
	now := time.Now().UTC()
	var ops []clientv3.Op
	flush := func() {
		if _, err := ec.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range n {
		p := syntheticProc(base, i, users, now)
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(pidtable.ProcKey(p.GPID), string(b)))
		if len(ops) == 128 {
			flush()
		}
	}
	if len(ops) > 0 {
		flush()
	}
	return func() {
		_, _ = ec.Delete(ctx, pidtable.ProcKey(base), clientv3.WithRange(pidtable.ProcKey(base+uint64(n))))
	}
}

func syntheticProc(base uint64, i int, users []string, now time.Time) pidtable.Proc {
	p := pidtable.Proc{
		GPID: base + uint64(i), Node: fmt.Sprintf("fake%d", i%1000), Epoch: 1, State: pidtable.Running,
		PID: 1000 + i, InitPID: 999 + i, User: users[i%len(users)], UID: 1000, GID: 1000,
		Argv: []string{"sleep", "3600"}, Workdir: "/", Created: now, Started: now, Arrived: now,
	}
	switch {
	case i%11 == 0:
		p.State, p.Error, p.Ended = pidtable.Lost, "synthetic", now
	case i%5 == 0:
		code := i % 3
		p.State, p.ExitCode, p.Ended = pidtable.Exited, &code, now
	}
	return p
}

// TestPsPaged: `ssi ps -A` over 20,000 synthetic records streams them all, in
// gpid order, with the counts the filters select (node, state, -a, --limit
// with the next gpid on stderr), as a table and as JSON; a user who is not
// an admin sees only their own.
func TestPsPaged(t *testing.T) {
	c := need(t)
	uid, gid := ensureUser(t, "ssitest7")
	cfg := c.userConfig(t, "ssitest7", uid, gid)
	const n, base = 20000, 50_000_000
	users := []string{"root", "ssitest7", "nobody-synthetic"}
	defer synthetic(t, c, base, n, users)()
	now := time.Now()
	want := func(keep func(pidtable.Proc) bool) int {
		k := 0
		for i := range n {
			if keep(syntheticProc(base, i, users, now)) {
				k++
			}
		}
		return k
	}
	ours := func(out []api.ProcInfo) []api.ProcInfo {
		return slices.DeleteFunc(out, func(p api.ProcInfo) bool { return p.GPID < base || p.GPID >= base+n })
	}
	psJSON := func(args ...string) []api.ProcInfo {
		t.Helper()
		var out []api.ProcInfo
		if err := json.Unmarshal([]byte(c.ok(t, append([]string{"ps", "-o", "json"}, args...)...)), &out); err != nil {
			t.Fatal(err)
		}
		if !slices.IsSortedFunc(out, func(a, b api.ProcInfo) int { return int(a.GPID) - int(b.GPID) }) {
			t.Fatalf("ps %v: not in gpid order", args)
		}
		return ours(out)
	}
	start := time.Now()
	all := psJSON("-A", "-a")
	t.Logf("ssi ps -A -a -o json over %d records: %s", n, time.Since(start).Round(time.Millisecond))
	if len(all) != n {
		t.Fatalf("ps -A -a: %d synthetic rows, want %d", len(all), n)
	}
	for _, tc := range []struct {
		args []string
		keep func(pidtable.Proc) bool
	}{
		{[]string{"-A"}, func(p pidtable.Proc) bool { return !p.State.Ended() }},
		{[]string{"-A", "--node", "fake7"}, func(p pidtable.Proc) bool { return p.Node == "fake7" && !p.State.Ended() }},
		{[]string{"-A", "--state", "lost"}, func(p pidtable.Proc) bool { return p.State == pidtable.Lost }},
		{[]string{"-A", "-a", "--node", "fake10", "--state", "exited,running"}, func(p pidtable.Proc) bool {
			return p.Node == "fake10" && (p.State == pidtable.Exited || p.State == pidtable.Running)
		}},
	} {
		if got, w := len(psJSON(tc.args...)), want(tc.keep); got != w {
			t.Errorf("ps %v: %d synthetic rows, want %d", tc.args, got, w)
		}
	}
	// The table: one line per row, plus the header.
	start = time.Now()
	table := c.ok(t, "ps", "-A", "-a")
	t.Logf("ssi ps -A -a (table): %s", time.Since(start).Round(time.Millisecond))
	rows := 0
	for _, l := range strings.Split(table, "\n") {
		var g uint64
		if _, err := fmt.Sscan(l, &g); err == nil && g >= base {
			rows++
		}
	}
	if rows != n {
		t.Fatalf("ps -A -a table: %d synthetic lines, want %d", rows, n)
	}
	// --limit: the rows, and the gpid to go on after.
	r := c.ssi(t, "ps", "-A", "-a", "--after", fmt.Sprint(base-1), "--limit", "100", "-o", "json")
	var limited []api.ProcInfo
	if err := json.Unmarshal([]byte(r.stdout), &limited); r.code != 0 || err != nil || len(limited) != 100 {
		t.Fatalf("ps --limit 100: %d rows, %v, %v", len(limited), err, r.stderr)
	}
	if next := fmt.Sprintf("--after %d", limited[99].GPID); !strings.Contains(r.stderr, next) {
		t.Fatalf("ps --limit 100: stderr %q does not say %q", r.stderr, next)
	}
	// A user who is not an admin: their own only, -A or not.
	for _, args := range [][]string{{"ps", "-A", "-a", "-o", "json"}, {"ps", "-a", "-o", "json"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		r := runCmd(t, c.as(ctx, cfg, uid, gid, args...))
		cancel()
		var mine []api.ProcInfo
		if err := json.Unmarshal([]byte(r.stdout), &mine); r.code != 0 || err != nil {
			t.Fatalf("%v as ssitest7: %v, %v", args, r, err)
		}
		for _, p := range mine {
			if p.User != "ssitest7" {
				t.Fatalf("%v as ssitest7 lists gpid %d of %s", args, p.GPID, p.User)
			}
		}
		if got, w := len(ours(mine)), want(func(p pidtable.Proc) bool { return p.User == "ssitest7" }); got != w {
			t.Fatalf("%v as ssitest7: %d synthetic rows, want %d", args, got, w)
		}
	}
}

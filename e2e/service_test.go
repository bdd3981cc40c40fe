package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// replicas returns the live replicas of a service, by gpid.
func (c *testCluster) replicas(t *testing.T, name string) []api.ProcInfo {
	t.Helper()
	var out []api.ProcInfo
	for _, p := range c.ps(t) {
		if p.Service == name && !p.State.Ended() && p.NodeReady {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GPID < out[j].GPID })
	return out
}

// waitReplicas waits until name has n running replicas (on n distinct nodes
// when distinct) and returns them.
func (c *testCluster) waitReplicas(t *testing.T, name string, n int, distinct bool, timeout time.Duration) []api.ProcInfo {
	t.Helper()
	var reps []api.ProcInfo
	eventually(t, timeout, fmt.Sprintf("%s at %d replicas", name, n), func() error {
		reps = c.replicas(t, name)
		nodes := map[string]bool{}
		for _, r := range reps {
			if r.State != pidtable.Running {
				return fmt.Errorf("gpid %d is %s", r.GPID, r.State)
			}
			nodes[r.Node] = true
		}
		if len(reps) != n || (distinct && len(nodes) != n) {
			return fmt.Errorf("%d replicas on %d nodes", len(reps), len(nodes))
		}
		return nil
	})
	return reps
}

func gpidsOf(ps []api.ProcInfo) []uint64 {
	var out []uint64
	for _, p := range ps {
		out = append(out, p.GPID)
	}
	return out
}

func writeUnit(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const webUnit = `[Unit]
Description=web test service

[Service]
Environment=GREETING=hello
ExecStart=/bin/sh -c "echo $${GREETING} from $${SSI_GPID} %s; exec sleep 100000"
Restart=always
RestartSec=200ms
TimeoutStopSec=5s

[X-SSI]
Replicas=3
Spread=node
`

// TestService: apply, crash restart, scale, unchanged and changed re-apply
// (rolling), rm.
func TestService(t *testing.T) {
	c := need(t)
	dir := t.TempDir()
	unit := writeUnit(t, dir, "web.service", fmt.Sprintf(webUnit, "v1"))
	out := c.ok(t, "apply", unit)
	if !strings.Contains(out, "web: created (3 replicas)") {
		t.Fatalf("apply printed %q", out)
	}
	t.Cleanup(func() { c.ssi(t, "service", "rm", "web") })
	start := time.Now()
	reps := c.waitReplicas(t, "web", 3, true, 30*time.Second)
	t.Logf("3 replicas on 3 nodes in %s: %v", time.Since(start).Round(time.Millisecond), gpidsOf(reps))
	eventually(t, 10*time.Second, "ssi services shows 3/3 running", func() error {
		if out := c.ok(t, "services"); !strings.Contains(out, "3/3") || !strings.Contains(out, "running") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})

	// A crashed replica is restarted.
	victim := reps[0]
	c.ok(t, "kill", "-s", "KILL", fmt.Sprint(victim.GPID))
	start = time.Now()
	eventually(t, 30*time.Second, "replacement of the killed replica", func() error {
		now := c.replicas(t, "web")
		if len(now) != 3 || slices.Contains(gpidsOf(now), victim.GPID) {
			return fmt.Errorf("replicas %v", gpidsOf(now))
		}
		return nil
	})
	t.Logf("killed replica replaced in %s", time.Since(start).Round(time.Millisecond))
	c.waitReplicas(t, "web", 3, true, 30*time.Second)
	if out := c.ok(t, "services"); !strings.Contains(out, "web") {
		t.Fatalf("services: %s", out)
	}

	// Logs: every replica, prefixed gpid/node.
	logs := c.ok(t, "service", "logs", "web")
	if !strings.Contains(logs, "hello from") {
		t.Fatalf("service logs: %q", logs)
	}
	t.Logf("ssi services:\n%s\nssi ps -A:\n%s", c.ok(t, "services"), c.ok(t, "ps", "-A"))
	status := c.ok(t, "service", "status", "web")
	t.Logf("service status:\n%s", status)

	// Scale: Spread=node on 3 nodes cannot hold 5: 3 and a shortfall.
	c.ok(t, "service", "scale", "web", "5")
	eventually(t, 15*time.Second, "shortfall reported", func() error {
		if out := c.ok(t, "services"); !strings.Contains(out, "degraded") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	// Spread=any via a changed file: 5, then scale to 1.
	unit = writeUnit(t, dir, "web.service", strings.Replace(fmt.Sprintf(webUnit, "v1"), "Spread=node", "Spread=any", 1))
	if out := c.ok(t, "apply", unit); !strings.Contains(out, "replicas kept") {
		t.Fatalf("apply of a spread change printed %q", out)
	}
	// The file says Replicas=3 again.
	c.ok(t, "service", "scale", "web", "5")
	c.waitReplicas(t, "web", 5, false, 30*time.Second)
	c.ok(t, "service", "scale", "web", "1")
	c.waitReplicas(t, "web", 1, false, 30*time.Second)
	c.ok(t, "service", "scale", "web", "3")
	reps = c.waitReplicas(t, "web", 3, false, 30*time.Second)

	// Unchanged: nothing happens.
	if out := c.ok(t, "apply", unit); !strings.Contains(out, "web: unchanged") {
		t.Fatalf("re-apply printed %q", out)
	}
	time.Sleep(2 * time.Second)
	if now := gpidsOf(c.replicas(t, "web")); !slices.Equal(now, gpidsOf(reps)) {
		t.Fatalf("unchanged apply changed replicas: %v to %v", gpidsOf(reps), now)
	}

	// Changed: a rolling replacement, never fewer than 3 running.
	unit = writeUnit(t, dir, "web.service", strings.Replace(fmt.Sprintf(webUnit, "v2"), "Spread=node", "Spread=any", 1))
	if out := c.ok(t, "apply", unit); !strings.Contains(out, "rolling") {
		t.Fatalf("changed apply printed %q", out)
	}
	c.ok(t, "service", "scale", "web", "3")
	old := gpidsOf(reps)
	minLive := 3
	start = time.Now()
	eventually(t, 60*time.Second, "rolling replacement", func() error {
		now := c.replicas(t, "web")
		if len(now) < minLive {
			minLive = len(now)
		}
		for _, r := range now {
			if slices.Contains(old, r.GPID) || !strings.Contains(strings.Join(r.Argv, " "), "v2") {
				return fmt.Errorf("old replicas remain: %v", gpidsOf(now))
			}
		}
		if len(now) != 3 {
			return fmt.Errorf("%d replicas", len(now))
		}
		return nil
	})
	t.Logf("rolling replacement of 3 replicas in %s; fewest live replicas seen: %d", time.Since(start).Round(time.Millisecond), minLive)
	if minLive < 2 {
		t.Errorf("rolling update left %d replicas live at some point", minLive)
	}

	// rm: every replica stops, the service is gone.
	reps = c.replicas(t, "web")
	if out := c.ok(t, "service", "rm", "web"); !strings.Contains(out, "web: removed") {
		t.Fatalf("rm printed %q", out)
	}
	for _, r := range reps {
		if p := c.proc(t, r.GPID); !p.State.Ended() {
			t.Errorf("gpid %d is %s after rm", r.GPID, p.State)
		}
	}
	if out := c.ok(t, "services"); strings.Contains(out, "web") {
		t.Fatalf("services after rm: %s", out)
	}
}

// TestServiceBadInput: malformed units, unknown directives, bad replicas,
// rm of an unknown name, a User= the caller may not run as.
func TestServiceBadInput(t *testing.T) {
	c := need(t)
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, want string }{
		{"bad1.service", "[Service]\nExecStart=/bin/true\nthis is not an option\n", "bad1.service:3: malformed line"},
		{"bad2.service", "[Service]\nExecStart=/bin/true\n[X-SSI]\nReplicas=0\n", "bad2.service:4: Replicas=0"},
		{"bad3.service", "[Service]\nExecStart=/bin/true\n[X-SSI]\nReplicas=-1\n", "bad3.service:4: Replicas=-1"},
		{"bad4.service", "[Service]\nExecStart=/bin/true\n[X-SSI]\nReplicas=100000\n", "from 1 to 1000"},
		{"bad5.service", "[Service]\nExecStart=/bin/sh -c 'unterminated\n", "bad5.service:2: ExecStart=: unterminated"},
	} {
		r := c.ssi(t, "apply", writeUnit(t, dir, tc.name, tc.body))
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "nothing was applied") {
			t.Errorf("%s: %v; want an error with %q", tc.name, r, tc.want)
		}
	}
	if out := c.ok(t, "services"); strings.Contains(out, "bad") {
		t.Errorf("a malformed unit created a service: %s", out)
	}
	// An unknown directive: a warning with file:line, and the service applied.
	r := c.ssi(t, "apply", writeUnit(t, dir, "warn.service", "[Service]\nExecStart=/bin/sleep 1000\nFrobnicate=yes\n"))
	if r.code != 0 || !strings.Contains(r.stderr, "warn.service:3: [Service] Frobnicate= is not supported") {
		t.Errorf("unknown directive: %v", r)
	}
	c.ok(t, "service", "rm", "warn")
	if r := c.ssi(t, "service", "rm", "nosuch"); r.code == 0 || !strings.Contains(r.stderr, `no service "nosuch"`) {
		t.Errorf("rm of an unknown service: %v", r)
	}
}

// TestServiceNodeDeath: a node's agent and its jobs die; its replicas are
// started elsewhere within the lease TTL plus a start.
func TestServiceNodeDeath(t *testing.T) {
	c := need(t)
	dir := t.TempDir()
	unit := writeUnit(t, dir, "nd.service", "[Service]\nExecStart=/bin/sleep 100000\nRestart=always\n[X-SSI]\nReplicas=3\nSpread=any\n")
	c.ok(t, "apply", unit)
	t.Cleanup(func() { c.ssi(t, "service", "rm", "nd") })
	reps := c.waitReplicas(t, "nd", 3, false, 30*time.Second)
	const dead = "node3"
	var onDead []api.ProcInfo
	for _, r := range reps {
		if r.Node == dead {
			onDead = append(onDead, r)
		}
	}
	if len(onDead) == 0 {
		t.Fatalf("no replica on %s: %v", dead, reps)
	}
	// Kill the node: its agent, then its jobs (init is PID 1 of each job).
	c.stopAgent(t, dead, syscall.SIGKILL)
	for _, r := range onDead {
		_ = syscall.Kill(r.InitPID, syscall.SIGKILL)
	}
	killed := time.Now()
	t.Cleanup(func() { c.startAgent(t, dead) })
	eventually(t, 60*time.Second, "replicas back to 3 on live nodes", func() error {
		now := c.replicas(t, "nd")
		if len(now) != 3 {
			return fmt.Errorf("%d live replicas", len(now))
		}
		for _, r := range now {
			if r.Node == dead || r.State != pidtable.Running {
				return fmt.Errorf("gpid %d %s on %s", r.GPID, r.State, r.Node)
			}
		}
		return nil
	})
	t.Logf("node %s killed: replicas back to 3 in %s (lease TTL 5s + start)", dead, time.Since(killed).Round(time.Millisecond))
}

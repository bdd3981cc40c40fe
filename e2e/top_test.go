package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/internal/testenv"
)

// needTool returns the path of a command, installing its Debian package with
// apt-get when it is missing; it skips the test (fails in CI) if that fails.
func needTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", pkg)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		testenv.Skip(t, "needs %s (apt-get install %s failed: %v: %s)", tool, pkg, err, lastLines(string(out), 3))
	}
	p, err := exec.LookPath(tool)
	if err != nil {
		testenv.Skip(t, "needs %s: not found after apt-get install %s", tool, pkg)
	}
	return p
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], " | ")
}

// tmuxTop runs `ssi top` in a detached 80x24 tmux session of its own server.
type tmuxTop struct {
	t          *testing.T
	tmux, sock string
}

func startTop(t *testing.T, c *testCluster, args ...string) *tmuxTop {
	t.Helper()
	tm := &tmuxTop{t: t, tmux: needTool(t, "tmux", "tmux"), sock: fmt.Sprintf("ssi-e2e-top-%d", os.Getpid())}
	shell := fmt.Sprintf("SSI_CONFIG=%s TERM=xterm-256color %s top %s; sleep 30", c.admin, filepath.Join(c.bin, "ssi"), strings.Join(args, " "))
	tm.run("new-session", "-d", "-s", "top", "-x", "80", "-y", "24", shell)
	t.Cleanup(func() { _ = exec.Command(tm.tmux, "-L", tm.sock, "kill-server").Run() })
	return tm
}

func (tm *tmuxTop) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command(tm.tmux, append([]string{"-L", tm.sock}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

// keys sends keys one by one (tmux key names: Enter, Home, Escape...).
func (tm *tmuxTop) keys(keys ...string) {
	tm.t.Helper()
	for _, k := range keys {
		tm.run("send-keys", "-t", "top", k)
		time.Sleep(150 * time.Millisecond)
	}
}

func (tm *tmuxTop) screen() string { tm.t.Helper(); return tm.run("capture-pane", "-p", "-t", "top") }

// waitScreen waits until ok accepts the screen and returns it.
func (tm *tmuxTop) waitScreen(what string, ok func(string) error) string {
	tm.t.Helper()
	var s string
	eventually(tm.t, 30*time.Second, what, func() error {
		s = tm.screen()
		if err := ok(s); err != nil {
			return fmt.Errorf("%w; screen:\n%s", err, s)
		}
		return nil
	})
	return s
}

// tableRows returns the gpids of the process rows on a screen, in order.
func tableRows(screen string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(screen, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "GPID" {
			in = true
			continue
		}
		if in && len(f) > 1 && strings.HasPrefix(f[1], "node") {
			out = append(out, f[0])
		}
	}
	return out
}

func TestTopInteractive(t *testing.T) {
	c := need(t)
	mark := fmt.Sprintf("topmark%d", time.Now().UnixNano()%1e6)
	idle := c.detach(t, "--node", "node1", "--", "sh", "-c", ": "+mark+"; exec sleep 600")
	busy := c.detach(t, "--node", "node2", "--", "sh", "-c", ": "+mark+"; while :; do :; done")
	defer c.kill(t, idle, busy)
	tm := startTop(t, c, "-d", "500ms")
	tm.waitScreen("nodes and jobs shown", func(s string) error {
		for _, want := range []string{"node1 cpu[", "node2 cpu[", "node3 cpu[", "GPID", "migrating:", "q quit"} {
			if !strings.Contains(s, want) {
				return fmt.Errorf("no %q", want)
			}
		}
		return nil
	})
	tm.keys("/", "c", "m", "d", ":", mark, "Enter") // filter cmd:MARK
	g1, g2 := fmt.Sprint(idle), fmt.Sprint(busy)
	// gpids come from per-node blocks: the job started first does not
	// always have the smaller one.
	byGPID := g1 + " " + g2
	if idle > busy {
		byGPID = g2 + " " + g1
	}
	tm.keys("g")
	tm.waitScreen("sorted by gpid", func(s string) error {
		if rows := tableRows(s); strings.Join(rows, " ") != byGPID || !strings.Contains(s, "sort:GPID") {
			return fmt.Errorf("rows %v, want [%s] sorted by gpid", rows, byGPID)
		}
		return nil
	})
	tm.keys("c")
	tm.waitScreen("sorted by CPU", func(s string) error {
		if rows := tableRows(s); strings.Join(rows, " ") != g2+" "+g1 || !strings.Contains(s, "sort:CPU") {
			return fmt.Errorf("rows %v, want the busy job %s first", rows, g2)
		}
		return nil
	})
	// Migrate the idle job (node1) to the second choice (node3): first by
	// CPU it is second.
	tm.keys("c", "Home", "Down", "m")
	tm.waitScreen("migration prompt", func(s string) error {
		if !strings.Contains(s, "migrate gpid "+g1+" to:") || !strings.Contains(s, "2:node3") {
			return fmt.Errorf("no prompt to migrate gpid %s", g1)
		}
		return nil
	})
	tm.keys("2", "Enter")
	eventually(t, 60*time.Second, "the job migrated to node3", func() error {
		if p := c.proc(t, idle); p.Node != "node3" || p.State != "running" {
			return fmt.Errorf("gpid %d on %s, %s; screen:\n%s", idle, p.Node, p.State, tm.screen())
		}
		return nil
	})
	tm.waitScreen("the move reported", func(s string) error {
		if !strings.Contains(s, "migrated gpid "+g1+" node1 -> node3") {
			return fmt.Errorf("no report of the move")
		}
		return nil
	})
	// k on the busy job (first by CPU) sends TERM.
	tm.keys("c", "Home", "k", "Enter")
	eventually(t, 30*time.Second, "the busy job killed", func() error {
		if p := c.proc(t, busy); !p.State.Ended() {
			return fmt.Errorf("gpid %d still %s; screen:\n%s", busy, p.State, tm.screen())
		}
		return nil
	})
	tm.keys("q")
	tm.waitScreen("top quit", func(s string) error {
		if strings.Contains(s, "q quit") {
			return fmt.Errorf("still running")
		}
		return nil
	})
}

func TestTopBatch(t *testing.T) {
	c := need(t)
	mark := fmt.Sprintf("topbatch%d", time.Now().UnixNano()%1e6)
	g := c.detach(t, "--node", "node3", "--", "sh", "-c", ": "+mark+"; exec sleep 600")
	defer c.kill(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := runCmd(t, c.cmd(ctx, "top", "-b", "-n", "2", "-d", "300ms", "--filter", "cmd:"+mark))
	if r.code != 0 {
		t.Fatalf("top -b: %v", r)
	}
	if n := strings.Count(r.stdout, "ssi top - "); n != 2 {
		t.Fatalf("%d snapshots, want 2:\n%s", n, r.stdout)
	}
	for _, want := range []string{"NODE   STATUS", "node1  Ready", "node2  Ready", "node3  Ready", "GPID  NODE", "migrating: none"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("no %q in:\n%s", want, r.stdout)
		}
	}
	var rows int
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == fmt.Sprint(g) && f[1] == "node3" && strings.Contains(l, mark) {
			rows++
		}
	}
	if rows != 2 {
		t.Fatalf("gpid %d shown %d times, want once per snapshot:\n%s", g, rows, r.stdout)
	}
	if r := runCmd(t, c.cmd(ctx, "top", "-b", "--sort", "mem")); r.code != 2 {
		t.Fatalf("top --sort mem: %v, want exit 2", r)
	}
}

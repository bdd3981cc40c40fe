package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hollow"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// hollowNodes is how many hollow nodes TestHollow runs beside the 3 real ones.
const hollowNodes = 200

// TestHollow: 200 hollow nodes (ssi agent --hollow, one process) join the
// 3-node cluster through its etcd: ssi nodes lists all 203 Ready, ssi run
// and ssi ps -A work across both kinds (the hollow nodes' fake jobs listed
// beside a real one; ssi run --node HOLLOW, redirected by node1 to the
// hollow API, its exit status, ssi kill and ssi wait of a hollow job;
// ssi migrate of a hollow job between hollow nodes),
// hollow jobs go through running, exited and archived
// (the live table keeps only the recent ones), and a hollow node killed as
// in a crash is noticed NotReady within its lease TTL plus slack, one
// stopped cleanly at once.
func TestHollow(t *testing.T) {
	c := need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const prefix = "hol"
	// The hollow process authenticates to etcd as a node: a copy of node2's
	// certificate (no CA key).
	data := filepath.Join(c.tmp, "hollow")
	for _, f := range []string{pki.CACertFile, pki.NodeCertFile, pki.NodeKeyFile} {
		b, err := os.ReadFile(filepath.Join(c.Nodes[1].DataDir, "pki", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(data, "pki"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "pki", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// It runs in node2's network namespace, so that its agent API
	// (--hollow-api) listens on an address of node2's certificate; its
	// control API is plain HTTP on the same address. (Not 7072 and 7073:
	// node2's agent's message broker listens there.)
	ctl, apiAddr := net.JoinHostPort(c.Nodes[1].IP, "7081"), net.JoinHostPort(c.Nodes[1].IP, "7082")
	cmd := exec.Command("ip", "netns", "exec", c.Nodes[1].Namespace, filepath.Join(c.bin, "ssi"), "agent", "--hollow", fmt.Sprint(hollowNodes), "--hollow-prefix", prefix,
		"--hollow-jobs", "2", "--hollow-job-life", "10s", "--retention", "5s", "--hollow-api", apiAddr,
		"--listen", ctl, "--data-dir", data, "--etcd-endpoints", "https://"+net.JoinHostPort(c.Nodes[0].IP, "2379"), "--log-level", "warn")
	logf, err := os.Create(filepath.Join(c.tmp, "hollow.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	store := c.etcdStore(t)
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { c.removeHollow(t, store, cmd, exited, prefix) })

	// All 203 nodes listed, Ready.
	start := time.Now()
	eventually(t, 90*time.Second, "ssi nodes lists the 3 real and the hollow nodes, Ready", func() error {
		select {
		case <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("the hollow process exited: %v\n%s", waitErr, b)
		default:
		}
		ready := 0
		for _, n := range c.nodes(t) {
			if n.Ready {
				ready++
			}
		}
		if ready < 3+hollowNodes {
			return fmt.Errorf("%d Ready", ready)
		}
		return nil
	})
	t.Logf("203 nodes Ready %s after the hollow process started", time.Since(start).Round(time.Millisecond))
	if out := c.ok(t, "nodes"); !strings.Contains(out, prefix+"-200") || !strings.Contains(out, "node2") {
		t.Fatalf("ssi nodes:\n%s", out)
	}

	// ssi run on a real node, with 200 hollow nodes in the view; ps -A lists
	// it and the hollow nodes' jobs.
	runStart := time.Now()
	out := c.ok(t, "run", "--node", "node2", "--", "sh", "-c", "echo hollow-ok")
	if !strings.Contains(out, "hollow-ok") {
		t.Fatalf("ssi run printed %q", out)
	}
	t.Logf("ssi run --node node2 (attached, echo) took %s", time.Since(runStart).Round(time.Millisecond))
	// ssi run --node on a hollow node: node1 places it and redirects the
	// client to the hollow node's API, which starts a fake job; attached,
	// it ends as its command says (sleep 2: exit 0 after 2 s; exit 3).
	runStart = time.Now()
	if r := c.ssi(t, "run", "--node", prefix+"-17", "--", "sleep", "2"); r.code != 0 {
		t.Fatalf("ssi run --node %s-17 -- sleep 2: %v", prefix, r)
	}
	if d := time.Since(runStart); d < 2*time.Second || d > 10*time.Second {
		t.Errorf("ssi run -- sleep 2 on a hollow node returned after %s", d)
	}
	if r := c.ssi(t, "run", "--node", prefix+"-17", "--", "exit", "3"); r.code != 3 {
		t.Fatalf("ssi run --node %s-17 -- exit 3: %v", prefix, r)
	}
	fake := c.detach(t, "--node", prefix+"-42", "--", "sleep", "600")
	if p := c.proc(t, fake); p.Node != prefix+"-42" || p.State != pidtable.Running || p.User != "root" {
		t.Fatalf("ssi ps: the hollow job %d: %+v", fake, p)
	}
	c.ok(t, "kill", "-s", "KILL", fmt.Sprint(fake))
	if r := c.ssi(t, "wait", fmt.Sprint(fake)); r.code != 137 {
		t.Fatalf("ssi wait on a killed hollow job: %v", r)
	}
	// ssi migrate of a hollow job (forwarded by node1 to the hollow API,
	// the fake checkpointer): it moves between hollow nodes, its record
	// follows; a move to a real node is refused with the reason.
	moved := c.detach(t, "--node", prefix+"-43", "--", "sleep", "600")
	for _, to := range []string{prefix + "-44", prefix + "-45"} {
		c.ok(t, "migrate", fmt.Sprint(moved), to)
		if p := c.proc(t, moved); p.Node != to || p.State != pidtable.Running {
			t.Fatalf("after ssi migrate %d %s: %+v", moved, to, p)
		}
	}
	if r := c.ssi(t, "migrate", fmt.Sprint(moved), "node3"); r.code == 0 || !strings.Contains(r.stderr, "moves only to another hollow node") {
		t.Fatalf("ssi migrate of a hollow job to a real node: %v", r)
	}
	c.ok(t, "kill", "-s", "KILL", fmt.Sprint(moved))
	job := c.detach(t, "--node", "node3", "--", "sleep", "120")
	defer c.kill(t, job)
	eventually(t, 30*time.Second, "ssi ps -A lists the real job and the hollow nodes' jobs", func() error {
		var procs []api.ProcInfo
		if err := json.Unmarshal([]byte(c.ok(t, "ps", "-A", "-o", "json")), &procs); err != nil {
			return err
		}
		found, onHollow := false, map[string]bool{}
		for _, p := range procs {
			if p.GPID == job && p.State == pidtable.Running {
				found = true
			}
			if strings.HasPrefix(p.Node, prefix+"-") && p.State == pidtable.Running {
				onHollow[p.Node] = true
			}
		}
		if !found || len(onHollow) < hollowNodes {
			return fmt.Errorf("real job listed %v, running jobs on %d hollow nodes", found, len(onHollow))
		}
		return nil
	})

	// Hollow jobs end (life 5–15 s) and leave the live table after the
	// retention (5 s): some are archived, exited 0.
	eventually(t, 60*time.Second, "hollow jobs exited and archived", func() error {
		archived := 0
		_, err := store.ListProcs(ctx, pidtable.ListOptions{History: true}, func(p pidtable.Proc, _ int64) error {
			if strings.HasPrefix(p.Node, prefix+"-") && !p.Archived.IsZero() && p.State == pidtable.Exited && p.ExitCode != nil && *p.ExitCode == 0 {
				archived++
			}
			return nil
		})
		if err != nil || archived < hollowNodes {
			return fmt.Errorf("%d archived (err %v)", archived, err)
		}
		return nil
	})

	// A hollow node killed (a crash: its lease is left to expire) is noticed
	// NotReady within its TTL plus slack; one stopped (lease revoked), at once.
	ready := func(name string) bool { return c.nodes(t)[name].Ready }
	victim, stopped := prefix+"-17", prefix+"-18"
	killedAt := control(t, ctl, victim, "kill")
	eventually(t, time.Duration(hollow.DefaultLeaseTTL)*time.Second+10*time.Second*timingSlack(), victim+" NotReady", func() error {
		if ready(victim) {
			return fmt.Errorf("%s still Ready", victim)
		}
		return nil
	})
	noticed := time.Since(killedAt)
	t.Logf("killed %s noticed NotReady by ssi nodes after %s (lease TTL %ds)", victim, noticed.Round(time.Millisecond), hollow.DefaultLeaseTTL)
	if noticed > time.Duration(hollow.DefaultLeaseTTL)*time.Second+3*time.Second*timingSlack() {
		t.Errorf("killed hollow node noticed after %s: want within its lease TTL (%ds) + 3 s", noticed, hollow.DefaultLeaseTTL)
	}
	stoppedAt := control(t, ctl, stopped, "stop")
	eventually(t, 10*time.Second, stopped+" NotReady", func() error {
		if ready(stopped) {
			return fmt.Errorf("%s still Ready", stopped)
		}
		return nil
	})
	if d := time.Since(stoppedAt); d > 3*time.Second*timingSlack() {
		t.Errorf("stopped hollow node noticed after %s: its lease is revoked, want within 3 s", d)
	}
	nodes := c.nodes(t)
	for _, n := range []string{prefix + "-16", prefix + "-19", "node1", "node2", "node3"} {
		if !nodes[n].Ready {
			t.Errorf("%s NotReady after %s was killed", n, victim)
		}
	}
}

// control asks the hollow process to kill or stop node, and returns when it did.
func control(t *testing.T, addr, node, verb string) time.Time {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/nodes/"+node+"/"+verb, "", nil)
	at := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s: %s", verb, node, resp.Status, b)
	}
	return at
}

// removeHollow stops the hollow process (its nodes end their jobs and
// revoke their leases), then removes every trace of its nodes
// (hollow.Remove): their registrations and their records, live and
// archived, so that the tests after this one see the 3-node cluster they
// expect.
func (c *testCluster) removeHollow(t *testing.T, store *pidtable.Store, cmd *exec.Cmd, exited <-chan struct{}, prefix string) {
	select {
	case <-exited:
	default:
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	names := make([]string, hollowNodes)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	if err := hollow.Remove(ctx, store.Client(), names); err != nil {
		t.Errorf("remove the hollow nodes: %v", err)
	}
}

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// on runs the CLI against the agent (and so the broker) of node.
func (c *testCluster) on(node string, args ...string) []string {
	for _, n := range c.Nodes {
		if n.Name == node {
			return append([]string{"--endpoint", n.API()}, args...)
		}
	}
	panic("no node " + node)
}

// startSSI starts `ssi args...` in the background; wait returns its result.
func (c *testCluster) startSSI(t *testing.T, timeout time.Duration, args ...string) (wait func() result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := c.cmd(ctx, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	return func() result {
		defer cancel()
		err := cmd.Wait()
		r := result{stdout: out.String(), stderr: errb.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		}
		return r
	}
}

// TestMsgPubSubRequestAcrossNodes: a subscriber on node2's broker gets what
// is published on node1's; a job on node2 answers requests sent on node1's
// broker, finding the broker from SSI_NATS_URL.
func TestMsgPubSubRequestAcrossNodes(t *testing.T) {
	c := need(t)
	wait := c.startSSI(t, 60*time.Second, c.on("node2", "sub", "greetings.>", "-n", "3", "--subject")...)
	time.Sleep(2 * time.Second) // the subscription reaches node1's broker
	for i := 1; i <= 3; i++ {
		c.ok(t, c.on("node1", "pub", fmt.Sprintf("greetings.m%d", i), fmt.Sprintf("hello %d", i))...)
	}
	r := wait()
	if want := "greetings.m1 hello 1\ngreetings.m2 hello 2\ngreetings.m3 hello 3\n"; r.code != 0 || r.stdout != want {
		t.Fatalf("sub on node2: %v, want stdout %q", r, want)
	}

	// Request/reply: the replier is a job on node2, which reaches the broker
	// through SSI_NATS_URL with its own credential (SSI_CONFIG).
	gpid := c.detach(t, "--node", "node2", "--", filepath.Join(c.bin, "ssi"), "reply", "svc.echo")
	defer c.kill(t, gpid)
	var last result
	eventually(t, 30*time.Second, "a reply from the job on node2", func() error {
		last = c.ssi(t, c.on("node1", "request", "svc.echo", "ping", "--timeout", "2s")...)
		if last.code == 0 && last.stdout == "ping (from node2)\n" {
			return nil
		}
		return fmt.Errorf("request: %v", last)
	})
	env := c.ok(t, "run", "--node", "node2", "--", "sh", "-c", "echo $SSI_NATS_URL")
	if !strings.HasPrefix(env, "tls://"+c.Nodes[1].IP+":7072,") || strings.Count(env, "tls://") != 3 {
		t.Errorf("SSI_NATS_URL of a job on node2 = %q, want node2's broker first and the others after it", env)
	}

	// Bad input.
	big := c.cmd(context.Background(), "pub", "big", "-")
	big.Stdin = strings.NewReader(strings.Repeat("x", 2<<20) + "\n")
	if r := runCmd(t, big); r.code == 0 || !strings.Contains(r.stderr, "the broker takes at most 1048576 bytes") {
		t.Errorf("a 2 MiB message: exit %d, stderr %.200q", r.code, r.stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pub", "a.*", "x"}, "wildcards are for subscriptions"},
		{[]string{"pub", "a..b", "x"}, "empty token"},
		{[]string{"request", "nobody.here", "x", "--timeout", "1s"}, "no one answers"},
	} {
		r := c.ssi(t, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("ssi %s: %v; want an error with %q", strings.Join(tc.args, " "), r, tc.want)
		}
	}
}

// TestMsgUserIsolation: a user's subjects are theirs; another user is
// refused on them with the rule in the error, and sees none of their topics.
func TestMsgUserIsolation(t *testing.T) {
	c := need(t)
	uid1, gid1 := ensureUser(t, "ssitest1")
	uid2, gid2 := ensureUser(t, "ssitest2")
	cfg1, cfg2 := c.userConfig(t, "ssitest1", uid1, gid1), c.userConfig(t, "ssitest2", uid2, gid2)
	as := func(cfg string, uid, gid int, args ...string) result {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return runCmd(t, c.as(ctx, cfg, uid, gid, args...))
	}
	// ssitest1's own pub/sub works (its subscription, on node2's broker,
	// is started as that user).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub := c.as(ctx, cfg1, uid1, gid1, c.on("node2", "sub", "orders", "-n", "1")...)
	var out strings.Builder
	sub.Stdout = &out
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if r := as(cfg1, uid1, gid1, "pub", "orders", "mine"); r.code != 0 {
		t.Fatalf("ssitest1 pub: %v", r)
	}
	if err := sub.Wait(); err != nil || out.String() != "mine\n" {
		t.Fatalf("ssitest1 sub: %v %q", err, out.String())
	}
	if r := as(cfg1, uid1, gid1, "topic", "create", "private"); r.code != 0 {
		t.Fatalf("ssitest1 topic create: %v", r)
	}
	defer as(cfg1, uid1, gid1, "topic", "rm", "private")

	// ssitest2 on ssitest1's subjects: refused.
	for _, args := range [][]string{
		{"sub", "/u.ssitest1.orders", "-n", "1"},
		{"pub", "/u.ssitest1.orders", "forged"},
		{"sub", "/u.>", "-n", "1"},
	} {
		r := as(cfg2, uid2, gid2, args...)
		if r.code == 0 || !strings.Contains(r.stderr, "Permissions Violation") || !strings.Contains(r.stderr, "user ssitest2 may use only their own subjects (u.ssitest2.>") {
			t.Errorf("ssitest2 %s: %v; want refused", strings.Join(args, " "), r)
		}
	}
	r := as(cfg2, uid2, gid2, "topics")
	if r.code != 0 || strings.Contains(r.stdout, "private") {
		t.Errorf("ssitest2 topics: %v; want none of ssitest1's", r)
	}
	if r := as(cfg2, uid2, gid2, "topic", "rm", "private"); r.code == 0 {
		t.Errorf("ssitest2 removed ssitest1's topic: %v", r)
	}
	r = as(cfg1, uid1, gid1, "topics")
	if r.code != 0 || !strings.Contains(r.stdout, "private") {
		t.Errorf("ssitest1 topics: %v; want its topic", r)
	}
	// An admin's grant lets ssitest2 read ssitest1's orders (on its next
	// connections); revoked, refused again.
	if r := as(cfg2, uid2, gid2, "topic", "grant", "ssitest2", "u.ssitest1.orders"); r.code == 0 || !strings.Contains(r.stderr, "admin") {
		t.Errorf("ssitest2 granting itself: %v; want refused", r)
	}
	c.ok(t, "topic", "grant", "ssitest2", "u.ssitest1.orders", "--sub-only")
	gctx, gcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer gcancel()
	gsub := c.as(gctx, cfg2, uid2, gid2, c.on("node3", "sub", "/u.ssitest1.orders", "-n", "1")...)
	var gout, gerr strings.Builder
	gsub.Stdout, gsub.Stderr = &gout, &gerr
	if err := gsub.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if r := as(cfg1, uid1, gid1, "pub", "orders", "shared"); r.code != 0 {
		t.Fatalf("ssitest1 pub: %v", r)
	}
	if err := gsub.Wait(); err != nil || gout.String() != "shared\n" {
		t.Errorf("ssitest2 sub with a grant: %v %q %q", err, gout.String(), gerr.String())
	}
	if r := as(cfg2, uid2, gid2, "pub", "/u.ssitest1.orders", "x"); r.code == 0 {
		t.Errorf("ssitest2 published with a subscribe-only grant: %v", r)
	}
	c.ok(t, "topic", "revoke", "ssitest2", "u.ssitest1.orders")
	if r := as(cfg2, uid2, gid2, "sub", "/u.ssitest1.orders", "-n", "1"); r.code == 0 || !strings.Contains(r.stderr, "Permissions Violation") {
		t.Errorf("ssitest2 sub after the revoke: %v; want refused", r)
	}
	if r := c.ssi(t, "topic", "grant", "ssitest2", "_INBOX.>"); r.code != 2 || !strings.Contains(r.stderr, "one user's namespace") {
		t.Errorf("grant of _INBOX.>: %v; want a usage error", r)
	}

	// An admin may use any subject.
	if r := c.ssi(t, "pub", "/u.ssitest1.orders", "from root"); r.code != 0 {
		t.Errorf("admin pub to a user's subject: %v", r)
	}
}

// TestMsgDurableTopic: a topic with 3 replicas; N messages published by a
// job on node1 while the durable subscriber, a job on node2 (ssi run
// --reconnects), is migrated to node3 and then node1 while it receives,
// stopped, started again on node3 and then node1, and node3's agent (its
// broker) is killed: the subscriber's runs together printed every message
// once, in order.
func TestMsgDurableTopic(t *testing.T) {
	c := need(t)
	const n = 10000
	// Right after the cluster starts, the brokers' JetStream may not know
	// its three peers yet.
	eventually(t, 30*time.Second, "topic created", func() error {
		if r := c.ssi(t, "topic", "create", "stream", "--replicas", "3", "--max-age", "1h"); r.code != 0 {
			return fmt.Errorf("%v", r)
		}
		return nil
	})
	defer c.ssi(t, "topic", "rm", "stream")
	if r := c.ssi(t, "topic", "create", "stream"); r.code == 0 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("second topic create: %v", r)
	}
	ssi := filepath.Join(c.bin, "ssi")
	// --reconnects: its connection to the broker is closed by its moves,
	// and the NATS client connects again (to any broker SSI_NATS_URL lists).
	subscriber := func(node string) uint64 {
		return c.detach(t, "--node", node, "--reconnects", "--", ssi, "sub", "stream", "--durable", "reader", "--ack-wait", "2s", "-n", "0")
	}
	logs := func(gpid uint64) string { return c.ok(t, "logs", strconv.FormatUint(gpid, 10)) }
	sub1 := subscriber("node2")
	pub := c.detach(t, "--node", "node1", "--", "sh", "-c", fmt.Sprintf("seq 1 %d | %s pub stream -", n, ssi))
	var runs []uint64
	var before []string // what the stopped runs printed
	waitLines := func(gpid uint64, lines int) {
		eventually(t, 90*time.Second, fmt.Sprintf("subscriber %d has %d lines", gpid, lines), func() error {
			if got := strings.Count(logs(gpid), "\n"); got < lines {
				return fmt.Errorf("%d lines", got)
			}
			return nil
		})
	}
	stopWhen := func(gpid uint64, lines int) {
		waitLines(gpid, lines)
		c.ok(t, "kill", "-s", "TERM", strconv.FormatUint(gpid, 10))
		eventually(t, 15*time.Second, "subscriber stopped", func() error {
			if p := c.proc(t, gpid); !p.State.Ended() {
				return fmt.Errorf("state %s", p.State)
			}
			return nil
		})
		runs = append(runs, gpid)
		before = append(before, strings.Fields(logs(gpid))...)
	}
	// The subscriber is moved while it receives: node2 → node3 → node1,
	// then stopped and started again (its durable name resumes it).
	waitLines(sub1, n/20)
	t.Logf("move 1: %s", strings.TrimSpace(c.ok(t, "migrate", strconv.FormatUint(sub1, 10), "node3")))
	waitLines(sub1, n/10)
	t.Logf("move 2: %s", strings.TrimSpace(c.ok(t, "migrate", strconv.FormatUint(sub1, 10), "node1")))
	stopWhen(sub1, n/10+n/20)
	sub2 := subscriber("node3")
	stopWhen(sub2, 1)
	// node3's agent dies, its broker with it: the topic keeps 2 of 3 replicas.
	c.stopAgent(t, "node3", syscall.SIGKILL)
	restarted := false
	defer func() {
		if !restarted {
			c.startAgent(t, "node3")
		}
	}()
	sub3 := subscriber("node1")
	runs = append(runs, sub3)
	var all []string
	eventually(t, 3*time.Minute, fmt.Sprintf("%d messages received", n), func() error {
		all = append(append([]string(nil), before...), strings.Fields(logs(sub3))...)
		if p := c.proc(t, pub); len(all) < n && p.State.Ended() && p.ExitCode != nil && *p.ExitCode != 0 {
			t.Fatalf("publisher failed: exit %d: %s", *p.ExitCode, logs(pub))
		}
		if p := c.proc(t, sub3); p.State.Ended() {
			t.Fatalf("the last subscriber ended: %+v: %s", p, c.ssi(t, "logs", strconv.FormatUint(sub3, 10)))
		}
		if len(all) < n {
			return fmt.Errorf("%d of %d", len(all), n)
		}
		return nil
	})
	c.kill(t, sub3)
	if p := c.proc(t, pub); p.State.Ended() && p.ExitCode != nil && *p.ExitCode != 0 {
		t.Errorf("publisher: %+v: %s", p, logs(pub))
	}
	for i, s := range all {
		if s != strconv.Itoa(i+1) {
			t.Fatalf("message %d is %q, want %d (in order, once each); runs %v", i, s, i+1, runs)
		}
	}
	if len(all) != n {
		t.Fatalf("%d messages, want %d", len(all), n)
	}
	// node3 back: the topic has all its messages on its three replicas.
	c.startAgent(t, "node3")
	restarted = true
	eventually(t, time.Minute, "the topic whole with node3 back", func() error {
		out := c.ok(t, "topics")
		if !strings.Contains(out, fmt.Sprintf("stream  3         %d", n)) {
			return fmt.Errorf("ssi topics: %q", out)
		}
		return nil
	})
	t.Logf("ssi topics:\n%s", c.ok(t, "topics"))
	t.Logf("%d messages in order, once each, over subscriber runs %v (the first moved node2 → node3 → node1 while it received, the others on node3 and node1); node3's broker killed", n, runs)
}

package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMoveReconnects: a job holding an established TCP connection moves
// only if it says it re-makes its connections (ssi run --reconnects): one
// without the flag is refused, and the refusal names the flag; one with it
// moves stop-and-copy and post-copy, its connection closed by each move,
// and it connects again and goes on sending, from the node it moved to.
func TestMoveReconnects(t *testing.T) {
	c := need(t)
	abs := func(name string) string {
		p, err := filepath.Abs(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	const port = "17611"
	server := c.detach(t, "--node", "node1", "--pin", "--", "python3", abs("lineserver.py"), port)
	defer c.kill(t, server)
	eventually(t, 10*time.Second, "the server listening", func() error {
		if r := c.ssi(t, "run", "--node", "node1", "--", "python3", "-c", "import socket; socket.create_connection(('"+c.Nodes[0].IP+"', "+port+"), timeout=1).close()"); r.code != 0 {
			return fmt.Errorf("%v", r)
		}
		return nil
	})
	client := func(flags ...string) uint64 {
		args := append([]string{"--node", "node2"}, flags...)
		return c.detach(t, append(args, "--", "python3", abs("reconnector.py"), c.Nodes[0].IP, port, "0.05")...)
	}
	plain := client()
	defer c.kill(t, plain)
	r := c.ssi(t, "migrate", strconv.FormatUint(plain, 10), "node3")
	if r.code == 0 || !strings.Contains(r.stderr, "established TCP connection") || !strings.Contains(r.stderr, "ssi run --reconnects") {
		t.Fatalf("ssi migrate of a job holding a connection, without --reconnects: %v", r)
	}
	if p := c.proc(t, plain); p.Node != "node2" || !pidAlive(p.PID) {
		t.Fatalf("the refused job after its move failed: %+v", p.Proc)
	}

	job := client("--reconnects")
	defer c.kill(t, job)
	if p := c.proc(t, job); !p.Reconnects {
		t.Fatalf("the record of a job run with --reconnects: %+v", p.Proc)
	}
	sent := regexp.MustCompile(`(?m)^sent (\d+)$`)
	lastSent := func() int {
		m := sent.FindAllStringSubmatch(c.ok(t, "logs", strconv.FormatUint(job, 10)), -1)
		if len(m) == 0 {
			return 0
		}
		n, _ := strconv.Atoi(m[len(m)-1][1])
		return n
	}
	for i, mv := range [][]string{{"node3"}, {"--postcopy", "node1"}} {
		before := lastSent()
		eventually(t, 10*time.Second, "the client sending", func() error {
			if n := lastSent(); n < before+10 {
				return fmt.Errorf("last sent %d", n)
			}
			return nil
		})
		out := c.ok(t, append([]string{"migrate", strconv.FormatUint(job, 10)}, mv...)...)
		t.Logf("move %d: %s", i+1, strings.TrimSpace(out))
		to := mv[len(mv)-1]
		if p := c.proc(t, job); p.Node != to || !pidAlive(p.PID) {
			t.Fatalf("after ssi migrate %v: %+v", mv, p.Proc)
		}
		// It notices its connection closed, connects again, and the server
		// gets lines it sent after the move.
		moved := lastSent()
		eventually(t, 15*time.Second, "the client reconnected and sending", func() error {
			logs := c.ok(t, "logs", strconv.FormatUint(job, 10))
			if got := strings.Count(logs, "reconnected"); got < i+1 {
				return fmt.Errorf("%d reconnections in the client's log", got)
			}
			srv := c.ok(t, "logs", strconv.FormatUint(server, 10))
			if !strings.Contains(srv, fmt.Sprintf("got %d\n", moved+5)) {
				return fmt.Errorf("the server has not got line %d", moved+5)
			}
			return nil
		})
	}
	srv := c.ok(t, "logs", strconv.FormatUint(server, 10))
	// The refused client's connection and three of the other's: before the
	// moves and after each.
	if !strings.Contains(srv, "conn 4\n") {
		t.Fatalf("the server saw fewer connections than 4:\n%s", srv)
	}
	t.Logf("client's log: %d lines sent, reconnections: %q", lastSent(), regexp.MustCompile(`(?m)^reconnected.*$`).FindAllString(c.ok(t, "logs", strconv.FormatUint(job, 10)), -1))
}

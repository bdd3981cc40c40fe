package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestJobCredential: a job uses ssi as its owner with nothing set up (its
// workload identity: SSI_CONFIG, a certificate of its user naming the job,
// written by its agent). A job on node2 runs a command on node3 with
// `ssi run` and gets its output and exit status; a job of ssitest1 lists
// its user's jobs but is refused on root's job (403), as ssitest1 is
// outside; the credential is readable by the job's user alone; and the
// credential of a job that ended is refused (401), though its certificate
// has not expired.
func TestJobCredential(t *testing.T) {
	c := need(t)
	ssi := filepath.Join(c.bin, "ssi")

	// A job runs work on another node, as its owner.
	r := c.ssi(t, "run", "--node", "node2", "--", "sh", "-c", ssi+` run --node node3 -- sh -c 'echo "hello from $SSI_NODE as $SSI_USER"; exit 3'`)
	if r.code != 3 || strings.TrimSpace(r.stdout) != "hello from node3 as root" {
		t.Fatalf("ssi run inside a job: %v, want exit 3 and the inner job's line", r)
	}

	// Another user's job is refused on root's job, as that user would be.
	victim := c.detach(t, "--node", "node3", "--", "sleep", "600")
	defer c.kill(t, victim)
	uid, gid := ensureUser(t, "ssitest1")
	cfg := c.userConfig(t, "ssitest1", uid, gid)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.as(ctx, cfg, uid, gid, "run", "--node", "node1", "--", "sh", "-c",
		`echo "$SSI_CONFIG"; while [ ! -e "$SSI_CONFIG" ]; do sleep 0.1; done; stat -c '%u %a' "$SSI_CONFIG"; `+ssi+` kill `+strconv.FormatUint(victim, 10)+`; echo "kill exit $?"; `+ssi+` ps -o json >/dev/null; echo "ps exit $?"`)
	r = runCmd(t, cmd)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 4 {
		t.Fatalf("ssitest1's job: %v", r)
	}
	if want := fmt.Sprintf("%d 600", uid); lines[1] != want {
		t.Errorf("the credential's owner and mode: %q, want %q", lines[1], want)
	}
	if lines[2] != "kill exit 1" || !strings.Contains(r.stderr, "is not yours: user ssitest1 (job ") {
		t.Errorf("ssitest1's job killing root's job: %q, stderr %q; want refused", lines[2], r.stderr)
	}
	if lines[3] != "ps exit 0" {
		t.Errorf("ssitest1's job listing its own jobs: %q, stderr %q", lines[3], r.stderr)
	}
	if p := c.proc(t, victim); !pidAlive(p.PID) {
		t.Fatalf("root's job after ssitest1's job tried to kill it: %+v", p.Proc)
	}

	// A moved job's credential is written anew by the node it moved to.
	mover := c.detach(t, "--node", "node2", "--", "sleep", "600")
	defer c.kill(t, mover)
	credPath := jobCredPath(t, c, mover)
	credServer := func() string {
		b, err := os.ReadFile(credPath)
		if err != nil {
			return err.Error()
		}
		var cc struct {
			Server string `json:"server"`
		}
		_ = json.Unmarshal(b, &cc)
		return cc.Server
	}
	nodes := c.nodes(t)
	eventually(t, 10*time.Second, "the job's credential on node2", func() error {
		if got := credServer(); got != nodes["node2"].Addr {
			return fmt.Errorf("server %q", got)
		}
		return nil
	})
	c.migrate(t, mover, "node3")
	t0 := time.Now()
	eventually(t, 10*time.Second, "the moved job's credential from node3", func() error {
		if got := credServer(); got != nodes["node3"].Addr {
			return fmt.Errorf("server %q", got)
		}
		return nil
	})
	t.Logf("a moved job's credential rewritten by its new node %s after the move", time.Since(t0).Round(10*time.Millisecond))

	// The credential of a job that ended: refused.
	keep := filepath.Join(t.TempDir(), "cred.json")
	r = c.ssi(t, "run", "--node", "node2", "--", "sh", "-c", `sleep 1; cp "$SSI_CONFIG" `+keep)
	if r.code != 0 {
		t.Fatalf("a job copying its credential: %v", r)
	}
	if err := os.Chmod(keep, 0o600); err != nil {
		t.Fatal(err)
	}
	// The attached run returns on the job's exit record in its log; its
	// record's end is committed by its agent right after (a few ms, more
	// on a loaded machine): from then on the credential is refused.
	eventually(t, 10*time.Second, "the credential of the ended job refused", func() error {
		late := c.cmd(ctx, "ps", "-A")
		late.Env = []string{"SSI_CONFIG=" + keep, "PATH=/usr/bin:/bin"}
		r = runCmd(t, late)
		if r.code == 0 || !strings.Contains(r.stderr, "that job has exited") {
			return fmt.Errorf("%v, want refused saying the job exited", r)
		}
		return nil
	})
	t.Logf("an ended job's credential: %s", strings.TrimSpace(r.stderr))
}

// jobCredPath is where the agents write gpid's credential: its SSI_CONFIG.
func jobCredPath(t *testing.T, c *testCluster, gpid uint64) string {
	t.Helper()
	r := c.ssi(t, "run", "--node", "node1", "--", "sh", "-c", `echo "$SSI_CONFIG"`)
	if r.code != 0 {
		t.Fatal(r)
	}
	return filepath.Join(filepath.Dir(filepath.Dir(strings.TrimSpace(r.stdout))), strconv.FormatUint(gpid, 10), "config.json")
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// TestBalanceAndEventsRoles: switching the balancer is an admin action, and a
// user's `ssi events` and `ssi balance status` show the events of their own
// jobs only (the phantom check's lost event of an admin's job is not theirs).
func TestBalanceAndEventsRoles(t *testing.T) {
	c := need(t)
	uid, gid := ensureUser(t, "ssitest1")
	cfg := c.userConfig(t, "ssitest1", uid, gid)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, action := range []string{"on", "off"} {
		r := runCmd(t, c.as(ctx, cfg, uid, gid, "balance", action, "--residency", "1s"))
		if r.code == 0 || !strings.Contains(r.stderr, "admin action") {
			t.Fatalf("a user's ssi balance %s: %v; want it refused as an admin action", action, r)
		}
	}
	if st := c.balance(t); st.Config.Enabled || st.Config.Residency != 0 {
		t.Fatalf("the balancer changed after refused requests: %+v", st.Config)
	}
	// An event about an admin's job (a phantom the check records lost).
	store := c.etcdStore(t)
	now := time.Now().UTC()
	p, err := store.Create(ctx, pidtable.Proc{Node: "node2", State: pidtable.Running, User: "root", Argv: []string{"phantom"}, Started: now, Arrived: now})
	if err != nil {
		t.Fatal(err)
	}
	g := strconv.FormatUint(p.GPID, 10)
	runCmd(t, c.cmd(ctx, "wait", g)) // until the check recorded it lost
	// The lost event is written just after the record (an event log, not
	// part of the transaction): wait for it.
	eventually(t, 10*time.Second, "the admin sees the lost event with its owner", func() error {
		if evs := c.events(t, p.GPID); len(evs) == 0 || evs[0].User != "root" {
			return fmt.Errorf("events of gpid %d: %+v", p.GPID, evs)
		}
		return nil
	})
	r := runCmd(t, c.as(ctx, cfg, uid, gid, "events", "-o", "json", "--gpid", g))
	if r.code != 0 || strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("ssitest1 sees events of root's job %s: %v", g, r)
	}
	r = runCmd(t, c.as(ctx, cfg, uid, gid, "events", "-o", "json"))
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var ev pidtable.Event
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events -o json line %q: %v", line, err)
		}
		if ev.GPID != 0 && ev.User != "ssitest1" {
			t.Fatalf("ssitest1 sees an event of %q's job: %+v", ev.User, ev)
		}
	}
}

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// TestPsPagedFilters: GET /v1/procs over a table of more pages than one
// (synthetic records written straight into etcd, some archived) lists, for
// every caller and query, exactly the records the query and the caller's
// visibility select, in gpid order; a limit gives the gpid to go on after,
// and going on lists the rest; a bad query is refused saying why.
func TestPsPagedFilters(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	const n = 1700 // more than three pages
	states := []pidtable.State{pidtable.Running, pidtable.Exited, pidtable.Starting, pidtable.Lost, pidtable.Migrating}
	var ops []clientv3.Op
	for i := range n {
		p := pidtable.Proc{GPID: uint64(100000 + i), Node: fmt.Sprintf("node%d", 1+i%5), User: []string{"alice", "bob", "carol"}[i%3],
			State: states[i%len(states)], Argv: []string{"sleep", "600"}, Created: time.Now().UTC()}
		key := pidtable.ProcKey(p.GPID)
		if p.State.Ended() {
			code := i % 4
			p.ExitCode, p.Ended = &code, time.Now().UTC()
			if i%2 == 0 {
				p.Archived, key = time.Now().UTC(), pidtable.HistoryKey(p.GPID)
			}
		}
		b, _ := json.Marshal(p)
		ops = append(ops, clientv3.OpPut(key, string(b)))
		if len(ops) == 100 {
			if _, err := f.store.Client().Txn(ctx).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	cl := func(who int) *api.Client {
		c, err := api.NewTLSClient(f.base, f.clients[who].Transport.(*http.Transport).TLSClientConfig)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	list := func(who int, q api.PSQuery) ([]pidtable.Proc, api.PSResult) {
		t.Helper()
		var out []pidtable.Proc
		res, err := cl(who).PSStream(ctx, q, func(p api.ProcInfo) error { out = append(out, p.Proc); return nil })
		if err != nil {
			t.Fatalf("ps %+v as %s: %v", q, callerNames[who], err)
		}
		return out, res
	}
	everything, _ := list(admin, api.PSQuery{Exited: true})
	if len(everything) != n+6 { // the fixture's own six jobs
		t.Fatalf("admin lists %d records with --exited, want %d", len(everything), n+6)
	}
	if !slices.IsSortedFunc(everything, func(a, b pidtable.Proc) int { return int(a.GPID) - int(b.GPID) }) {
		t.Fatal("not in gpid order")
	}
	queries := []api.PSQuery{
		{},
		{Exited: true},
		{User: "bob"},
		{Node: "node3", Exited: true},
		{States: []pidtable.State{pidtable.Exited, pidtable.Lost}},
		{States: []pidtable.State{pidtable.Migrating}, Node: "node2"},
		{User: "alice", Node: "node4", Exited: true},
		{After: 100900, Exited: true},
	}
	for _, who := range []int{alice, bob, admin, source} {
		for _, q := range queries {
			var want []uint64
			for _, p := range everything {
				if q.Match(p) && access.Visible(callerOf0(who), p.User) {
					want = append(want, p.GPID)
				}
			}
			got, _ := list(who, q)
			gotIDs := make([]uint64, len(got))
			for i, p := range got {
				gotIDs[i] = p.GPID
			}
			if !slices.Equal(gotIDs, want) {
				t.Errorf("ps %+v as %s: %d rows, want %d", q, callerNames[who], len(gotIDs), len(want))
			}
		}
	}
	// --limit, then the rest after the gpid the trailer names.
	q := api.PSQuery{User: "alice", Exited: true, Limit: 100}
	var pages [][]pidtable.Proc
	for range 20 {
		rows, res := list(alice, q)
		pages = append(pages, rows)
		if res.Next == 0 {
			break
		}
		if len(rows) != 100 || res.Next != rows[len(rows)-1].GPID {
			t.Fatalf("a limited page: %d rows, next after %d", len(rows), res.Next)
		}
		q.After = res.Next
	}
	var total int
	for _, p := range pages {
		total += len(p)
	}
	var wantAlice int
	for _, p := range everything {
		if p.User == "alice" {
			wantAlice++
		}
	}
	if total != wantAlice {
		t.Fatalf("pages of 100 listed %d of alice's jobs, want %d", total, wantAlice)
	}
	status, body := f.do(t, alice, "GET", "/v1/procs?state=zombie", "")
	if status != http.StatusBadRequest || !strings.Contains(body, "want one or more of") {
		t.Fatalf("state=zombie: HTTP %d %s", status, body)
	}
	status, body = f.do(t, alice, "GET", "/v1/procs?limit=-1", "")
	if status != http.StatusBadRequest || !strings.Contains(body, "limit") {
		t.Fatalf("limit=-1: HTTP %d %s", status, body)
	}
}

// callerOf0 is the identity each fixture client presents.
func callerOf0(who int) access.Caller {
	switch who {
	case alice:
		return access.Caller{User: "alice"}
	case bob:
		return access.Caller{User: "bob"}
	case admin:
		return access.Caller{User: "root", Admin: true}
	}
	return access.Caller{Node: callerNames[who]}
}

// TestPsRowIsProcInfo: a row spliced from the stored record decodes to the
// ProcInfo the agent would have encoded.
func TestPsRowIsProcInfo(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	code := 3
	snap := &pidtable.Snapshot{Status: map[string]pidtable.NodeStatus{"n1": {Procs: map[uint64]pidtable.ProcStats{7: {CPU: 50, RSS: 1 << 20, Stat: "R", Procs: 2}}}}}
	for _, p := range []pidtable.Proc{
		{GPID: 7, Node: "n1", User: "alice", State: pidtable.Running, Argv: []string{"a<b>&"}, Created: now},
		{GPID: 8, Node: "n1", User: "bob", State: pidtable.Exited, ExitCode: &code, Created: now, Ended: now, Archived: now},
		{GPID: 9, Node: "gone", User: "bob", State: pidtable.Running, Created: now},
	} {
		raw, _ := json.Marshal(p)
		b, err := row(nil, snap, pidtable.Head{GPID: p.GPID, Node: p.Node, User: p.User, State: p.State}, raw)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(api.NewProcInfo(snap, p))
		var got, exp any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("row %s: %v", b, err)
		}
		_ = json.Unmarshal(want, &exp)
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Fatalf("row %s\nwant %s", b, want)
		}
	}
}

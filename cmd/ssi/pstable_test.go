package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

func sampleRows(n int) []api.ProcInfo {
	now := time.Now()
	out := []api.ProcInfo{} // as the agent sends none: []
	for i := range n {
		code := i % 3
		p := api.ProcInfo{Proc: pidtable.Proc{GPID: uint64(i + 1), Node: fmt.Sprintf("node%d", i%4), User: "alice", State: pidtable.Running,
			PID: 100 + i, Argv: []string{"sleep", strconv.Itoa(i)}, Created: now, Started: now}, NodeReady: true}
		if i%5 == 0 {
			p.State, p.ExitCode, p.Ended = pidtable.Exited, &code, now
		}
		if i%7 == 0 {
			p.Stats = &pidtable.ProcStats{CPU: 12.5, RSS: 1 << 20, Stat: "S"}
		}
		out = append(out, p)
	}
	return out
}

// TestPsJSONStreamed: -o json written row by row is what encoding the whole
// list writes, also for none; a broken listing leaves the array open.
func TestPsJSONStreamed(t *testing.T) {
	for _, n := range []int{0, 1, 5} {
		rows := sampleRows(n)
		var want, got bytes.Buffer
		if err := writeJSONOut(&want, rows); err != nil {
			t.Fatal(err)
		}
		j := newJSONRows(&got)
		for _, p := range rows {
			if err := j.add(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := j.close(true); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("%d rows: streamed\n%s\nwant\n%s", n, got.String(), want.String())
		}
	}
	var got bytes.Buffer
	j := newJSONRows(&got)
	_ = j.add(sampleRows(1)[0])
	_ = j.close(false)
	if strings.HasSuffix(strings.TrimSpace(got.String()), "]") {
		t.Fatalf("a broken listing closed its array: %s", got.String())
	}
}

// TestPsTableStreamed: up to the rows that set the widths the table is what
// tabwriter prints; rows after them keep those widths.
func TestPsTableStreamed(t *testing.T) {
	now := time.Now()
	rows := sampleRows(50)
	var got bytes.Buffer
	pt := newProcTable(&got, false, now)
	for _, p := range rows {
		if err := pt.add(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := pt.close(true); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	tw := tabwriter.NewWriter(&want, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GPID\tNODE\tPID\tUSER\tSTAT\t%CPU\tRSS\tELAPSED\tCOMMAND")
	for _, p := range rows {
		fmt.Fprintln(tw, strings.Join(pt.cells(nil, &p), "\t"))
	}
	tw.Flush()
	if got.String() != want.String() {
		t.Fatalf("table:\n%s\nwant (tabwriter):\n%s", got.String(), want.String())
	}
	// Past the first rows, widths stay: 300 rows, the last with a long node name.
	many := sampleRows(300)
	many[299].Node = "a-node-with-a-much-longer-name"
	got.Reset()
	pt = newProcTable(&got, true, now)
	for _, p := range many {
		_ = pt.add(p)
	}
	_ = pt.close(true)
	lines := strings.Split(strings.TrimSpace(got.String()), "\n")
	if len(lines) != 301 {
		t.Fatalf("%d lines, want 301", len(lines))
	}
	if !strings.Contains(lines[300], "a-node-with-a-much-longer-name  ") || len(lines[1]) >= len(lines[300]) {
		t.Fatalf("the wide cell: %q", lines[300])
	}
}

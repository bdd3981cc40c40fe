package top

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// fake is an in-memory Source that records actions.
type fake struct {
	snap     Snapshot
	signals  []string
	migrated []string
}

func (f *fake) Snapshot(context.Context) (Snapshot, error) { return f.snap, nil }
func (f *fake) Signal(_ context.Context, gpid uint64, sig string) error {
	f.signals = append(f.signals, fmt.Sprintf("%d %s", gpid, sig))
	return nil
}
func (f *fake) Migrate(_ context.Context, gpid uint64, node string) (string, error) {
	f.migrated = append(f.migrated, fmt.Sprintf("%d %s", gpid, node))
	return "ok", nil
}

func proc(gpid uint64, node, user string, cpu float64, rss int64, argv ...string) api.ProcInfo {
	return api.ProcInfo{
		Proc:      pidtable.Proc{GPID: gpid, Node: node, User: user, State: pidtable.Running, Argv: argv, Started: time.Date(2025, 1, 2, 3, 3, 5, 0, time.UTC)},
		NodeReady: true,
		Stats:     &pidtable.ProcStats{CPU: cpu, RSS: rss, Stat: "R"},
	}
}

func snapshot(jobs int) Snapshot {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	s := Snapshot{Time: now}
	for i := 1; i <= 3; i++ {
		s.Nodes = append(s.Nodes, api.NodeInfo{Node: pidtable.Node{Name: fmt.Sprintf("node%d", i), CPUs: 2, Memory: 8 << 30}, Ready: true, Load: float64(i) / 2, Demand: float64(i), Jobs: jobs / 3})
	}
	for g := 1; g <= jobs; g++ {
		s.Procs = append(s.Procs, proc(uint64(g), fmt.Sprintf("node%d", g%3+1), []string{"root", "alice"}[g%2], float64(g%7*10), int64(g%5)<<20, "prog", fmt.Sprint(g)))
	}
	return s
}

func gpids(ps []*api.ProcInfo) []uint64 {
	var out []uint64
	for _, p := range ps {
		out = append(out, p.GPID)
	}
	return out
}

func TestSortAndFilter(t *testing.T) {
	ps := []api.ProcInfo{
		proc(1, "node2", "root", 5, 300, "sleep", "600"),
		proc(2, "node1", "alice", 90, 100, "sh", "-c", "loop"),
		proc(3, "node1", "root", 50, 900, "python3", "job.py"),
	}
	ps[0].Stats = nil // NotReady: sorts last by CPU and RSS
	cases := []struct {
		key    SortKey
		filter string
		want   []uint64
	}{
		{SortCPU, "", []uint64{2, 3, 1}},
		{SortRSS, "", []uint64{3, 2, 1}},
		{SortNode, "", []uint64{2, 3, 1}},
		{SortGPID, "", []uint64{1, 2, 3}},
		{SortGPID, "user:root", []uint64{1, 3}},
		{SortGPID, "node:node1 cmd:py", []uint64{3}},
		{SortGPID, "alice", []uint64{2}},
		{SortGPID, "3", []uint64{3}},
		{SortGPID, "node:node", nil},
	}
	for _, tc := range cases {
		if got := gpids(view(ps, tc.key, tc.filter)); !slices.Equal(got, tc.want) {
			t.Errorf("view(%s, %q) = %v, want %v", tc.key, tc.filter, got, tc.want)
		}
	}
	if _, err := ParseSortKey("mem"); err == nil {
		t.Error("ParseSortKey(mem): no error")
	}
}

func TestMoves(t *testing.T) {
	s := snapshot(3)
	s.Procs[0].State = pidtable.Migrating
	s.Procs[0].Migration = &pidtable.Migration{Target: "node3", Phase: "transfer", Started: s.Time.Add(-2 * time.Second)}
	s.Balance = &api.BalanceStatus{Status: &pidtable.BalancerStatus{Inflight: []pidtable.InflightMove{
		{GPID: 1, From: "node2", To: "node3"}, // the same move, known from the table
		{GPID: 9, From: "node1", To: "node2", Started: s.Time.Add(-time.Second)},
	}}}
	got := movesLine(s)
	want := "migrating: 1 node2->node3 transfer 00:02, 9 node1->node2 00:01"
	if got != want {
		t.Fatalf("movesLine = %q, want %q", got, want)
	}
}

func press(m *Model, keys ...string) {
	for _, k := range keys {
		var msg tea.KeyMsg
		switch k {
		case "enter":
			msg = tea.KeyMsg{Type: tea.KeyEnter}
		case "down":
			msg = tea.KeyMsg{Type: tea.KeyDown}
		case "right":
			msg = tea.KeyMsg{Type: tea.KeyRight}
		default:
			msg = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
		}
		_, cmd := m.Update(msg)
		if cmd != nil {
			if done, ok := cmd().(doneMsg); ok {
				m.Update(done)
			}
		}
	}
}

func TestModelKeys(t *testing.T) {
	f := &fake{snap: snapshot(12)}
	m := New(context.Background(), f, Options{})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	m.Update(m.fetch())
	screen := ansi.Strip(m.View())
	lines := strings.Split(screen, "\n")
	if len(lines) != 24 {
		t.Fatalf("%d lines, want 24:\n%s", len(lines), screen)
	}
	for _, l := range lines {
		if w := ansi.StringWidth(l); w > 80 {
			t.Fatalf("line wider than 80 (%d): %q", w, l)
		}
	}
	if !strings.Contains(lines[1], "node1 cpu[") || !strings.Contains(lines[4], "  GPID") {
		t.Fatalf("layout:\n%s", screen)
	}
	if m.sel != 6 { // most CPU (60%) first; gpid 6 is the first with 60
		t.Fatalf("selected %d, want 6", m.sel)
	}
	press(m, "g", "down", "k", "enter")
	if !slices.Equal(f.signals, []string{"7 TERM"}) {
		t.Fatalf("signals %v", f.signals)
	}
	press(m, "m", "right", "enter") // gpid 7 is on node2: choices node1, node3
	if !slices.Equal(f.migrated, []string{"7 node3"}) {
		t.Fatalf("migrated %v", f.migrated)
	}
	press(m, "/node:node1", "enter") // typed faster than read: one message
	if got := gpids(m.rows()); !slices.Equal(got, []uint64{3, 6, 9, 12}) {
		t.Fatalf("after filter node:node1: %v", got)
	}
}

func TestBatch(t *testing.T) {
	var b bytes.Buffer
	if err := Batch(context.Background(), &b, &fake{snap: snapshot(3)}, Options{Iterations: 2, Interval: time.Millisecond, Sort: SortGPID}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Count(out, "ssi top - ") != 2 || !strings.Contains(out, "node2  Ready   2     1.00  2.00    8.0G") || !strings.Contains(out, "1     node2  alice  R     10.0") {
		t.Fatalf("batch output:\n%s", out)
	}
}

// BenchmarkRefresh is the view's cost per refresh at 1,000 jobs: sorting,
// filtering and rendering a screen (the API reads aside).
func BenchmarkRefresh(b *testing.B) {
	m := New(context.Background(), &fake{snap: snapshot(1000)}, Options{})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	for b.Loop() {
		m.Update(m.fetch())
		_ = m.View()
	}
}

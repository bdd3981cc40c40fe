package main

import (
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// TestAnalyse: the window's ticks only (not manual ones), by state and
// node; the three delays; a started tick with no line from its run.
func TestAnalyse(t *testing.T) {
	from := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return from.Add(d) }
	ms := time.Millisecond
	b := &bench{o: options{timers: 2, period: 1}}
	b.rep = report{from: from, to: at(time.Minute),
		ticks: []pidtable.Tick{
			{Timer: "a", Scheduled: at(time.Second), State: pidtable.TickStarted, Node: "node1", Claimed: at(time.Second + 100*ms), Started: at(time.Second + 110*ms)},
			{Timer: "b", Scheduled: at(2 * time.Second), State: pidtable.TickStarted, Node: "node2", Claimed: at(2*time.Second + 300*ms), Started: at(2*time.Second + 320*ms)},
			{Timer: "b", Scheduled: at(3 * time.Second), State: pidtable.TickMissed},
			{Timer: "a", Scheduled: at(-time.Second), State: pidtable.TickStarted, Node: "node3"},                  // before the window
			{Timer: "a", Scheduled: at(4 * time.Second), State: pidtable.TickStarted, Node: "node3", Manual: true}, // ssi timer run
		},
		runs: []runLine{
			{timer: "a", scheduled: at(time.Second), ran: at(time.Second + 150*ms)},
			{timer: "a", scheduled: at(-time.Second), ran: at(0)},
		},
	}
	a := b.analyse()
	if len(a.window) != 3 || a.states[pidtable.TickStarted] != 2 || a.states[pidtable.TickMissed] != 1 {
		t.Fatalf("window %d ticks, states %v", len(a.window), a.states)
	}
	if a.perNode["node1"] != 1 || a.perNode["node2"] != 1 || len(a.perNode) != 2 {
		t.Errorf("per node %v", a.perNode)
	}
	if a.claim.N != 2 || a.claim.P50 != 100 || a.claim.Max != 300 || a.recorded.P99 != 320 || a.shell.N != 1 || a.shell.P50 != 150 {
		t.Errorf("claim %+v, recorded %+v, shell %+v", a.claim, a.recorded, a.shell)
	}
	if a.noShell != 1 || a.extraLines != 0 || a.duplicateStarted != 0 {
		t.Errorf("no shell %d, extra %d, duplicates %d", a.noShell, a.extraLines, a.duplicateStarted)
	}
	// Two timers every minute, at 0 and 30 s: two elapses in [from, from+1m).
	if a.expected != 2 {
		t.Errorf("expected %d elapses, want 2", a.expected)
	}
}

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// TestEventLines: each kind's line says what happened in words.
func TestEventLines(t *testing.T) {
	code := 143
	at := time.Date(2026, 12, 7, 17, 57, 32, 0, time.UTC)
	for _, c := range []struct {
		ev   pidtable.Event
		want []string
	}{
		{pidtable.Event{Kind: pidtable.EventRun, GPID: 7, Node: "node1", To: "node1", Command: "sleep 600"}, []string{"run", "7", "node1", "sleep 600"}},
		{pidtable.Event{Kind: pidtable.EventExit, GPID: 7, Node: "node1", From: "node1", ExitCode: &code, Signal: "TERM"}, []string{"exit", "exit code 143 (SIGTERM)"}},
		{pidtable.Event{Kind: pidtable.EventKill, GPID: 7, Node: "node1", Signal: "TERM", Caller: "admin root"}, []string{"kill", "SIGTERM by admin root"}},
		{pidtable.Event{Kind: pidtable.EventMigrate, Phase: pidtable.PhaseDone, GPID: 7, Node: "node1", From: "node1", To: "node2",
			Took: 88 * time.Millisecond, Frozen: 65 * time.Millisecond, Bytes: 244736,
			Phases: map[string]time.Duration{"dump": 25 * time.Millisecond, "transfer": 6 * time.Millisecond, "restore": 29 * time.Millisecond}},
			[]string{"migrate done", "node1 -> node2", "took 88ms, frozen 65ms", "(dump 25ms, restore 29ms, transfer 6ms)"}},
		{pidtable.Event{Kind: pidtable.EventNode, Phase: pidtable.PhaseNotReady, Node: "node1", From: "node3", Reason: "node node3 is NotReady"}, []string{"node notready", "-", "node3", "node node3 is NotReady"}},
		{pidtable.Event{Kind: pidtable.EventCheckpoint, GPID: 7, Node: "node1", From: "node1", Checkpoint: "c1", Bytes: 2048}, []string{"checkpoint", "c1, 2.0K"}},
	} {
		c.ev.Time = at
		line := eventLine(c.ev)
		for _, w := range c.want {
			if !strings.Contains(line, w) {
				t.Errorf("%s: line %q lacks %q", c.ev.Kind, line, w)
			}
		}
	}
}

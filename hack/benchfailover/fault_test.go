package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Lines as the agents write them (log/slog's text handler).
const agentLog = `time=2026-12-07T11:52:57.828Z level=INFO msg=checkpointed node=node3 gpid=18 checkpoint=auto-18-20261207-115257.459 bytes=21531222 leave_running=true frozen=322.001429ms
time=2026-12-07T11:52:58.000Z level=INFO msg=checkpointed node=node3 gpid=19 checkpoint=c1 bytes=5 leave_running=false frozen=1s
time=2026-12-07T11:53:07.428Z level=INFO msg=checkpointed node=node3 gpid=18 checkpoint=auto-18-20261207-115307.236 bytes=21532504 leave_running=true frozen=1.5s
time=2026-12-07T11:53:10.100Z level=WARN msg="fenced: this node lost its etcd lease, and the job may be restored elsewhere from its checkpoints; killed here" node=node3 gpid=18
`

func TestAgentLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.log")
	if err := os.WriteFile(path, []byte(agentLog), 0o644); err != nil {
		t.Fatal(err)
	}
	frozen, size := checkpointsLogged(path, 18)
	if !slices.Equal(frozen, []time.Duration{322001429, 1500 * time.Millisecond}) || !slices.Equal(size, []int64{21531222, 21532504}) {
		t.Errorf("checkpoints of gpid 18: %v, %v", frozen, size)
	}
	t0 := time.Date(2026, 12, 7, 11, 53, 0, 0, time.UTC)
	at, ok := fenceLogged(path, 18, t0)
	if !ok || !at.Equal(time.Date(2026, 12, 7, 11, 53, 10, 100e6, time.UTC)) {
		t.Errorf("fence of gpid 18: %v, %v", at, ok)
	}
	if _, ok := fenceLogged(path, 18, at); ok {
		t.Error("a fence before t0 counted")
	}
	if _, ok := fenceLogged(path, 19, t0); ok {
		t.Error("fence of gpid 19 found")
	}
}

func TestRestoredIn(t *testing.T) {
	reason := "node node3 died; restored from checkpoint auto-18-20261207-115320.250-copy (taken 2026-12-07T11:53:20Z) on node1 in 1.234s"
	m := restoredIn.FindStringSubmatch(reason)
	if m == nil || m[1] != "auto-18-20261207-115320.250-copy" || m[2] != "1.234s" {
		t.Fatalf("match %q", m)
	}
	if restoredIn.FindStringSubmatch("node node3 died; restoring checkpoint x on node1 failed: boom") != nil {
		t.Error("a failed restore matched")
	}
}

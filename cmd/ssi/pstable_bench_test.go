package main

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// BenchmarkProcTable: ssi ps's printing of 100,000 rows like
// hack/benchscale's (decoded already), to a discarding writer.
func BenchmarkProcTable(b *testing.B) {
	rows := benchRows()
	b.ResetTimer()
	for range b.N {
		t := newProcTable(io.Discard, false, time.Now())
		for _, p := range rows {
			if err := t.add(p); err != nil {
				b.Fatal(err)
			}
		}
		if err := t.close(true); err != nil {
			b.Fatal(err)
		}
	}
}

// benchRows are 100,000 rows like hack/benchscale's, every other one with
// its node's figures.
func benchRows() []api.ProcInfo {
	now := time.Now().UTC()
	rows := make([]api.ProcInfo, 100_000)
	for i := range rows {
		rows[i] = api.ProcInfo{Proc: pidtable.Proc{GPID: uint64(10_000_000 + i), Node: fmt.Sprintf("fake%d", i%1000), Epoch: 1, State: pidtable.Running,
			PID: 1000 + i%30000, InitPID: 999 + i%30000, User: "root", Argv: []string{"sleep", "3600"}, Workdir: "/",
			Created: now, Started: now, Arrived: now}}
		if i%2 == 0 {
			rows[i].NodeReady, rows[i].Stats = true, &pidtable.ProcStats{CPU: 1.5, RSS: 3 << 20, Stat: "S", Procs: 1}
		}
	}
	return rows
}

// BenchmarkPSJSON: ssi ps -o json's writing of 100,000 rows like
// hack/benchscale's (decoded already), to a discarding writer.
func BenchmarkPSJSON(b *testing.B) {
	rows := benchRows()
	b.ResetTimer()
	for range b.N {
		j := newJSONRows(io.Discard)
		for _, p := range rows {
			if err := j.add(p); err != nil {
				b.Fatal(err)
			}
		}
		if err := j.close(true); err != nil {
			b.Fatal(err)
		}
	}
}

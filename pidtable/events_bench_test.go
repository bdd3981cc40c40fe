package pidtable

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLifecycleEvents measures a job's record through its life (create,
// start, exit) with its run and exit events written in the records'
// transactions, and without events, on a real etcd: the cost of the events
// in the hot path: wall time, CPU of the process (the store and the
// in-process etcd) and etcd revisions per job. Run:
// go test -run x -bench LifecycleEvents -benchtime 2000x -count 6 ./pidtable/
func BenchmarkLifecycleEvents(b *testing.B) {
	for _, c := range []struct {
		name string
		off  bool
	}{{"without-events", true}, {"with-events", false}} {
		b.Run(c.name, func(b *testing.B) {
			s := newStore(b)
			s.events.off = c.off
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if _, err := s.c.KeepAlive(ctx, makeReady(b, s, "n1")); err != nil {
				b.Fatal(err)
			}
			code := 0
			cpu0 := cpuTime()
			for b.Loop() {
				p, err := s.Create(ctx, Proc{Node: "n1", User: "u", Argv: []string{"sleep", "1"}})
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := s.Transition(ctx, p.GPID, Start, "n1", func(q *Proc) error { q.State = Running; return nil }); err != nil {
					b.Fatal(err)
				}
				if _, _, err := s.Transition(ctx, p.GPID, End, "n1", func(q *Proc) error {
					q.State, q.ExitCode, q.Ended = Exited, &code, time.Now()
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			// The process holds etcd too: its CPU is the store's and etcd's.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/job")
			st, err := s.c.Status(ctx, s.c.Endpoints()[0])
			if err == nil {
				b.ReportMetric(float64(st.Header.Revision)/float64(b.N), "revisions/job")
			}
		})
	}
}

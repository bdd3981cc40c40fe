// Command benchtimer measures cluster timers at scale (issue 18): how late
// their runs start after the scheduled instant, with -timers (1,000) timers
// on the cluster, and what the elected timer controller's agent costs in CPU
// meanwhile. It is a benchmark harness: it brings up a private three-node
// local cluster (-name, -subnet; package localcluster), measures, prints a
// markdown report on stdout (progress on stderr) and tears the cluster down,
// also on error and Ctrl-C. As root, from the repository:
//
//	go run ./hack/benchtimer -name sbm -subnet 10.232.0.0/24
//	go run ./hack/benchtimer -timers 100 -window 1m -period 1   (a quick pass)
//
// # Method
//
// The timers are systemd units written to a directory and applied with one
// `ssi apply DIR` (timed): timer i has OnCalendar=*-*-* *:M/P:S.mmm, so each
// fires once every -period P minutes, at an offset i×P×60/N seconds into the
// period (0.3 s apart for 1,000 timers over 5 minutes: 3.3 runs/s across the
// cluster, spread evenly). Its service is a short shell command that
// appends "TIMER TICK TIME" to a file (the time from date +%s.%N as the run's
// shell starts): ExecStart=/bin/sh -c "echo $SSI_TIMER $SSI_TIMER_TICK
// $(date +%s.%N) >> FILE".
//
// The window starts 10 s after the apply and lasts -window (default one
// period, so every timer's tick falls in it once). Then, after -settle for
// the window's last runs, the ticks are read from etcd
// (/ssi/timers/ticks/, the controller's records: package timer) and the
// file. For every tick scheduled in the window:
//
//   - its state (started, missed, skipped, failed, still claimed);
//   - the start delay as recorded: the tick's Started (the start
//     transaction that creates the run's record, just before the process
//     is launched) less its Scheduled instant;
//   - the start delay as the run saw it: the time its shell wrote less the
//     Scheduled instant (the nodes are namespaces of one kernel: one clock).
//
// Reported: n, p50, p90, p99 and max of both delays (nearest rank), ticks by
// state, runs per node. A tick with no line in the file ran no shell.
//
// CPU: every agent's utime+stime (/proc/PID/stat) over the window, in % of
// one core, and over -idle (30 s) before the timers were applied, the
// cluster otherwise idle. The elected controller's agent is read from the
// election (/ssi/timers/leader) before and after the window; node1's agent
// also runs the cluster's etcd, which answers the controller's reads.
//
// One run measures once: the tick delays are many samples (about -timers
// per period), the CPU one window.
//
// Files: main.go (flags), bench.go (cluster, units, window), report.go
// (markdown and JSON), units.go (the unit files).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

type options struct {
	timers int
	// period is every timer's period in minutes (a divisor of 60).
	period  int
	window  time.Duration
	settle  time.Duration
	idle    time.Duration
	cluster benchkit.ClusterFlags
	timeout time.Duration
	json    string
}

func parseFlags(fs *flag.FlagSet, args []string) (options, error) {
	var o options
	fs.IntVar(&o.timers, "timers", 1000, "timers on the cluster")
	fs.IntVar(&o.period, "period", 5, "each timer's period, minutes (a divisor of 60)")
	fs.DurationVar(&o.window, "window", 0, "measurement window (default: one period)")
	fs.DurationVar(&o.settle, "settle", 20*time.Second, "wait after the window before reading the ticks")
	fs.DurationVar(&o.idle, "idle", 30*time.Second, "CPU baseline window before the timers are applied")
	o.cluster.Register(fs, "sbm", "10.232.0.0/24")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound on the whole benchmark (teardown comes after it)")
	fs.StringVar(&o.json, "json", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := o.cluster.Check("sbm"); err != nil {
		return o, err
	}
	if o.window == 0 {
		o.window = time.Duration(o.period) * time.Minute
	}
	switch {
	case o.timers < 1 || o.timers > 10000:
		return o, fmt.Errorf("-timers %d: want 1 to 10000", o.timers)
	case o.period < 1 || 60%o.period != 0:
		return o, fmt.Errorf("-period %d: want a divisor of 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)", o.period)
	case o.window < 10*time.Second || o.settle < 0 || o.idle < time.Second:
		return o, errors.New("-window: want at least 10s; -settle not negative; -idle at least 1s")
	case os.Geteuid() != 0:
		return o, errors.New("needs root (network namespaces, cgroups): run it with sudo")
	}
	return o, nil
}

func main() {
	o, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchtimer: %v\n", err)
		os.Exit(2)
	}
	os.Exit(benchkit.Main(benchkit.Config{Program: "benchtimer", Timeout: o.timeout, JSON: o.json}, newBench(o)))
}

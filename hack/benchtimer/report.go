package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/calendar"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/pidtable"
)

// report is what the run found.
type report struct {
	machine   benchkit.Machine
	loadAfter string
	nodes     []string
	apply     time.Duration
	// idleCPU and windowCPU are each agent's CPU (% of a core), by node.
	idleCPU, windowCPU        []float64
	leaderBefore, leaderAfter string
	from, to                  time.Time
	ticks                     []pidtable.Tick
	runs                      []runLine
	badLines                  int
	notes                     []string
}

// dist is a distribution of delays in milliseconds.
type dist struct {
	N                       int
	P50, P90, P99, Max, Min float64
}

// nearestRank is the p-th percentile (0 < p <= 100) of sorted s.
func nearestRank(s []float64, p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	r := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(r, 0), len(s)-1)]
}

func newDist(ms []float64) dist {
	if len(ms) == 0 {
		return dist{}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	return dist{N: len(s), P50: nearestRank(s, 50), P90: nearestRank(s, 90), P99: nearestRank(s, 99), Max: s[len(s)-1], Min: s[0]}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// inWindow reports whether a scheduled instant is in the window.
func (r *report) inWindow(t time.Time) bool { return !t.Before(r.from) && t.Before(r.to) }

// analysis is what the report computes from the records.
type analysis struct {
	window          []pidtable.Tick // the window's ticks, not manual
	states          map[string]int
	perNode         map[string]int
	claim, recorded dist // Claimed, Started less Scheduled
	shell           dist // the run's shell less Scheduled
	// The samples of the three, in ms, in tick order.
	claimMS, recordedMS, shellMS []float64
	noShell                      int // started ticks with no line in the run log
	expected                     int // elapses of the timers in the window
	extraLines                   int // run-log lines for a tick of the window that is not started
	duplicateStarted             int // run-log lines beyond one per tick
}

func (b *bench) analyse() analysis {
	r := &b.rep
	a := analysis{states: map[string]int{}, perNode: map[string]int{}}
	type key struct {
		timer string
		at    int64
	}
	lines := map[key]int{}
	var shell []float64
	firstLine := map[key]runLine{}
	for _, l := range r.runs {
		k := key{l.timer, l.scheduled.UnixNano()}
		lines[k]++
		if _, ok := firstLine[k]; !ok {
			firstLine[k] = l
		}
	}
	var claim, rec []float64
	for _, t := range r.ticks {
		if t.Manual || !r.inWindow(t.Scheduled) {
			continue
		}
		a.window = append(a.window, t)
		a.states[t.State]++
		if !t.Claimed.IsZero() {
			claim = append(claim, ms(t.Claimed.Sub(t.Scheduled)))
		}
		k := key{t.Timer, t.Scheduled.UnixNano()}
		if t.State != pidtable.TickStarted {
			a.extraLines += lines[k]
			continue
		}
		a.perNode[t.Node]++
		rec = append(rec, ms(t.Started.Sub(t.Scheduled)))
		if l, ok := firstLine[k]; ok {
			shell = append(shell, ms(l.ran.Sub(t.Scheduled)))
			a.duplicateStarted += lines[k] - 1
		} else {
			a.noShell++
		}
	}
	a.claim, a.recorded, a.shell = newDist(claim), newDist(rec), newDist(shell)
	a.claimMS, a.recordedMS, a.shellMS = claim, rec, shell
	a.expected = b.expectedTicks()
	return a
}

// expectedTicks counts the timers' elapses in the window.
func (b *bench) expectedTicks() int {
	r := &b.rep
	if r.from.IsZero() {
		return 0
	}
	period := time.Duration(b.o.period) * time.Minute
	n := 0
	for i := range b.o.timers {
		spec, err := calendar.Parse(onCalendar(b.o.period, offset(i, b.o.timers, period)))
		if err != nil {
			continue
		}
		for t := spec.Next(r.from.Add(-time.Nanosecond)); !t.IsZero() && t.Before(r.to); t = spec.Next(t) {
			n++
		}
	}
	return n
}

func f1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }

func (d dist) cells() []string {
	if d.N == 0 {
		return []string{"0", "", "", "", "", ""}
	}
	return []string{strconv.Itoa(d.N), f1(d.P50), f1(d.P90), f1(d.P99), f1(d.Max), f1(d.Min)}
}

// WriteMarkdown writes the report.
func (b *bench) WriteMarkdown(w io.Writer, runErr error) {
	r, o := &b.rep, b.o
	fmt.Fprintf(w, "## Timer accuracy at %d timers (%s)\n\n", o.timers, r.machine.Started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- command: `%s`\n", benchkit.Command("benchtimer"))
	fmt.Fprintf(w, "- commit: %s; machine: %s\n", r.machine.Commit, r.machine)
	fmt.Fprintf(w, "- load average before: %s, after: %s; other namespaces: %v\n", r.machine.LoadAvg, r.loadAfter, r.machine.OtherNetns)
	fmt.Fprintf(w, "- %d timers, each every %d min (%.2f runs/s over the cluster), applied with one `ssi apply DIR` in %s; window %s from %s to %s UTC\n",
		o.timers, o.period, float64(o.timers)/float64(o.period*60), r.apply.Round(time.Millisecond), o.window,
		r.from.UTC().Format(time.TimeOnly), r.to.UTC().Format(time.TimeOnly))
	fmt.Fprintf(w, "- timer controller's leader: %q at the window's start, %q at its end\n\n", r.leaderBefore, r.leaderAfter)
	if runErr != nil {
		fmt.Fprintf(w, "**The run did not complete: %v.** The figures below are those measured until then.\n\n", runErr)
	}
	if len(r.ticks) > 0 {
		a := b.analyse()
		var states []string
		for s, n := range a.states {
			states = append(states, fmt.Sprintf("%s %d", s, n))
		}
		sort.Strings(states)
		var nodes []string
		for n, c := range a.perNode {
			nodes = append(nodes, fmt.Sprintf("%s %d", n, c))
		}
		sort.Strings(nodes)
		fmt.Fprintf(w, "Ticks scheduled in the window: %d recorded of %d elapses (%s); runs per node: %s; started ticks with no line from their run: %d; lines from ticks not started: %d; extra lines for a started tick: %d; unreadable lines: %d.\n\n",
			len(a.window), a.expected, strings.Join(states, ", "), strings.Join(nodes, ", "), a.noShell, a.extraLines, a.duplicateStarted, r.badLines)
		t := benchkit.NewTable("delay after the scheduled instant", "n:", "p50 ms:", "p90 ms:", "p99 ms:", "max ms:", "min ms:")
		t.Add(append([]string{"tick claimed (controller's claim transaction)"}, a.claim.cells()...)...)
		t.Add(append([]string{"run started, as recorded (tick's start transaction)"}, a.recorded.cells()...)...)
		t.Add(append([]string{"run's shell running (its date +%s.%N)"}, a.shell.cells()...)...)
		_ = t.Write(w)
		fmt.Fprintln(w)
	}
	if len(r.windowCPU) > 0 || len(r.idleCPU) > 0 {
		t := benchkit.NewTable("agent", "role", "CPU, idle, no timers:", "CPU, window with the timers:")
		for i, n := range r.nodes {
			var roles []string
			if n == r.leaderBefore {
				roles = append(roles, "timer controller")
			}
			if i == 0 {
				roles = append(roles, "etcd (embedded)")
			}
			cell := func(v []float64) string {
				if i < len(v) {
					return f1(v[i]) + " %"
				}
				return ""
			}
			t.Add(n, strings.Join(roles, ", "), cell(r.idleCPU), cell(r.windowCPU))
		}
		fmt.Fprintf(w, "Agents' CPU (utime+stime from /proc/PID/stat, %% of one core; idle over %s):\n\n", o.idle)
		_ = t.Write(w)
		fmt.Fprintln(w)
	}
	for _, n := range r.notes {
		fmt.Fprintf(w, "- note: %s\n", n)
	}
}

// Result returns the figures for -json.
func (b *bench) Result() benchkit.Result {
	r := &b.rep
	res := benchkit.Result{Machine: r.machine, Notes: r.notes}
	a := b.analyse()
	res.Series = append(res.Series,
		benchkit.NewSeries("delay", "claimed after scheduled", "ms", a.claimMS),
		benchkit.NewSeries("delay", "started (recorded) after scheduled", "ms", a.recordedMS),
		benchkit.NewSeries("delay", "run's shell after scheduled", "ms", a.shellMS),
		benchkit.NewSeries("cpu", "agents idle, by node", "% of a core", r.idleCPU),
		benchkit.NewSeries("cpu", "agents in the window, by node", "% of a core", r.windowCPU),
	)
	res.Notes = append(res.Notes, fmt.Sprintf("p99 (nearest rank): claimed %.1f ms, started %.1f ms, shell %.1f ms; leader %s", a.claim.P99, a.recorded.P99, a.shell.P99, r.leaderBefore))
	return res
}

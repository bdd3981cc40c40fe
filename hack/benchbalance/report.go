package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// report is what the run found.
type report struct {
	machine     benchkit.Machine
	loadAfter   string
	calibration string
	affinity    string
	runs        []measurement
	notes       []string
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s" }

// workloadFigures are one workload's makespans, by balancer mode.
type workloadFigures struct {
	off, on       []time.Duration
	moves         []int // per batch with the balancer on
	work, longest time.Duration
}

func (r *report) workload(wl string) workloadFigures {
	var f workloadFigures
	for _, m := range r.runs {
		if m.workload != wl {
			continue
		}
		f.work, f.longest = m.work, m.longest
		if m.on {
			f.on = append(f.on, m.makespan)
			f.moves = append(f.moves, m.moved)
		} else {
			f.off = append(f.off, m.makespan)
		}
	}
	return f
}

// WriteMarkdown writes the report docs/BENCHMARKS.md quotes.
func (b *bench) WriteMarkdown(w io.Writer, err error) {
	r, o := &b.rep, b.o
	fmt.Fprintf(w, "## Balancer benchmark (%s)\n\n", r.machine.Started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- command: `%s`\n", benchkit.Command("benchbalance"))
	fmt.Fprintf(w, "- commit: %s; machine: %s\n", r.machine.Commit, r.machine)
	fmt.Fprintf(w, "- cluster: 2 nodes, node1 `--cpuset 0`, node2 `--cpuset 1` (1 CPU each); %d jobs per batch, all `--node node1`\n", o.jobs)
	if o.residency != 0 {
		fmt.Fprintf(w, "- balancer tuning: residency %s (else defaults)\n", o.residency)
	} else {
		fmt.Fprintf(w, "- balancer tuning: the policy's defaults\n")
	}
	if r.calibration != "" {
		fmt.Fprintf(w, "- calibration: %s\n", r.calibration)
	}
	fmt.Fprintf(w, "- load average before: %s, after: %s\n", r.machine.LoadAvg, r.loadAfter)
	if len(r.machine.OtherNetns) > 0 {
		fmt.Fprintf(w, "- other network namespaces on the machine (other clusters share the CPUs): %s\n", strings.Join(r.machine.OtherNetns, ", "))
	}
	if r.affinity != "" {
		fmt.Fprintf(w, "- CPU affinity after a move: %s\n", r.affinity)
	}
	fmt.Fprintln(w)
	runs := benchkit.NewTable("workload", "round", "balancer", "makespan", "moves done", "of which node2 -> node1", "moves failed")
	for _, m := range r.runs {
		runs.Add(m.workload, strconv.Itoa(m.round), onOff(m.on), secs(m.makespan), strconv.Itoa(m.moved), strconv.Itoa(m.back), strconv.Itoa(m.failed))
	}
	_ = runs.Write(w)
	fmt.Fprintln(w)
	sum := benchkit.NewTable("workload", "median off", "median on", "on/off", "CPU work (sum of jobs)", "perfect balancer (max(work/2, longest job))", "moves per batch (median)")
	for _, wl := range o.workloads {
		f := r.workload(wl)
		if len(f.off) == 0 || len(f.on) == 0 {
			continue
		}
		mo, mn := benchkit.Median(f.off), benchkit.Median(f.on)
		sum.Add(wl, secs(mo), secs(mn), fmt.Sprintf("%.2f", mn.Seconds()/mo.Seconds()), secs(f.work), secs(max(f.work/2, f.longest)), strconv.Itoa(benchkit.Median(f.moves)))
	}
	_ = sum.Write(w)
	for _, n := range r.notes {
		fmt.Fprintf(w, "\n- note: %s", n)
	}
	if err != nil {
		fmt.Fprintf(w, "\n\n**The benchmark did not complete:** %v\n", err)
	}
	fmt.Fprintln(w)
}

// Result returns the makespans, moves and the on/off ratio (target 0.6) of
// every workload.
func (b *bench) Result() benchkit.Result {
	r := &b.rep
	res := benchkit.Result{Machine: r.machine, Notes: slices.Clone(r.notes)}
	for _, wl := range b.o.workloads {
		f := r.workload(wl)
		off := benchkit.NewSeries(wl, "makespan, balancer off", "s", benchkit.Seconds(f.off))
		on := benchkit.NewSeries(wl, "makespan, balancer on", "s", benchkit.Seconds(f.on))
		var moves []float64
		for _, m := range f.moves {
			moves = append(moves, float64(m))
		}
		res.Series = append(res.Series, off, on, benchkit.NewSeries(wl, "moves per batch, balancer on", "moves", moves))
		if ratio, ok := benchkit.MedianRatio(wl+": makespan on / off", on.Stats, off.Stats, 0.6); ok {
			res.Ratios = append(res.Ratios, ratio)
		}
	}
	if r.calibration != "" {
		res.Notes = append(res.Notes, "calibration: "+r.calibration)
	}
	if r.affinity != "" {
		res.Notes = append(res.Notes, "CPU affinity after a move: "+r.affinity)
	}
	return res
}

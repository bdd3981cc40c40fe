package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/internal/display"
)

// report is what the run found.
type report struct {
	machine   benchkit.Machine
	loadAfter string
	runs      []measurement
	notes     []string
}

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
}

func ms(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
}

// of returns the successful measurements of v.
func (r *report) of(v variant) []measurement {
	var out []measurement
	for _, m := range r.runs {
		if m.variant == v && m.err == "" {
			out = append(out, m)
		}
	}
	return out
}

// failed counts v's failed measurements.
func (r *report) failed(v variant) int {
	n := 0
	for _, m := range r.runs {
		if m.variant == v && m.err != "" {
			n++
		}
	}
	return n
}

// figure is one column of the summary: a name and how to read it.
type figure struct {
	name string
	get  func(measurement) time.Duration
	// signed: a value may be negative (the fence gap), so 0 is a value.
	signed bool
}

func figures(v variant) []figure {
	fs := []figure{{name: "to NotReady (lease expiry seen)", get: func(m measurement) time.Duration { return m.notReady }}}
	if v.kind == "service" {
		return append(fs, figure{name: "to 3 replicas running", get: func(m measurement) time.Duration { return m.running }})
	}
	fs = append(fs,
		figure{name: "to the controller's restore call", get: func(m measurement) time.Duration { return m.call }},
		figure{name: "restore (event's \"in N\")", get: func(m measurement) time.Duration { return m.restore }},
		figure{name: "to running on another node", get: func(m measurement) time.Duration { return m.running }})
	if v.kind == "partition" {
		fs = append(fs, figure{name: "fence to the restored copy running", get: func(m measurement) time.Duration { return m.fenceGap }, signed: true})
	}
	return fs
}

func values(ms []measurement, f figure) []time.Duration {
	var out []time.Duration
	for _, m := range ms {
		if d := f.get(m); d != 0 || f.signed {
			out = append(out, d)
		}
	}
	return out
}

// WriteMarkdown writes the report.
func (b *bench) WriteMarkdown(w io.Writer, err error) {
	r, o := &b.rep, b.o
	fmt.Fprintf(w, "## Failover benchmark (%s)\n\n", r.machine.Started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- command: `%s`\n", benchkit.Command("benchfailover"))
	fmt.Fprintf(w, "- commit: %s; machine: %s\n", r.machine.Commit, r.machine)
	fmt.Fprintf(w, "- cluster: 4 nodes on this machine (node1 runs etcd); lease TTL 5 s, failover grace 2 s; jobs on %s with --checkpoint-every %s; %d rounds\n", victim, o.every, o.runs)
	fmt.Fprintf(w, "- load average before: %s, after: %s\n\n", r.machine.LoadAvg, r.loadAfter)
	sum := benchkit.NewTable("variant", "figure", "n:", "median:", "p90:", "min:", "max:", "failed:")
	for _, v := range b.variants() {
		vm := r.of(v)
		for i, f := range figures(v) {
			st := benchkit.Summarize(values(vm, f))
			failed := ""
			if i == 0 {
				failed = strconv.Itoa(r.failed(v))
			}
			if st.N == 0 {
				sum.Add(v.String(), f.name, "0", "-", "-", "-", "-", failed)
				continue
			}
			sum.Add(v.String(), f.name, strconv.Itoa(st.N), secs(st.Median), secs(st.P90), secs(st.Min), secs(st.Max), failed)
		}
	}
	_ = sum.Write(w)
	fmt.Fprintln(w)
	cost := benchkit.NewTable("job", "automatic checkpoints:", "freeze: median:", "freeze: max:", "checkpoint size: median:", "copy restored from: median:")
	for _, v := range b.variants() {
		if v.kind == "service" {
			continue
		}
		var frozen []time.Duration
		var size, copies []int64
		for _, m := range r.of(v) {
			frozen = append(frozen, m.frozen...)
			size = append(size, m.ckBytes...)
			if m.copyBytes > 0 {
				copies = append(copies, m.copyBytes)
			}
		}
		if len(frozen) == 0 {
			continue
		}
		cost.Add(v.String(), strconv.Itoa(len(frozen)), ms(benchkit.Median(frozen)), ms(slices.Max(frozen)),
			display.Bytes(benchkit.Median(size)), display.Bytes(benchkit.Median(copies)))
	}
	_ = cost.Write(w)
	fmt.Fprintln(w)
	runs := benchkit.NewTable("round", "variant", "NotReady:", "restore call:", "restore:", "running:", "fence gap:", "error")
	for _, m := range r.runs {
		gap := "-"
		if m.fenced {
			gap = ms(m.fenceGap)
		}
		restore := "-"
		if m.restore > 0 {
			restore = ms(m.restore)
		}
		runs.Add(strconv.Itoa(m.round), m.variant.String(), secs(m.notReady), secs(m.call), restore, secs(m.running), gap, m.err)
	}
	_ = runs.Write(w)
	for _, n := range r.notes {
		fmt.Fprintf(w, "\n- %s", n)
	}
	if err != nil {
		fmt.Fprintf(w, "\n**Incomplete:** %v\n", err)
	}
	fmt.Fprintln(w)
}

// Result returns the figures for the JSON result file.
func (b *bench) Result() benchkit.Result {
	res := benchkit.Result{Machine: b.rep.machine, Notes: b.rep.notes}
	for _, v := range b.variants() {
		vm := b.rep.of(v)
		for i, f := range figures(v) {
			s := benchkit.NewSeries(v.String(), f.name, "s", benchkit.Seconds(values(vm, f)))
			if i == 0 {
				s.Failed = b.rep.failed(v)
			}
			res.Series = append(res.Series, s)
		}
		var frozen []time.Duration
		for _, m := range vm {
			frozen = append(frozen, m.frozen...)
		}
		if v.kind != "service" {
			res.Series = append(res.Series, benchkit.NewSeries(v.String(), "automatic checkpoint freeze", "s", benchkit.Seconds(frozen)))
		}
	}
	return res
}

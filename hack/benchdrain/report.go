package main

import (
	"fmt"
	"io"
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
	// linkIdle and linkLoaded are the raw copy rate node2 -> node1 in bytes
	// per second, before and after the stayers started (0: not measured).
	linkIdle, linkLoaded float64
}

// link is the copy rate in the conditions the emptyings ran in.
func (r *report) link() float64 {
	if r.linkLoaded > 0 {
		return r.linkLoaded
	}
	return r.linkIdle
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + " ms" }

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s" }

// of returns the measurements of variant v.
func (r *report) of(v variant) []measurement {
	var out []measurement
	for _, m := range r.runs {
		if m.variant == v {
			out = append(out, m)
		}
	}
	return out
}

func (b *bench) variants() []variant {
	vs := []variant{byHand}
	if b.o.handPostCopy {
		vs = append(vs, variant{postCopy: true})
	}
	for _, p := range b.o.parallel {
		vs = append(vs, variant{parallel: p})
	}
	return vs
}

// WriteMarkdown writes the report.
func (b *bench) WriteMarkdown(w io.Writer, err error) {
	r, o := &b.rep, b.o
	fmt.Fprintf(w, "## Drain benchmark (%s)\n\n", r.machine.Started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- command: `%s`\n", benchkit.Command("benchdrain"))
	fmt.Fprintf(w, "- commit: %s; machine: %s\n", r.machine.Commit, r.machine)
	fmt.Fprintf(w, "- cluster: 3 nodes on this machine; %d jobs of %d MiB each on node2, emptied to node1 and node3\n", o.jobs, o.mib)
	fmt.Fprintf(w, "- load average before: %s, after: %s\n", r.machine.LoadAvg, r.loadAfter)
	fmt.Fprintf(w, "- link, raw TCP copy node2 → node1 (%d × %s, Python sockets, median): %s/s idle, %s/s with the stayers running\n\n",
		linkCopies, display.Bytes(linkBytes), rateStr(r.linkIdle), rateStr(r.linkLoaded))
	runs := benchkit.NewTable("round", "variant", "total:", "longest freeze:", "median freeze:", "post-copy moves:", "images:", "images / total:")
	for _, m := range r.runs {
		runs.Add(strconv.Itoa(m.round), m.variant.String(), secs(m.total), ms(m.longest()), ms(benchkit.Median(m.frozen)), strconv.Itoa(m.postCopy), display.Bytes(m.bytes), rate(m))
	}
	_ = runs.Write(w)
	fmt.Fprintln(w)
	hand := medianTotal(r.of(byHand))
	sum := benchkit.NewTable("variant", "median total:", "total / by hand:", "images / link:", "total / (images / link):", "longest freeze (all rounds):")
	for _, v := range b.variants() {
		vm := r.of(v)
		if len(vm) == 0 {
			continue
		}
		var longest time.Duration
		for _, m := range vm {
			longest = max(longest, m.longest())
		}
		ratio := "-"
		if hand > 0 {
			ratio = strconv.FormatFloat(float64(medianTotal(vm))/float64(hand), 'f', 2, 64)
		}
		ideal, vsIdeal := "-", "-"
		if l, bs := r.link(), jobBytes(r.of(byHand), vm); l > 0 && bs > 0 {
			t := time.Duration(float64(bs) / l * float64(time.Second))
			ideal = secs(t)
			vsIdeal = strconv.FormatFloat(float64(medianTotal(vm))/float64(t), 'f', 2, 64)
		}
		sum.Add(v.String(), secs(medianTotal(vm)), ratio, ideal, vsIdeal, ms(longest))
	}
	_ = sum.Write(w)
	b.writeStayers(w)
	for _, n := range r.notes {
		fmt.Fprintf(w, "\n- %s", n)
	}
	if err != nil {
		fmt.Fprintf(w, "\n**Incomplete:** %v\n", err)
	}
	fmt.Fprintln(w)
}

// jobBytes is what the jobs hold, to be copied: the median images shipped
// by hand (stop-and-copy: all of each job's memory goes in its images), or
// without a by-hand figure the variant's own (which leaves out the memory of
// post-copy moves).
func jobBytes(hand, own []measurement) int64 {
	var bs []int64
	for _, m := range hand {
		bs = append(bs, m.bytes)
	}
	if len(bs) == 0 {
		for _, m := range own {
			bs = append(bs, m.bytes)
		}
	}
	return benchkit.Median(bs)
}

// writeStayers writes the stayers' throughput tables.
func (b *bench) writeStayers(w io.Writer) {
	r := &b.rep
	st := benchkit.NewTable("round", "variant", "node", "baseline it/s:", "during it/s:", "during / baseline:")
	for _, m := range r.runs {
		for _, s := range m.stayers {
			st.Add(strconv.Itoa(m.round), m.variant.String(), s.node, itps(s.baseline), itps(s.during), ratioStr(s.ratio()))
		}
	}
	if st.Len() == 0 {
		return
	}
	fmt.Fprintf(w, "\nJobs that stay put: a CPU-bound Python loop on node1 and on node3, iterations per second over %s before each emptying (baseline) and over the emptying (during):\n\n", b.o.baseline)
	_ = st.Write(w)
	fmt.Fprintln(w)
	sum := benchkit.NewTable("variant", "n:", "median during / baseline:", "min:", "max:")
	for _, v := range b.variants() {
		s := benchkit.Summarize(stayerRatios(r.of(v)))
		if s.N == 0 {
			continue
		}
		sum.Add(v.String(), strconv.Itoa(s.N), ratioStr(s.Median), ratioStr(s.Min), ratioStr(s.Max))
	}
	_ = sum.Write(w)
}

// stayerRatios are the stayers' during / baseline ratios in ms, every round
// and node; stayers without both figures are left out.
func stayerRatios(ms []measurement) []float64 {
	var out []float64
	for _, m := range ms {
		for _, s := range m.stayers {
			if x := s.ratio(); x > 0 {
				out = append(out, x)
			}
		}
	}
	return out
}

func itps(x float64) string {
	if x <= 0 {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', 0, 64)
}

func ratioStr(x float64) string {
	if x <= 0 {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

func rateStr(bps float64) string {
	if bps <= 0 {
		return "-"
	}
	return display.Bytes(int64(bps))
}

func rate(m measurement) string {
	if m.total <= 0 {
		return "-"
	}
	return display.Bytes(int64(float64(m.bytes)/m.total.Seconds())) + "/s"
}

func medianTotal(ms []measurement) time.Duration {
	var ts []time.Duration
	for _, m := range ms {
		ts = append(ts, m.total)
	}
	if len(ts) == 0 {
		return 0
	}
	return benchkit.Median(ts)
}

// Result returns the figures for the JSON result file.
func (b *bench) Result() benchkit.Result {
	res := benchkit.Result{Machine: b.rep.machine, Notes: b.rep.notes}
	for _, l := range []struct {
		name string
		bps  float64
	}{{"idle", b.rep.linkIdle}, {"stayers running", b.rep.linkLoaded}} {
		if l.bps > 0 {
			res.Series = append(res.Series, benchkit.NewSeries("link node2 → node1", l.name, "MB/s", []float64{l.bps / 1e6}))
		}
	}
	for _, v := range b.variants() {
		var totals, longest []float64
		for _, m := range b.rep.of(v) {
			totals = append(totals, m.total.Seconds())
			longest = append(longest, m.longest().Seconds())
		}
		res.Series = append(res.Series,
			benchkit.NewSeries(v.String(), "total", "s", totals),
			benchkit.NewSeries(v.String(), "longest freeze", "s", longest),
			benchkit.NewSeries(v.String(), "stayer throughput during / baseline", "ratio", stayerRatios(b.rep.of(v))))
	}
	return res
}

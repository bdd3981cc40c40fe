package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

type report struct {
	machine benchkit.Machine
	commit  string
	results []*configResult
	notes   []string
}

// cell formats a series as median (min–max), n.
func cell(xs []float64, format string) string {
	if len(xs) == 0 {
		return "-"
	}
	s := benchkit.Summarize(xs)
	return fmt.Sprintf(format+" ("+format+"–"+format+", n=%d)", s.Median, s.Min, s.Max, s.N)
}

func scaled(xs []float64, k float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * k
	}
	return out
}

func (b *bench) WriteMarkdown(w io.Writer, runErr error) {
	r := &b.rep
	fmt.Fprintf(w, "## Hollow nodes: the control plane against nodes and processes (benchhollow)\n\n")
	fmt.Fprintf(w, "Command: `%s`\n\nCommit: %s. Machine: %s\n\n", benchkit.Command("benchhollow"), r.commit, r.machine)
	if runErr != nil {
		fmt.Fprintf(w, "**The run did not complete: %v.** The figures below are partial.\n\n", runErr)
	}
	t := benchkit.NewTable("hollow nodes", "records", "all Ready (s)", "jobs created (jobs/s)", "ssi run (ms)",
		"kill → NotReady (s), TTL 5 s", "TTL left at the kill (s)", "expiry → NotReady (s)", "leases lost / NotReady at window start",
		"leader CPU (% core)", "balancer round (ms)", "node1 CPU, etcd (% core)", "hollow nodes' CPU (% core)", "etcd db / in use (MiB)")
	for _, c := range r.results {
		rate := "-"
		if c.fill > 0 {
			rate = fmt.Sprintf("%.0f", float64(c.jobs)/c.fill.Seconds())
		}
		leader, node1, self, losses, db := "-", "-", "-", "-", "-"
		if c.windowed {
			leader, node1, self = fmt.Sprintf("%.1f (%s)", c.leaderCPU, c.leader), fmt.Sprintf("%.1f", c.node1CPU), fmt.Sprintf("%.1f", c.selfCPU)
			losses = fmt.Sprintf("%d / %d", c.leaseLosses, c.notReady)
		}
		if c.dbMeasured {
			db = fmt.Sprintf("%.0f / %.0f", c.dbSize, c.dbInUse)
		}
		t.Add(fmt.Sprint(c.config.nodes), fmt.Sprint(c.config.records), fmt.Sprintf("%.1f", c.ready.Seconds()), rate,
			cell(scaled(c.run, 1000), "%.0f"), cell(c.notice, "%.2f"), cell(c.ttlLeft, "%.0f"), cell(c.lag, "%.2f"),
			losses, leader, cell(c.rounds, "%.2f"), node1, self, db)
	}
	_ = t.Write(w)
	fmt.Fprintln(w)
	for _, n := range r.notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	if b.o.svg != "" {
		if err := os.WriteFile(b.o.svg, []byte(b.svg()), 0o644); err != nil {
			fmt.Fprintf(w, "- plot not written: %v\n", err)
		} else {
			fmt.Fprintf(w, "\nPlot: %s\n", b.o.svg)
		}
	}
}

func (b *bench) Result() benchkit.Result {
	res := benchkit.Result{Machine: b.rep.machine, Notes: b.rep.notes}
	for _, c := range b.rep.results {
		sec := fmt.Sprintf("%d hollow nodes, %d records", c.config.nodes, c.config.records)
		res.Series = append(res.Series,
			benchkit.NewSeries(sec, "ssi run", "s", c.run),
			benchkit.NewSeries(sec, "kill to NotReady", "s", c.notice),
			benchkit.NewSeries(sec, "lease TTL left at the kill", "s", c.ttlLeft),
			benchkit.NewSeries(sec, "lease expiry to NotReady", "s", c.lag),
			benchkit.NewSeries(sec, "hollow leases lost", "", []float64{float64(c.leaseLosses)}),
			benchkit.NewSeries(sec, "balancer round", "ms", c.rounds),
			benchkit.NewSeries(sec, "leader CPU", "% core", []float64{c.leaderCPU}),
			benchkit.NewSeries(sec, "node1 CPU", "% core", []float64{c.node1CPU}),
			benchkit.NewSeries(sec, "hollow nodes CPU", "% core", []float64{c.selfCPU}),
			benchkit.NewSeries(sec, "etcd db size", "MiB", []float64{c.dbSize}),
		)
	}
	return res
}

// panel is one figure of the plot: a value per configuration, with its
// range when there are several.
type panel struct {
	title string
	vals  func(*configResult) []float64
	// ref, if positive, is drawn as a dashed line (the lease TTL).
	ref float64
}

// svg plots each figure's median (and min–max) against the configurations,
// one panel per figure.
func (b *bench) svg() string {
	panels := []panel{
		{"ssi run, ms", func(c *configResult) []float64 { return scaled(c.run, 1000) }, 0},
		{"kill → NotReady, s (dashed: lease TTL)", func(c *configResult) []float64 { return c.notice }, hollow5s},
		{"lease expiry → NotReady, s", func(c *configResult) []float64 { return c.lag }, 0},
		{"balancer round, ms", func(c *configResult) []float64 { return c.rounds }, 0},
		{"balancer leader CPU, % of a core", func(c *configResult) []float64 { return only(c.windowed, c.leaderCPU) }, 0},
		{"node1 CPU (etcd), % of a core", func(c *configResult) []float64 { return only(c.windowed, c.node1CPU) }, 0},
		{"etcd db size, MiB", func(c *configResult) []float64 { return only(c.dbMeasured, c.dbSize) }, 0},
	}
	const pw, ph, cols = 340, 200, 3
	rows := (len(panels) + cols - 1) / cols
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", cols*pw, rows*ph+30)
	fmt.Fprintf(&s, `<rect width="100%%" height="100%%" fill="white"/><text x="8" y="18" font-size="13">ssi control plane with hollow nodes (benchhollow, %s): medians, bars min–max</text>`+"\n", esc(b.rep.commit))
	res := b.rep.results
	for i, p := range panels {
		x0, y0 := float64((i%cols)*pw), float64(30+(i/cols)*ph)
		left, top, w, h := x0+45, y0+20, float64(pw-60), float64(ph-60)
		fmt.Fprintf(&s, `<text x="%.0f" y="%.0f">%s</text>`+"\n", left, y0+12, esc(p.title))
		hi := p.ref
		for _, c := range res {
			for _, v := range p.vals(c) {
				hi = math.Max(hi, v)
			}
		}
		if hi <= 0 {
			hi = 1
		}
		hi *= 1.15
		fmt.Fprintf(&s, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/><line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, top, left, top+h, left, top+h, left+w, top+h)
		fmt.Fprintf(&s, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text><text x="%.0f" y="%.0f" text-anchor="end">0</text>`+"\n", left-3, top+4, num(hi), left-3, top+h)
		yOf := func(v float64) float64 { return top + h - v/hi*h }
		if p.ref > 0 {
			fmt.Fprintf(&s, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="gray" stroke-dasharray="4 3"/>`+"\n", left, yOf(p.ref), left+w, yOf(p.ref))
		}
		for j, c := range res {
			x := left + w*(float64(j)+0.5)/float64(len(res))
			nodes, records := label(c.config)
			fmt.Fprintf(&s, `<text x="%.0f" y="%.0f" text-anchor="middle" font-size="10">%s</text><text x="%.0f" y="%.0f" text-anchor="middle" font-size="10">%s</text>`+"\n", x, top+h+13, esc(nodes), x, top+h+25, esc(records))
			vs := p.vals(c)
			if len(vs) == 0 {
				continue
			}
			st := benchkit.Summarize(vs)
			if st.N > 1 {
				fmt.Fprintf(&s, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="steelblue"/>`+"\n", x, yOf(st.Min), x, yOf(st.Max))
			}
			fmt.Fprintf(&s, `<circle cx="%.1f" cy="%.1f" r="3" fill="steelblue"/><text x="%.1f" y="%.1f" fill="steelblue">%s</text>`+"\n", x, yOf(st.Median), x+5, yOf(st.Median)-4, num(st.Median))
		}

	}
	s.WriteString("</svg>\n")
	return s.String()
}

// only is v as a series if it was measured, else none.
func only(measured bool, v float64) []float64 {
	if !measured {
		return nil
	}
	return []float64{v}
}

// hollow5s is the hollow nodes' lease TTL in seconds (hollow.DefaultLeaseTTL).
const hollow5s = 5

// label is a configuration on the x axis, in two lines: "1000 nodes",
// "100k jobs".
func label(c config) (string, string) {
	r := fmt.Sprint(c.records)
	if c.records >= 1000 && c.records%1000 == 0 {
		r = fmt.Sprintf("%dk", c.records/1000)
	}
	return fmt.Sprintf("%d nodes", c.nodes), r + " jobs"
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

type report struct {
	machine  benchkit.Machine
	sizes    []int
	variants []*variantResult
	notes    []string
}

type variantResult struct {
	label, commit string
	sizes         []sizeResult
}

func med(xs []float64) float64 { return benchkit.Summarize(xs).Median }

// cell formats a series as median (min–max).
func cell(xs []float64, format string) string {
	if len(xs) == 0 {
		return "-"
	}
	s := benchkit.Summarize(xs)
	return fmt.Sprintf(format+" ("+format+"–"+format+")", s.Median, s.Min, s.Max)
}

func (b *bench) WriteMarkdown(w io.Writer, runErr error) {
	r := &b.rep
	fmt.Fprintf(w, "## Control plane against the table's size (benchscale)\n\n")
	fmt.Fprintf(w, "Command: `%s`\n\nMachine: %s\n\n", benchkit.Command("benchscale"), r.machine)
	if runErr != nil {
		fmt.Fprintf(w, "**The run did not complete: %v.** The figures below are partial.\n\n", runErr)
	}
	for _, v := range r.variants {
		fmt.Fprintf(w, "### %s (%s)\n\n", v.label, v.commit)
		t := benchkit.NewTable("records", "ssi ps -A (s)", "CLI peak RSS (MiB)", "etcd range read (s)", "etcd streamed read (s)", "table (MiB)",
			"agents' RSS node1 (etcd) / node2 / node3 (MiB)", "leader CPU (% core)", "node1 CPU (% core)", "etcd db / in use (MiB)")
		for _, s := range v.sizes {
			t.Add(fmt.Sprint(s.records), cell(s.psWall, "%.3f"), cell(s.psRSS, "%.0f"), cell(s.raw, "%.3f"), cell(s.streamed, "%.3f"),
				fmt.Sprintf("%.1f", float64(s.rawBytes)/(1<<20)),
				fmt.Sprintf("%.0f / %.0f / %.0f", s.agentRSS["node1"], s.agentRSS["node2"], s.agentRSS["node3"]),
				fmt.Sprintf("%.1f (%s)", s.leaderCPU, s.leader), fmt.Sprintf("%.1f", s.node1CPU),
				fmt.Sprintf("%.0f / %.0f", s.dbSize, s.dbInUse))
		}
		_ = t.Write(w)
		fmt.Fprintln(w)
	}
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
	for _, v := range b.rep.variants {
		for _, s := range v.sizes {
			sec := fmt.Sprintf("%s, %d records", v.label, s.records)
			res.Series = append(res.Series,
				benchkit.NewSeries(sec, "ssi ps -A", "s", s.psWall),
				benchkit.NewSeries(sec, "ssi ps -A peak RSS", "MiB", s.psRSS),
				benchkit.NewSeries(sec, "etcd range read", "s", s.raw),
				benchkit.NewSeries(sec, "etcd streamed read", "s", s.streamed),
				benchkit.NewSeries(sec, "leader CPU", "% core", []float64{s.leaderCPU}),
				benchkit.NewSeries(sec, "node1 CPU", "% core", []float64{s.node1CPU}),
				benchkit.NewSeries(sec, "etcd db size", "MiB", []float64{s.dbSize}),
			)
			for _, node := range slices.Sorted(maps.Keys(s.agentRSS)) {
				res.Series = append(res.Series, benchkit.NewSeries(sec, "agent RSS "+node, "MiB", []float64{s.agentRSS[node]}))
			}
		}
	}
	return res
}

// svg plots the median `ssi ps -A` time (solid) and the raw etcd read
// (dashed) against the table's size (log scale), one colour per variant.
func (b *bench) svg() string {
	const W, H, left, right, top, bottom = 640, 400, 70, 160, 40, 50
	type line struct {
		name   string
		dashed bool
		color  string
		pts    [][2]float64 // records, seconds
	}
	colors := []string{"#d62728", "#1f77b4", "#2ca02c", "#9467bd"}
	var lines []line
	maxY := 0.0
	for i, v := range b.rep.variants {
		c := colors[i%len(colors)]
		ps := line{name: v.label + ": ssi ps -A", color: c}
		raw := line{name: v.label + ": etcd read", color: c, dashed: true}
		for _, s := range v.sizes {
			ps.pts = append(ps.pts, [2]float64{float64(s.records), med(s.psWall)})
			raw.pts = append(raw.pts, [2]float64{float64(s.records), med(s.raw)})
			maxY = max(maxY, med(s.psWall), med(s.raw))
		}
		lines = append(lines, ps, raw)
	}
	if maxY == 0 {
		maxY = 1
	}
	maxY = niceCeil(maxY)
	minX, maxX := math.Log10(float64(b.rep.sizes[0])), math.Log10(float64(b.rep.sizes[len(b.rep.sizes)-1]))
	if maxX == minX {
		maxX = minX + 1
	}
	px := func(x float64) float64 { return left + (math.Log10(x)-minX)/(maxX-minX)*(W-left-right) }
	py := func(y float64) float64 { return H - bottom - y/maxY*(H-top-bottom) }
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&sb, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&sb, `<text x="%d" y="20" font-size="14">ssi ps -A wall time against the process table's size (median)</text>`+"\n", left)
	// Axes and grid.
	for i := 0; i <= 5; i++ {
		y := maxY * float64(i) / 5
		fmt.Fprintf(&sb, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%.2g s</text>`+"\n", left, W-right, py(y), py(y), left-6, py(y)+4, y)
	}
	for _, n := range b.rep.sizes {
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px(float64(n)), px(float64(n)), top, H-bottom, px(float64(n)), H-bottom+16, human(n))
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="middle">process records (log scale)</text>`+"\n", (left+W-right)/2, H-12)
	for i, l := range lines {
		var pts []string
		for _, p := range l.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
		}
		dash := ""
		if l.dashed {
			dash = ` stroke-dasharray="5,4"`
		}
		fmt.Fprintf(&sb, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), l.color, dash)
		for _, p := range l.pts {
			fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(p[0]), py(p[1]), l.color)
		}
		ly := top + 10 + 18*i
		fmt.Fprintf(&sb, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/><text x="%d" y="%d">%s</text>`+"\n", W-right+10, W-right+35, ly, ly, l.color, dash, W-right+40, ly+4, l.name)
	}
	sb.WriteString("</svg>\n")
	return sb.String()
}

func human(n int) string {
	switch {
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// niceCeil rounds y up to 1, 2 or 5 times a power of ten.
func niceCeil(y float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(y)))
	for _, m := range []float64{1, 2, 5, 10} {
		if y <= m*p {
			return m * p
		}
	}
	return 10 * p
}

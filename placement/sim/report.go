package sim

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTable writes results as an aligned text table, one row per result.
func WriteTable(w io.Writer, results []Result) error {
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fails := hasFailures(results)
	head := "SCENARIO\tLOAD\tMAKESPAN\tMEAN SLOWDOWN\tP50\tP99\tMEAN RESPONSE\tMIGRATIONS\tMOVED JOBS\tFROZEN\tROUNDS\t"
	if fails {
		head += "FAILURES\tRESTORED\tLOST\tREDONE\t"
	}
	fmt.Fprintln(tw, head+"WALL\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%.2f\t%.0fs\t%.2f\t%.2f\t%.1f\t%.1fs\t%d\t%d\t%.0fs\t%d\t",
			r.Scenario, r.Load, r.Makespan, r.MeanSlowdown, r.P50Slowdown, r.P99Slowdown, r.MeanResponse,
			r.Migrations, r.MovedJobs, r.Frozen, r.Rounds)
		if fails {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%.0fs\t", r.Failures, r.FailedOver, r.Lost, r.Redone)
		}
		fmt.Fprintf(tw, "%.1fs\t\n", r.Wall)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// hasFailures reports whether some run had node failures (the tables then
// show what became of their jobs).
func hasFailures(results []Result) bool {
	return slices.ContainsFunc(results, func(r Result) bool { return r.Failures > 0 })
}

// WriteMarkdown writes results as a Markdown table.
func WriteMarkdown(w io.Writer, results []Result) error {
	var b strings.Builder
	fails := hasFailures(results)
	b.WriteString("| scenario | load | makespan (s) | mean slowdown | p50 slowdown | p99 slowdown | mean response (s) | migrations | moved jobs | frozen (s) | balance rounds |")
	sep := "|---|---|---|---|---|---|---|---|---|---|---|"
	if fails {
		b.WriteString(" failures | restored | lost | redone (s) |")
		sep += "---|---|---|---|"
	}
	b.WriteString(" wall (s) |\n" + sep + "---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %.2f | %.0f | %.2f | %.2f | %.1f | %.1f | %d | %d | %.0f | %d |",
			r.Scenario, r.Load, r.Makespan, r.MeanSlowdown, r.P50Slowdown, r.P99Slowdown, r.MeanResponse,
			r.Migrations, r.MovedJobs, r.Frozen, r.Rounds)
		if fails {
			fmt.Fprintf(&b, " %d | %d | %d | %.0f |", r.Failures, r.FailedOver, r.Lost, r.Redone)
		}
		fmt.Fprintf(&b, " %.1f |\n", r.Wall)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write markdown: %w", err)
	}
	return nil
}

// WriteSVG plots the mean slowdown of each scenario against the offered
// load, from results of runs at several loads, as a standalone SVG of two
// panels: every scenario on a log scale, and the scenarios whose mean
// slowdown stays below 3 on a linear scale (on the log scale they overlap).
func WriteSVG(w io.Writer, results []Result, title string) error {
	if len(results) == 0 {
		return fmt.Errorf("plot: no results")
	}
	series := map[Scenario][]Result{}
	var order []Scenario
	for _, r := range results {
		if _, ok := series[r.Scenario]; !ok {
			order = append(order, r.Scenario)
		}
		series[r.Scenario] = append(series[r.Scenario], r)
	}
	for _, rs := range series {
		slices.SortFunc(rs, func(a, b Result) int { return cmpFloat(a.Load, b.Load) })
	}
	colors := map[Scenario]string{}
	palette := []string{"#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#17becf", "#8c564b", "#7f7f7f"}
	for i, sc := range order {
		colors[sc] = palette[i%len(palette)]
	}
	var good []Scenario
	for _, sc := range order {
		worst := 0.0
		for _, r := range series[sc] {
			worst = max(worst, r.MeanSlowdown)
		}
		if worst < 3 {
			good = append(good, sc)
		}
	}
	const width, height = 1000, 470
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="60" y="22" font-size="14">%s</text>`+"\n", html.EscapeString(title))
	p := panel{left: 60, top: 50, w: 360, h: 340}
	p.draw(&b, "all scenarios (log scale)", order, series, colors, true)
	if len(good) > 0 {
		p = panel{left: 490, top: 50, w: 360, h: 340}
		p.draw(&b, "below 3 (linear scale)", good, series, colors, false)
	}
	for i, sc := range order {
		ly := 60 + float64(i)*20
		fmt.Fprintf(&b, `<line x1="870" y1="%.1f" x2="895" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", ly, ly, colors[sc])
		fmt.Fprintf(&b, `<text x="901" y="%.1f">%s</text>`+"\n", ly+4, html.EscapeString(string(sc)))
	}
	b.WriteString("</svg>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write svg: %w", err)
	}
	return nil
}

type panel struct{ left, top, w, h float64 }

func (p panel) draw(b *strings.Builder, title string, scs []Scenario, series map[Scenario][]Result, colors map[Scenario]string, logScale bool) {
	var loads []float64
	ymax := 1.0
	for _, sc := range scs {
		for _, r := range series[sc] {
			if !slices.Contains(loads, r.Load) {
				loads = append(loads, r.Load)
			}
			ymax = max(ymax, r.MeanSlowdown)
		}
	}
	slices.Sort(loads)
	xmin, xmax := loads[0], loads[len(loads)-1]
	if xmax == xmin {
		xmin, xmax = xmin-0.05, xmax+0.05
	}
	var ticks []float64
	var y func(float64) float64
	if logScale {
		decades := max(1, int(math.Ceil(math.Log10(ymax))))
		top := math.Pow(10, float64(decades))
		for v := 1.0; v <= top; v *= 10 {
			for _, m := range []float64{1, 2, 5} {
				if m*v <= top {
					ticks = append(ticks, m*v)
				}
			}
		}
		y = func(v float64) float64 { return p.top + p.h - math.Log10(max(v, 1))/float64(decades)*p.h }
	} else {
		step := 0.05
		for (ymax-1)/step > 8 {
			step *= 2
		}
		top := 1 + math.Ceil((ymax-1)/step+1e-9)*step
		for v := 1.0; v <= top+1e-9; v += step {
			ticks = append(ticks, v)
		}
		y = func(v float64) float64 { return p.top + p.h - (v-1)/(top-1)*p.h }
	}
	x := func(v float64) float64 { return p.left + (v-xmin)/(xmax-xmin)*p.w }
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", p.left+p.w/2, p.top-10, html.EscapeString(title))
	for _, v := range ticks {
		yy := y(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", p.left, yy, p.left+p.w, yy)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", p.left-6, yy+4, strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64))
	}
	for _, l := range loads {
		xx := x(l)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", xx, p.top, xx, p.top+p.h)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xx, p.top+p.h+18, strconv.FormatFloat(l, 'g', -1, 64))
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", p.left, p.top, p.w, p.h)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">offered load (arriving work / cores)</text>`+"\n", p.left+p.w/2, p.top+p.h+38)
	fmt.Fprintf(b, `<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle">mean slowdown</text>`+"\n", p.left-42, p.top+p.h/2)
	for _, sc := range scs {
		var pts []string
		for _, r := range series[sc] {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(r.Load), y(r.MeanSlowdown)))
		}
		fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), colors[sc])
		for _, r := range series[sc] {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s at load %g: mean slowdown %.3f</title></circle>`+"\n", x(r.Load), y(r.MeanSlowdown), colors[sc], sc, r.Load, r.MeanSlowdown)
		}
	}
}

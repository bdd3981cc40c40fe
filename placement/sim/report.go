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
	fmt.Fprintln(tw, "SCENARIO\tLOAD\tMAKESPAN\tMEAN SLOWDOWN\tP50\tP99\tMEAN RESPONSE\tMIGRATIONS\tMOVED JOBS\tFROZEN\tROUNDS\tWALL\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%.2f\t%.0fs\t%.2f\t%.2f\t%.1f\t%.1fs\t%d\t%d\t%.0fs\t%d\t%.1fs\t\n",
			r.Scenario, r.Load, r.Makespan, r.MeanSlowdown, r.P50Slowdown, r.P99Slowdown, r.MeanResponse,
			r.Migrations, r.MovedJobs, r.Frozen, r.Rounds, r.Wall)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// WriteMarkdown writes results as a Markdown table.
func WriteMarkdown(w io.Writer, results []Result) error {
	var b strings.Builder
	b.WriteString("| scenario | load | makespan (s) | mean slowdown | p50 slowdown | p99 slowdown | mean response (s) | migrations | moved jobs | frozen (s) | balance rounds | wall (s) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %.2f | %.0f | %.2f | %.2f | %.1f | %.1f | %d | %d | %.0f | %d | %.1f |\n",
			r.Scenario, r.Load, r.Makespan, r.MeanSlowdown, r.P50Slowdown, r.P99Slowdown, r.MeanResponse,
			r.Migrations, r.MovedJobs, r.Frozen, r.Rounds, r.Wall)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write markdown: %w", err)
	}
	return nil
}

// WriteSVG plots the mean slowdown (log scale) of each scenario against the
// offered load, from results of runs at several loads, as a standalone SVG.
func WriteSVG(w io.Writer, results []Result, title string) error {
	var loads []float64
	series := map[Scenario][]Result{}
	var order []Scenario
	for _, r := range results {
		if !slices.Contains(loads, r.Load) {
			loads = append(loads, r.Load)
		}
		if _, ok := series[r.Scenario]; !ok {
			order = append(order, r.Scenario)
		}
		series[r.Scenario] = append(series[r.Scenario], r)
	}
	if len(results) == 0 {
		return fmt.Errorf("plot: no results")
	}
	slices.Sort(loads)
	const (
		width, height            = 760, 460
		left, right, top, bottom = 70, 190, 40, 50
	)
	pw, ph := float64(width-left-right), float64(height-top-bottom)
	xmin, xmax := loads[0], loads[len(loads)-1]
	if xmax == xmin {
		xmin, xmax = xmin-0.05, xmax+0.05
	}
	ymax := 1.0
	for _, r := range results {
		ymax = max(ymax, r.MeanSlowdown)
	}
	decades := max(1, int(math.Ceil(math.Log10(ymax))))
	x := func(v float64) float64 { return float64(left) + (v-xmin)/(xmax-xmin)*pw }
	y := func(v float64) float64 { return float64(top) + ph - math.Log10(max(v, 1))/float64(decades)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14">%s</text>`+"\n", left, html.EscapeString(title))
	// Axes, grid and labels.
	for d := 0; d <= decades; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, float64(d))
			if v > math.Pow(10, float64(decades)) {
				break
			}
			yy := y(v)
			stroke := "#eee"
			if m == 1 {
				stroke = "#ccc"
			}
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", left, yy, float64(left)+pw, yy, stroke)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, yy+4, strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	for _, l := range loads {
		xx := x(l)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", xx, top, xx, float64(top)+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xx, float64(top)+ph+18, strconv.FormatFloat(l, 'g', -1, 64))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">offered load (arriving work / cores)</text>`+"\n", float64(left)+pw/2, height-10)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">mean slowdown (log scale)</text>`+"\n", float64(top)+ph/2)
	colors := []string{"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"}
	for i, sc := range order {
		c := colors[i%len(colors)]
		rs := series[sc]
		slices.SortFunc(rs, func(a, b Result) int { return cmpFloat(a.Load, b.Load) })
		var pts []string
		for _, r := range rs {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(r.Load), y(r.MeanSlowdown)))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), c)
		for _, r := range rs {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s at load %g: mean slowdown %.2f</title></circle>`+"\n", x(r.Load), y(r.MeanSlowdown), c, sc, r.Load, r.MeanSlowdown)
		}
		ly := float64(top) + 10 + float64(i)*20
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", float64(left)+pw+15, ly, float64(left)+pw+40, ly, c)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", float64(left)+pw+46, ly+4, html.EscapeString(string(sc)))
	}
	b.WriteString("</svg>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write svg: %w", err)
	}
	return nil
}

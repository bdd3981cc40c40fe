package top

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ssi-cluster/ssi/internal/display"
)

// Options configure the view.
type Options struct {
	// Interval is the time between refreshes (default 2 s).
	Interval time.Duration
	// Iterations bounds the number of batch snapshots (0: until ctx ends).
	Iterations int
	// Sort and Filter are the initial sort key (default SortCPU) and filter
	// (see the package's matching rules: "user:NAME node:NAME cmd:TEXT").
	Sort   SortKey
	Filter string
}

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = 2 * time.Second
	}
	if o.Sort == "" {
		o.Sort = SortCPU
	}
	return o
}

// Batch writes plain-text snapshots to w, one per interval, separated by a
// blank line, until Iterations are written or ctx ends (then it returns nil).
func Batch(ctx context.Context, w io.Writer, src Source, o Options) error {
	o = o.withDefaults()
	for i := 0; o.Iterations <= 0 || i < o.Iterations; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(o.Interval):
			}
			fmt.Fprintln(w)
		}
		s, err := src.Snapshot(ctx)
		if err != nil {
			if ctx.Err() != nil && i > 0 {
				return nil
			}
			return err
		}
		if err := WriteSnapshot(w, s, o.Sort, o.Filter); err != nil {
			return err
		}
	}
	return nil
}

// WriteSnapshot prints one snapshot as plain text: a summary line, the
// nodes, the processes (sorted and filtered), the migrations in flight.
func WriteSnapshot(w io.Writer, s Snapshot, key SortKey, filter string) error {
	bw := bufio.NewWriter(w)
	procs := view(s.Procs, key, filter)
	fmt.Fprintln(bw, summary(s, len(procs)))
	fmt.Fprintln(bw)
	rss := nodeRSS(s.Procs)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tCPUS\tLOAD\tDEMAND\tMEMORY\tRSS\tJOBS")
	for _, n := range s.Nodes {
		status := "NotReady"
		if n.Ready {
			status = "Ready"
		}
		fmt.Fprintf(tw, "%s\t%s\t%g\t%.2f\t%.2f\t%s\t%s\t%d\n", n.Name, status, n.CPUs, n.Load, n.Demand, display.Bytes(n.Memory), display.Bytes(rss[n.Name]), n.Jobs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(bw)
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GPID\tNODE\tUSER\tSTAT\t%CPU\tRSS\tELAPSED\tCOMMAND")
	for _, p := range procs {
		p := *p
		cpu, mem := "-", "-"
		if p.Stats != nil {
			cpu, mem = strconv.FormatFloat(p.Stats.CPU, 'f', 1, 64), display.Bytes(p.Stats.RSS)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.GPID, p.Node, p.User, stat(p), cpu, mem, runTime(p, s.Time), display.CommandLine(p.Argv))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(bw)
	fmt.Fprintln(bw, movesLine(s))
	return bw.Flush()
}

// movesLine is the bottom line: the migrations in flight.
func movesLine(s Snapshot) string {
	ms := moves(s)
	if len(ms) == 0 {
		return "migrating: none"
	}
	line := "migrating:"
	for i, m := range ms {
		if i > 0 {
			line += ","
		}
		line += fmt.Sprintf(" %d %s->%s", m.gpid, m.from, m.to)
		if m.phase != "" {
			line += " " + m.phase
		}
		if !m.started.IsZero() {
			line += " " + display.Elapsed(s.Time.Sub(m.started))
		}
	}
	return line
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/internal/display"
	"github.com/ssi-cluster/ssi/pidtable"
)

func eventsCmd(e *env) *cobra.Command {
	var (
		output string
		gpidS  string
		follow bool
		limit  int
	)
	c := &cobra.Command{
		Use:   "events [--gpid N] [-f] [-o json]",
		Short: "Show the cluster's events: the balancer's decisions",
		Long: `Show the cluster's event log, oldest first: what the automatic balancer
decided and why. Kinds:

  move       a migration started (gain and cost of the cost model)
  moved      ... done (how long it took, how long the job was frozen, bytes)
  failed     ... failed, with the reason; the job runs on its source node
  rejected   a job considered and not moved, and why (written when the reason
             changes, at most every 10 s per job)
  leader     an agent became the balancer's leader
  config     the balancer was switched on or off, or retuned

Events are kept for about an hour, at most 2000. -f keeps printing new ones;
-o json prints one JSON object per line.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("events: unexpected argument %q (a job's events: --gpid N)", args[0])
			}
			if output != "" && output != "json" {
				return usageErr("events: -o %q: want json", output)
			}
			var gpid uint64
			if gpidS != "" {
				gs, err := parseGPIDs("events: --gpid", []string{gpidS})
				if err != nil {
					return err
				}
				gpid = gs[0]
			}
			if limit < 0 {
				return usageErr("events: --limit %d: must not be negative", limit)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var since int64
			for {
				evs, rev, err := cl.Events(ctx, since, gpid, limit)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return explain(err, src)
				}
				since = rev
				if err := writeEvents(e.stdout, evs, output == "json"); err != nil {
					return err
				}
				if !follow {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				limit = 0
			}
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json (one object per line)")
	c.Flags().StringVar(&gpidS, "gpid", "", "only the events of this job")
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	c.Flags().IntVar(&limit, "limit", 0, "print only the newest N (0: the server's default, 500)")
	return c
}

func writeEvents(w io.Writer, evs []pidtable.Event, asJSON bool) error {
	bw := bufio.NewWriter(w)
	if asJSON {
		enc := json.NewEncoder(bw)
		for _, ev := range evs {
			if err := enc.Encode(ev); err != nil {
				return err
			}
		}
		return bw.Flush()
	}
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	printEvents(tw, evs)
	tw.Flush()
	return bw.Flush()
}

// printEvents writes one line per event: time, kind, gpid, from -> to, what.
func printEvents(tw *tabwriter.Writer, evs []pidtable.Event) {
	for _, ev := range evs {
		gpid, move := "-", "-"
		if ev.GPID != 0 {
			gpid = strconv.FormatUint(ev.GPID, 10)
		}
		switch {
		case ev.To != "":
			move = ev.From + " -> " + ev.To
		case ev.From != "":
			move = ev.From
		}
		what := ev.Reason
		switch ev.Kind {
		case pidtable.EventMove:
			what = fmt.Sprintf("gain %s > cost %s", ev.Gain.Round(time.Millisecond), ev.Cost.Round(time.Millisecond))
			if ev.Reason != "" {
				what += ": " + ev.Reason
			}
		case pidtable.EventMoved:
			what = fmt.Sprintf("took %s, frozen %s, %s", ev.Took.Round(time.Millisecond), ev.Frozen.Round(time.Millisecond), display.Bytes(ev.Bytes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ev.Time.Local().Format("15:04:05.000"), ev.Node, ev.Kind, gpid, move, what)
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/display"
	"github.com/ssi-cluster/ssi/pidtable"
)

func eventsCmd(e *env) *cobra.Command {
	var (
		output string
		gpidS  string
		node   string
		types  []string
		follow bool
		limit  int
	)
	c := &cobra.Command{
		Use:   "events [--gpid N] [--node NAME] [--type KIND,...] [-f] [-o json]",
		Short: "Show the cluster's events: jobs' lifecycles, migrations, nodes, leaders",
		Long: `Show the cluster's event log, oldest first. Kinds (--type):

  run         a job's process runs (its command)
  exit        a job exited (exit_code; signal when a signal ended it)
  kill        a signal was sent to a job (signal, by whom)
  lost        a job's record named a node where no process of it exists,
              or its node was removed
  migrate     a migration, whoever asked (ssi migrate, the balancer, a drain):
              phase started, done (took, frozen, bytes, phase timings),
              failed (why), rolledback (the job runs on its source again)
  checkpoint  a checkpoint of a job was saved (name, bytes)
  restore     a job runs again, restored from a checkpoint
  move, moved, failed, rejected
              the balancer's decisions: a move started (gain and cost of the
              cost model), done, failed; a job considered and not moved, and why
  failover    a job of a dead node restored elsewhere, or why not
  drain       a node's drain started, ended or was cancelled; cordons
  node        phase joined, ready, notready or left (from: the node)
  leader      a new leader of an elected controller (role: balancer,
              service, drain, failover)
  service     a service changed, or a replica was started or stopped
  config      the balancer was switched on or off, or retuned
  admin, refused
              admin actions and refused requests (admins and the caller only)

A user sees the events of their own jobs and the cluster's (nodes,
leaders); admins see all. Events are kept about an hour, at most the newest
20,000. -f keeps printing new ones as they are written (the agent streams
them from a watch of the log). -o json prints one JSON object per line; its
fields are a stable format (docs/CLI.md).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("events: unexpected argument %q (a job's events: --gpid N)", args[0])
			}
			if output != "" && output != "json" {
				return usageErr("events: -o %q: want json", output)
			}
			q := api.EventsQuery{Node: node, Limit: limit}
			if gpidS != "" {
				gs, err := parseGPIDs("events: --gpid", []string{gpidS})
				if err != nil {
					return err
				}
				q.GPID = gs[0]
			}
			ks, err := pidtable.ParseEventKinds(types)
			if err != nil {
				return usageErr("events: --type: %v", err)
			}
			q.Types = ks
			if limit < 0 {
				return usageErr("events: --limit %d: must not be negative", limit)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if !follow {
				evs, _, err := cl.EventsMatching(ctx, q)
				if err != nil {
					return explain(err, src)
				}
				return writeEvents(e.stdout, evs, output == "json")
			}
			bw := bufio.NewWriter(e.stdout)
			err = cl.FollowEvents(ctx, q, func(ev pidtable.Event) error {
				if output == "json" {
					b, err := json.Marshal(ev)
					if err != nil {
						return err
					}
					bw.Write(append(b, '\n'))
				} else {
					fmt.Fprintln(bw, eventLine(ev))
				}
				return bw.Flush()
			})
			if err != nil && ctx.Err() == nil {
				return explain(err, src)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json (one object per line)")
	c.Flags().StringVar(&gpidS, "gpid", "", "only the events of this job")
	c.Flags().StringVar(&node, "node", "", "only the events written by this node or naming it (from, to)")
	c.Flags().StringSliceVar(&types, "type", nil, "only events of these kinds (repeat, or a comma list): "+strings.Join(pidtable.EventKinds, ", "))
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events as they are written")
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

// printEvents writes one line per event: time, node, kind, gpid, from -> to, what.
func printEvents(tw *tabwriter.Writer, evs []pidtable.Event) {
	for _, ev := range evs {
		t, node, kind, gpid, move, what := eventColumns(ev)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t, node, kind, gpid, move, what)
	}
}

// eventLine is one event as a line of fixed-width columns (for -f, where
// the lines cannot be aligned on those to come).
func eventLine(ev pidtable.Event) string {
	t, node, kind, gpid, move, what := eventColumns(ev)
	return fmt.Sprintf("%s  %-8s %-18s %-6s %-16s %s", t, node, kind, gpid, move, what)
}

// eventColumns are the columns of an event's line.
func eventColumns(ev pidtable.Event) (t, node, kind, gpid, move, what string) {
	gpid, move = "-", "-"
	if ev.GPID != 0 {
		gpid = strconv.FormatUint(ev.GPID, 10)
	}
	switch {
	case ev.To != "" && ev.From != "":
		move = ev.From + " -> " + ev.To
	case ev.To != "":
		move = ev.To
	case ev.From != "":
		move = ev.From
	}
	kind = ev.Kind
	if ev.Phase != "" {
		kind += " " + ev.Phase
	}
	what = ev.Reason
	switch ev.Kind {
	case pidtable.EventMove:
		if ev.Gain == 0 && ev.Cost == 0 {
			break // a drain's move: its reason says it
		}
		what = fmt.Sprintf("gain %s > cost %s", ev.Gain.Round(time.Millisecond), ev.Cost.Round(time.Millisecond))
		if ev.Reason != "" {
			what += ": " + ev.Reason
		}
	case pidtable.EventMoved:
		what = fmt.Sprintf("took %s, frozen %s, %s", ev.Took.Round(time.Millisecond), ev.Frozen.Round(time.Millisecond), display.Bytes(ev.Bytes))
	case pidtable.EventMigrate:
		if ev.Phase == pidtable.PhaseDone {
			what = fmt.Sprintf("took %s, frozen %s, %s", ev.Took.Round(time.Millisecond), ev.Frozen.Round(time.Millisecond), display.Bytes(ev.Bytes))
			names := make([]string, 0, len(ev.Phases))
			for n := range ev.Phases {
				names = append(names, n)
			}
			sort.Strings(names)
			for i, n := range names {
				names[i] = n + " " + ev.Phases[n].Round(time.Millisecond).String()
			}
			if len(names) > 0 {
				what += " (" + strings.Join(names, ", ") + ")"
			}
		}
	case pidtable.EventRun:
		what = ev.Command
	case pidtable.EventExit:
		if ev.ExitCode != nil {
			what = "exit code " + strconv.Itoa(*ev.ExitCode)
			if ev.Signal != "" {
				what += " (SIG" + ev.Signal + ")"
			}
		}
	case pidtable.EventKill:
		what = "SIG" + ev.Signal + " by " + ev.Caller
	case pidtable.EventCheckpoint:
		what = ev.Checkpoint + ", " + display.Bytes(ev.Bytes)
		if ev.Reason != "" {
			what += ", " + ev.Reason
		}
	case pidtable.EventRestore:
		what = "from checkpoint " + ev.Checkpoint
	}
	return ev.Time.Local().Format("15:04:05.000"), ev.Node, kind, gpid, move, what
}

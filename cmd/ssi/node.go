package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/display"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// nodeStatus is the STATUS column of ssi nodes: Ready or NotReady, then
// Cordoned and Draining where they apply (as kubectl shows a cordon).
func nodeStatus(n api.NodeInfo) string {
	s := "NotReady"
	switch {
	case n.Ready:
		s = "Ready"
	case !n.Left.IsZero():
		return "Left" // stopped on purpose, drained first (ssi agent on SIGTERM)
	}
	if n.Cordoned {
		s += ",Cordoned"
	}
	if n.Draining {
		s += ",Draining"
	}
	return s
}

func nodeCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "node cordon|uncordon|label|drain|rm NAME",
		Short: "Take nodes out and bring them back: cordon, drain by live migration, labels, removal (admin)",
		Long: `Node lifecycle, for admins:

  ssi node cordon NAME       no new job is placed on NAME (runs, service
                             replicas, restores, the balancer's moves); what
                             runs there stays
  ssi node uncordon NAME     NAME takes new jobs again
  ssi node label NAME K=V... set labels (K- removes one); placement
                             constraints (ssi run --constraint) see them at once
  ssi node drain NAME        cordon NAME and move every job on it, while it
                             runs, to other nodes (live migration)
  ssi node rm NAME           remove a node whose agent is gone for good

Settings and drains live in etcd: every agent sees them at once, and a drain
goes on if the command that started it is killed.`,
	}
	c.AddCommand(nodeCordonCmd(e, true), nodeCordonCmd(e, false), nodeLabelCmd(e), nodeDrainCmd(e), nodeRmCmd(e))
	return c
}

func checkNodeArg(verb string, args []string) error {
	if len(args) != 1 {
		return usageErr("node %s: want one node name (see ssi nodes)", verb)
	}
	if err := pki.CheckName(args[0]); err != nil {
		return usageErr("node %s: %v", verb, err)
	}
	return nil
}

func nodeCordonCmd(e *env, on bool) *cobra.Command {
	verb, short := "cordon", "Place no new job on a node; what runs there stays (admin)"
	if !on {
		verb, short = "uncordon", "Let a cordoned node take new jobs again (admin)"
	}
	var reason string
	c := &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkNodeArg(verb, args); err != nil {
				return err
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			var res api.NodeResult
			if on {
				res, err = cl.Cordon(cmd.Context(), args[0], reason)
			} else {
				res, err = cl.Uncordon(cmd.Context(), args[0])
			}
			if err != nil {
				return explain(err, src)
			}
			fmt.Fprintln(e.stdout, res.Message)
			return nil
		},
	}
	if on {
		c.Flags().StringVar(&reason, "reason", "", "why (shown in ssi events)")
	}
	return c
}

func nodeLabelCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "label NAME KEY=VALUE... | KEY-...",
		Short: "Set (KEY=VALUE) or remove (KEY-) labels of a node; placement sees them at once (admin)",
		Long: `Set or remove labels of a node at runtime. They override the agent's own
--label flags, survive its restarts, and placement constraints (ssi run
--constraint KEY=VALUE, a service's Constraint=) see them at once.`,
		Example: `  ssi node label node2 gpu=a100 disk=ssd
  ssi node label node2 gpu-`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageErr("node label: want a node name and at least one KEY=VALUE or KEY-")
			}
			if err := checkNodeArg("label", args[:1]); err != nil {
				return err
			}
			var req api.LabelRequest
			for _, a := range args[1:] {
				switch k, v, ok := strings.Cut(a, "="); {
				case ok && k != "" && v != "":
					if req.Set == nil {
						req.Set = map[string]string{}
					}
					req.Set[k] = v
				case !ok && strings.HasSuffix(a, "-") && len(a) > 1:
					req.Remove = append(req.Remove, strings.TrimSuffix(a, "-"))
				default:
					return usageErr("node label: %q: want KEY=VALUE to set a label or KEY- to remove one", a)
				}
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			res, err := cl.Label(cmd.Context(), args[0], req)
			if err != nil {
				return explain(err, src)
			}
			fmt.Fprintln(e.stdout, res.Message)
			return nil
		},
	}
}

func nodeDrainCmd(e *env) *cobra.Command {
	var (
		deadline time.Duration
		parallel int
		wait     bool
		cancel   bool
		status   bool
		force    bool
		output   string
	)
	c := &cobra.Command{
		Use:   "drain NAME [--deadline 10m] [--parallel N] [--wait] [--force] | --cancel | --status",
		Short: "Move every job of a node, while it runs, to other nodes (admin)",
		Long: `Cordon NAME and move each of its jobs to another node by live migration (the
path of ssi migrate): nothing is restarted. Targets are chosen as placement
would (Ready, not cordoned, with the job's constraint labels and room for its
request, the least loaded first), --parallel moves at a time (default 2).

The drain is carried out by one elected agent from a record in etcd: killing
this command, or the agent doing the work, does not stop it; ssi node drain
NAME --wait follows it again. A job that cannot move (a terminal, a connected
TCP socket CRIU cannot dump, no node with its labels) is listed with the
reason, and stays; with --force it is killed at the deadline.

  --wait     show progress (jobs left, moved, failed) and the final table;
             exits 1 if jobs stay on the node
  --cancel   stop starting moves (those in flight finish); NAME stays cordoned
  --status   show the drain of NAME (under way or the last one), start nothing

Each move is in ssi events (move, moved, failed).`,
		Example: `  ssi node drain node2 --wait
  ssi node drain node2 --deadline 30m --parallel 4 --force
  ssi node drain node2 --cancel && ssi node uncordon node2`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkNodeArg("drain", args); err != nil {
				return err
			}
			f := cmd.Flags()
			switch {
			case output != "" && output != "json":
				return usageErr("node drain: -o %q: want json", output)
			case cancel && (f.Changed("deadline") || f.Changed("parallel") || force || wait || status):
				return usageErr("node drain --cancel takes no other flag")
			case status && (f.Changed("deadline") || f.Changed("parallel") || force || wait):
				return usageErr("node drain --status takes no other flag but -o json")
			case deadline < 0:
				return usageErr("node drain: --deadline %s: must be positive", deadline)
			case parallel < 0:
				return usageErr("node drain: --parallel %d: must be 1 or more", parallel)
			}
			name := args[0]
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if status {
				d, err := cl.DrainStatus(ctx, name)
				if err != nil {
					return explain(err, src)
				}
				if output == "json" {
					return writeJSONOut(e.stdout, d)
				}
				if d.State == pidtable.DrainActive {
					fmt.Fprintln(e.stdout, progress(d.Drain, time.Now()))
				}
				printDrain(e.stdout, d.Drain)
				return nil
			}
			if cancel {
				d, err := cl.CancelDrain(ctx, name)
				if err != nil {
					return explain(err, src)
				}
				fmt.Fprintf(e.stdout, "drain of %s %s\n", name, d.Message)
				return nil
			}
			d, err := cl.Drain(ctx, name, api.DrainRequest{Deadline: deadline, Parallel: parallel, Force: force})
			if err != nil {
				return explain(err, src)
			}
			if d.Already {
				fmt.Fprintf(e.stderr, "node %s is already being drained (started %s by %s, deadline %s); this request changed nothing\n", name, d.Started.Local().Format(time.TimeOnly), d.By, d.Deadline.Local().Format(time.TimeOnly))
			} else {
				fmt.Fprintf(e.stderr, "node %s cordoned; drain started: deadline %s, %d moves at once%s\n", name, d.Deadline.Local().Format(time.TimeOnly), d.Parallel, map[bool]string{true: ", jobs left at the deadline are killed (--force)"}[d.Force])
			}
			if !wait {
				if output == "json" {
					return writeJSONOut(e.stdout, d)
				}
				fmt.Fprintf(e.stdout, "follow it: ssi node drain %s --wait; cancel it: ssi node drain %s --cancel\n", name, name)
				return nil
			}
			final, err := waitDrain(ctx, cl, name, e.stderr)
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				if err := writeJSONOut(e.stdout, final); err != nil {
					return err
				}
			} else {
				printDrain(e.stdout, final.Drain)
			}
			n := final.Count()
			if stay := n[pidtable.JobFailed] + n[pidtable.JobUnmovable] + n[pidtable.JobLeft]; stay > 0 || final.State == pidtable.DrainCancelled {
				return &exitError{code: exitFailure, err: fmt.Errorf("drain of %s %s: %s", name, final.State, final.Message)}
			}
			return nil
		},
	}
	c.Flags().DurationVar(&deadline, "deadline", 0, "how long the drain may take; no move starts after it (default 10m)")
	c.Flags().IntVar(&parallel, "parallel", 0, "moves in flight at once (default 2)")
	c.Flags().BoolVar(&wait, "wait", false, "show progress until the drain ends, then the table of its jobs")
	c.Flags().BoolVar(&cancel, "cancel", false, "cancel the drain under way (the node stays cordoned)")
	c.Flags().BoolVar(&status, "status", false, "show the node's drain (under way or the last one); start nothing")
	c.Flags().BoolVar(&force, "force", false, "kill the jobs still on the node at the deadline")
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return c
}

// waitDrain follows a drain until it ends, printing a progress line to w
// each time it changes.
func waitDrain(ctx context.Context, cl *api.Client, name string, w io.Writer) (api.DrainResponse, error) {
	last, printed := "", time.Time{}
	fails := 0
	for {
		d, err := cl.DrainStatus(ctx, name)
		if err != nil {
			// An agent restarting, a leader changing: keep following a while.
			if fails++; fails > 30 || errors.Is(err, context.Canceled) || api.IsCode(err, api.CodeNotFound) || api.IsCode(err, api.CodeForbidden) {
				return d, err
			}
		} else {
			fails = 0
			// A line when the counts change, else every 15 s.
			line := progress(d.Drain, time.Now())
			counts, _, _ := strings.Cut(line, "; deadline in")
			if counts != last || time.Since(printed) >= 15*time.Second {
				fmt.Fprintln(w, line)
				last, printed = counts, time.Now()
			}
			if d.State != pidtable.DrainActive {
				return d, nil
			}
		}
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// progress is one line of a drain's progress.
func progress(d pidtable.Drain, now time.Time) string {
	if d.State == pidtable.DrainActive && d.Leader == "" {
		return fmt.Sprintf("drain of %s: waiting for the drain controller (an elected agent) to take it up", d.Node)
	}
	n := d.Count()
	left := n[pidtable.JobPending] + n[pidtable.JobMoving] + n[pidtable.JobRetry] + n[pidtable.JobReplacing]
	s := fmt.Sprintf("drain of %s: %d left (%d moving), %d moved, %d failed", d.Node, left, n[pidtable.JobMoving], n[pidtable.JobMoved], n[pidtable.JobFailed]+n[pidtable.JobRetry])
	if k, r := n[pidtable.JobReplacing], n[pidtable.JobReplaced]; k+r > 0 {
		s += fmt.Sprintf(", %d replicas replaced (%d being replaced)", r, k)
	}
	if k := n[pidtable.JobUnmovable]; k > 0 {
		s += fmt.Sprintf(", %d unmovable", k)
	}
	if k := n[pidtable.JobEnded]; k > 0 {
		s += fmt.Sprintf(", %d ended", k)
	}
	switch left := d.Deadline.Sub(now); {
	case d.State == pidtable.DrainActive && left > 0:
		s += fmt.Sprintf("; deadline in %s", left.Round(time.Second))
	case d.State == pidtable.DrainActive:
		s += "; deadline passed"
	default:
		s += "; " + d.State
	}
	return s
}

// printDrain prints a drain's outcome: one line, then a row per job.
func printDrain(w io.Writer, d pidtable.Drain) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	took := d.Finished.Sub(d.Started)
	if d.Finished.IsZero() {
		took = time.Since(d.Started)
	}
	fmt.Fprintf(bw, "drain of %s: %s in %s: %s\n", d.Node, d.State, took.Round(100*time.Millisecond), d.Message)
	if len(d.Jobs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GPID\tUSER\tSTATE\tTO\tFROZEN\tTOOK\tIMAGES\tCOMMAND\tREASON")
	for _, j := range d.Jobs {
		frozen, tk, img := "-", "-", "-"
		if j.State == pidtable.JobMoved && j.Took > 0 {
			frozen, tk, img = j.Frozen.Round(time.Millisecond).String(), j.Took.Round(time.Millisecond).String(), display.Bytes(j.Bytes)
		}
		to := j.To
		if to == "" {
			to = "-"
		}
		reason := j.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.GPID, j.User, j.State, to, frozen, tk, img, j.Command, reason)
	}
	tw.Flush()
}

func nodeRmCmd(e *env) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "rm NAME [--force]",
		Short: "Remove a node whose agent is gone: its record, settings, certificates; its jobs become lost (admin)",
		Long: `Remove NAME from the cluster: its registration, its labels and cordon, its
drain record. Jobs recorded on it and running nowhere else are recorded lost,
with the reason; its node certificates are revoked (every agent refuses them
at once), so the machine must join again (a new token) to come back.

A node that is Ready (its agent runs) is refused: stop its agent first. With
--force a Ready node that runs no job is removed (drain it first).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkNodeArg("rm", args); err != nil {
				return err
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			res, err := cl.RemoveNode(cmd.Context(), args[0], force)
			if err != nil {
				return explain(err, src)
			}
			fmt.Fprintln(e.stdout, res.Message)
			for _, g := range res.Lost {
				fmt.Fprintf(e.stdout, "  gpid %d: lost\n", g)
			}
			for _, s := range res.Skipped {
				fmt.Fprintf(e.stdout, "  %s\n", s)
			}
			for _, s := range res.Revoked {
				fmt.Fprintf(e.stdout, "  revoked certificate serial %s\n", s)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "remove a Ready node that runs no job")
	return c
}

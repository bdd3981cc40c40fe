package main

import (
	"bufio"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/display"
)

func balanceCmd(e *env) *cobra.Command {
	var (
		output     string
		residency  time.Duration
		hysteresis float64
		inflight   int
		moves      int
		maxFreeze  time.Duration
	)
	c := &cobra.Command{
		Use:   "balance status|on|off [-o json]",
		Short: "Show or switch the automatic load balancer",
		Long: `The automatic balancer moves running jobs from busy nodes to idle ones
(live migration, as ssi migrate does). It is on by default, for the whole
cluster, and run by one agent at a time: the leader of an etcd election; if it
dies another takes over within seconds. A job moves only if the time it is
expected to gain (its age, MOSIX's estimate of how long it will still run,
times the difference in load per CPU) exceeds the cost of the move (its memory
over the measured transfer rate, plus the freeze); a job that moved stays on
its node for a residency period; a few migrations at most are in flight per
node. Jobs started with ssi run --pin are never moved.

  ssi balance status   on/off, the leader, its last round, moves in flight, recent moves
  ssi balance on       switch it on
  ssi balance off      switch it off: no new moves (moves in flight finish)

With on or off, --residency, --hysteresis, --max-inflight, --max-moves and
--max-freeze
retune it (0: the policy's default; the defaults are in docs/ARCHITECTURE.md).

Every decision, including jobs considered and not moved and why, is in
ssi events.`,
		Example: `  ssi balance status
  ssi balance off
  ssi balance on --residency 30s`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("balance: want one of status, on, off (see 'ssi balance --help')")
			}
			if output != "" && output != "json" {
				return usageErr("balance: -o %q: want json", output)
			}
			f := cmd.Flags()
			tuned := f.Changed("residency") || f.Changed("hysteresis") || f.Changed("max-inflight") || f.Changed("max-moves") || f.Changed("max-freeze")
			switch args[0] {
			case "status", "on", "off":
			default:
				return usageErr("balance: unknown action %q: want status, on or off", args[0])
			}
			if tuned && args[0] == "status" {
				return usageErr("balance status: --residency, --hysteresis, --max-inflight, --max-moves and --max-freeze go with 'ssi balance on' or 'off'")
			}
			if residency < 0 || hysteresis < 0 || inflight < 0 || moves < 0 || maxFreeze < 0 {
				return usageErr("balance %s: --residency, --hysteresis, --max-inflight, --max-moves and --max-freeze must not be negative (0 restores the default)", args[0])
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			var st api.BalanceStatus
			if args[0] == "status" {
				st, err = cl.Balance(cmd.Context())
			} else {
				req := api.BalanceRequest{Enabled: args[0] == "on"}
				if f.Changed("residency") {
					req.Residency = &residency
				}
				if f.Changed("hysteresis") {
					req.Hysteresis = &hysteresis
				}
				if f.Changed("max-inflight") {
					req.MaxInflightPerNode = &inflight
				}
				if f.Changed("max-moves") {
					req.MaxMovesPerRound = &moves
				}
				if f.Changed("max-freeze") {
					req.MaxFreeze = &maxFreeze
				}
				st, err = cl.SetBalance(cmd.Context(), req)
			}
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				return writeJSONOut(e.stdout, st)
			}
			printBalance(e.stdout, st, time.Now())
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	c.Flags().DurationVar(&residency, "residency", 0, "least time a job stays on a node after it arrived (0: the default)")
	c.Flags().Float64Var(&hysteresis, "hysteresis", 0, "least difference in load per CPU worth a move (0: the default)")
	c.Flags().IntVar(&inflight, "max-inflight", 0, "most migrations in flight from or to one node (0: the default)")
	c.Flags().IntVar(&moves, "max-moves", 0, "most moves one round of the balancer starts (0: the default)")
	c.Flags().DurationVar(&maxFreeze, "max-freeze", 0, "longest the balancer may freeze a job; jobs whose stop-and-copy move would freeze them longer move post-copy (0: the default, 2s)")
	return c
}

func printBalance(w io.Writer, st api.BalanceStatus, now time.Time) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	state := "off"
	if st.Config.Enabled {
		state = "on"
	}
	fmt.Fprintf(bw, "balancer:   %s\n", state)
	if st.Config.Residency != 0 || st.Config.Hysteresis != 0 || st.Config.MaxInflightPerNode != 0 || st.Config.MaxMovesPerRound != 0 || st.Config.MaxFreeze != 0 {
		fmt.Fprintf(bw, "tuning:     residency %s, hysteresis %g, max in flight per node %d, max moves per round %d, max freeze %s (0: default)\n", st.Config.Residency, st.Config.Hysteresis, st.Config.MaxInflightPerNode, st.Config.MaxMovesPerRound, st.Config.MaxFreeze)
	}
	leader := st.Leader
	if leader == "" {
		leader = "none (no agent is a candidate, or the election is being decided)"
	}
	fmt.Fprintf(bw, "leader:     %s\n", leader)
	s := st.Status
	if s == nil {
		return
	}
	took := ""
	if s.RoundTook > 0 {
		took = fmt.Sprintf(", took %s", s.RoundTook.Round(10*time.Microsecond))
	}
	fmt.Fprintf(bw, "last round: %s (%s ago, by %s%s)\n", s.LastRound.Local().Format(time.TimeOnly), now.Sub(s.LastRound).Round(100*time.Millisecond), s.Leader, took)
	fmt.Fprintf(bw, "moves:      %d started by this leader, %d done, %d failed, %d in flight\n", s.Moves, s.MovesDone, s.MovesFail, len(s.Inflight))
	if s.Measured > 0 {
		rate := "the default"
		if s.TransferRate > 0 {
			rate = display.Bytes(int64(s.TransferRate)) + "/s"
		}
		fmt.Fprintf(bw, "cost model: freeze %s measured over %d moves; transfer rate %s (measured on moves of 32 MiB or more)\n", s.Freeze.Round(time.Millisecond), s.Measured, rate)
	} else {
		fmt.Fprintf(bw, "cost model: policy defaults (no move measured yet)\n")
	}
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	if len(s.Inflight) > 0 {
		fmt.Fprintln(bw, "\nin flight:")
		fmt.Fprintln(tw, "  GPID\tFROM\tTO\tFOR")
		for _, m := range s.Inflight {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", m.GPID, m.From, m.To, now.Sub(m.Started).Round(100*time.Millisecond))
		}
		tw.Flush()
	}
	if len(st.Recent) > 0 {
		fmt.Fprintln(bw, "\nrecent moves (newest first):")
		printEvents(tw, st.Recent)
		tw.Flush()
	}
}

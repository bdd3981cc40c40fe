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

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/display"
	"github.com/ssi-cluster/ssi/pidtable"
)

func psCmd(e *env) *cobra.Command {
	var all, exited bool
	var output string
	c := &cobra.Command{
		Use:   "ps [-A] [-o wide|json]",
		Short: "List processes across the cluster",
		Long: `List global processes, sorted by gpid: yours, or everyone's with -A.

Columns: GPID, NODE, PID (host PID of the job's main process on its node),
USER, STAT (state letter from the node; ? when the node is NotReady), %CPU (of
one core, over the last second), RSS, ELAPSED, COMMAND. -o wide adds the job's
state, limits, PIN (pinned with ssi run --pin: the balancer never moves it) and
start time and does not cut the command; -o json prints the records (see
docs/CLI.md for the schema). Ended jobs are listed with --exited.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "wide" && output != "json" {
				return usageErr("ps: -o %q: want wide or json", output)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			who := ""
			if !all {
				who = cl.User()
			}
			procs, err := cl.PS(cmd.Context(), who, exited)
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				return writeJSONOut(e.stdout, procs)
			}
			printProcs(e.stdout, procs, output == "wide", time.Now())
			return nil
		},
	}
	c.Flags().BoolVarP(&all, "all", "A", false, "every user's processes")
	c.Flags().BoolVar(&exited, "exited", false, "include ended jobs")
	c.Flags().StringVarP(&output, "output", "o", "", "output format: wide or json")
	return c
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printProcs(w io.Writer, procs []api.ProcInfo, wide bool, now time.Time) {
	// Buffered: tabwriter writes cell by cell, one write(2) each on a bare stdout.
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	hdr := "GPID\tNODE\tPID\tUSER\tSTAT\t%CPU\tRSS\tELAPSED\t"
	if wide {
		hdr += "STATE\tCPUS\tMEMORY\tPIN\tSTARTED\t"
	}
	fmt.Fprintln(tw, hdr+"COMMAND")
	for _, p := range procs {
		stat, cpu, rss := statOf(p), "-", "-"
		if p.Stats != nil {
			cpu, rss = fmt.Sprintf("%.1f", p.Stats.CPU), display.Bytes(p.Stats.RSS)
		}
		pid := "-"
		if p.PID > 0 {
			pid = strconv.Itoa(p.PID)
		}
		line := fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t", p.GPID, p.Node, pid, p.User, stat, cpu, rss, elapsed(p.Proc, now))
		command := display.CommandLine(p.Argv)
		if p.Service != "" {
			command = "[" + p.Service + "] " + command
		}
		if wide {
			cpus, mem := "-", "-"
			if p.CPUs > 0 {
				cpus = strconv.FormatFloat(p.CPUs, 'g', -1, 64)
			}
			if p.Memory > 0 {
				mem = display.Bytes(p.Memory)
			}
			pin := "-"
			if p.Pinned {
				pin = "pin"
			}
			line += fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t", p.State, cpus, mem, pin, p.Created.Local().Format(time.DateTime))
		} else if len(command) > 60 {
			command = command[:57] + "..."
		}
		fmt.Fprintln(tw, line+command)
	}
	tw.Flush()
}

func statOf(p api.ProcInfo) string {
	switch {
	case p.State == pidtable.Exited:
		return "exit:" + strconv.Itoa(*p.ExitCode)
	case p.State == pidtable.Lost:
		return "lost"
	case p.State == pidtable.Checkpointed:
		return "ckpt"
	case !p.NodeReady:
		return "?"
	case p.State == pidtable.Starting:
		return "start"
	case p.Stats != nil:
		return p.Stats.Stat
	}
	return "-"
}

// elapsed formats a job's run time like ps's etime: [[DD-]HH:]MM:SS.
func elapsed(p pidtable.Proc, now time.Time) string {
	start := p.Started
	if start.IsZero() {
		start = p.Created
	}
	end := now
	if !p.Ended.IsZero() {
		end = p.Ended
	}
	return display.Elapsed(end.Sub(start))
}

func nodesCmd(e *env) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "nodes [-o json]",
		Short: "List the nodes of the cluster",
		Long: `List nodes: name, agent address, Ready/NotReady (NotReady once its agent has
not renewed its lease for 5 s), the CPUs and memory it offers, its load (CPU
its jobs use, in cores), their demand (CPU they want: use plus time spent
waiting for a CPU; above CPUS when the node is overloaded) and its number of
live jobs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return usageErr("nodes: -o %q: want json", output)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			nodes, err := cl.Nodes(cmd.Context())
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				return writeJSONOut(e.stdout, nodes)
			}
			bw := bufio.NewWriter(e.stdout)
			defer bw.Flush()
			tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESS\tSTATUS\tCPUS\tMEMORY\tLOAD\tDEMAND\tJOBS")
			for _, n := range nodes {
				status := "NotReady"
				if n.Ready {
					status = "Ready"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%g\t%s\t%.2f\t%.2f\t%d\n", n.Name, n.Addr, status, n.CPUs, display.Bytes(n.Memory), n.Load, n.Demand, n.Jobs)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return c
}

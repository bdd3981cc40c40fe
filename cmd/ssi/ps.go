package main

import (
	"bufio"
	"cmp"
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
	var output, node, states string
	var limit int
	var after uint64
	c := &cobra.Command{
		Use:   "ps [-A] [-a] [--node NODE] [--state S,...] [--limit N] [-o wide|json]",
		Short: "List processes across the cluster",
		Long: `List global processes, sorted by gpid: yours, or everyone's with -A (an admin's
certificate sees every user's jobs; a user's, their own).

Columns: GPID, NODE, PID (host PID of the job's main process on its node),
USER, STAT (state letter from the node; ? when the node is NotReady), %CPU (of
one core, over the last second), RSS, ELAPSED, COMMAND. -o wide adds the job's
state, limits, PIN (pinned with ssi run --pin: the balancer never moves it) and
start time and does not cut the command; -o json prints the records (see
docs/CLI.md for the schema).

Ended jobs are listed with -a (--exited): those that ended within the agents'
--retention, and the archived ones after it (for the agents' --history).
--node, --state (starting, running, migrating, checkpointing, exited, lost,
checkpointed; comma-separated) and --limit narrow the listing on the agent;
--after GPID resumes a limited one. Rows are printed as they arrive: the column
widths are those of the first rows, so a later, wider cell shifts its line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "wide" && output != "json" {
				return usageErr("ps: -o %q: want wide or json", output)
			}
			if limit < 0 {
				return usageErr("ps: --limit %d: want a number of rows, 0 for no limit", limit)
			}
			q := api.PSQuery{Node: node, Exited: exited, Limit: limit, After: after}
			if states != "" {
				st, err := api.ParseStates(states)
				if err != nil {
					return usageErr("ps: --state: %v", err)
				}
				q.States = st
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			if !all {
				q.User = cl.User()
			}
			var out rowWriter
			if output == "json" {
				out = newJSONRows(e.stdout)
			} else {
				out = newProcTable(e.stdout, output == "wide", time.Now())
			}
			res, err := cl.PSStream(cmd.Context(), q, out.add)
			if cerr := out.close(err == nil); err == nil {
				err = cerr
			}
			if err != nil {
				return explain(err, src)
			}
			if res.Next != 0 {
				fmt.Fprintf(e.stderr, "ssi ps: the first %d rows; for the next ones add --after %d\n", res.Rows, res.Next)
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&all, "all", "A", false, "every user's processes")
	c.Flags().BoolVarP(&exited, "exited", "a", false, "include ended jobs (archived ones too)")
	c.Flags().StringVar(&node, "node", "", "only the jobs of this node")
	c.Flags().StringVar(&states, "state", "", "only jobs in these states, comma-separated (ended states include archived jobs)")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many rows (0: all)")
	c.Flags().Uint64Var(&after, "after", 0, "only gpids above this one (where a --limit listing stopped)")
	c.Flags().StringVarP(&output, "output", "o", "", "output format: wide or json")
	return c
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func statOf(p *api.ProcInfo) string {
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
		Use:   "nodes [-o wide|json]",
		Short: "List the nodes of the cluster",
		Long: `List nodes: name, agent address, Ready/NotReady (NotReady once its agent has
not renewed its lease for 5 s), the CPUs and memory it offers, its load (CPU
its jobs use, in cores), their demand (CPU they want: use plus time spent
waiting for a CPU; above CPUS when the node is overloaded) and its number of
live jobs. STATUS adds Cordoned for a node that takes no new job (ssi node
cordon) and Draining while its jobs are moved away (ssi node drain); a node
whose agent stopped on purpose, after draining it, is Left rather than
NotReady. -o wide adds each agent's ssi version and migration protocol (jobs
move only between agents of one protocol), to follow a rolling upgrade.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "wide" {
				return usageErr("nodes: -o %q: want wide or json", output)
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
			wide := output == "wide"
			head := "NAME\tADDRESS\tSTATUS\tCPUS\tMEMORY\tLOAD\tDEMAND\tJOBS"
			if wide {
				head += "\tVERSION\tPROTOCOL"
			}
			fmt.Fprintln(tw, head)
			for _, n := range nodes {
				status := nodeStatus(n)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%g\t%s\t%.2f\t%.2f\t%d", n.Name, n.Addr, status, n.CPUs, display.Bytes(n.Memory), n.Load, n.Demand, n.Jobs)
				if wide {
					proto := "-" // an agent from before protocol versions
					if n.Protocol > 0 {
						proto = strconv.Itoa(n.Protocol)
					}
					fmt.Fprintf(tw, "\t%s\t%s", cmp.Or(n.Version, "-"), proto)
				}
				fmt.Fprintln(tw)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "output format: wide (adds version and protocol) or json")
	return c
}

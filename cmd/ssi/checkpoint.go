package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/display"
	"github.com/ssi-cluster/ssi/pidtable"
)

func checkpointCmd(e *env) *cobra.Command {
	var output, name string
	var leaveRunning bool
	c := &cobra.Command{
		Use:   "checkpoint GPID",
		Short: "Save a running job to its node's checkpoint store (CRIU)",
		Long: `Save a checkpoint of a running job: its processes' memory, open files,
pipes, threads and output so far, in the checkpoint store of the node it runs
on. Without --leave-running the job is then stopped (ssi ps shows it as
"ckpt"; ssi wait and an attached ssi run return 122) and 'ssi restore NAME'
brings it back under the same gpid, on any node. With --leave-running the job
only pauses for the dump; restoring it under its gpid is refused while it
runs, but 'ssi restore --as-new' starts a copy.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("checkpoint: want one GPID (see ssi ps -A)")
			}
			gpids, err := parseGPIDs("checkpoint", args)
			if err != nil {
				return err
			}
			if output != "" && output != "json" {
				return usageErr("checkpoint: -o %q: want json", output)
			}
			if name != "" {
				if err := pidtable.ValidCheckpointName(name); err != nil {
					return usageErr("checkpoint: --name: %v", err)
				}
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			res, err := cl.Checkpoint(cmd.Context(), gpids[0], api.CheckpointRequest{Name: name, LeaveRunning: leaveRunning})
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				return writeJSONOut(e.stdout, res)
			}
			what := "job stopped; bring it back with: ssi restore " + res.Name
			if res.LeaveRunning {
				what = "job still running"
			}
			fmt.Fprintf(e.stdout, "checkpoint %s: gpid %d on %s, %s, frozen %s (dump %s), total %s; %s\n",
				res.Name, res.GPID, res.Node, display.Bytes(res.Size), msec(res.FrozenMS), msec(res.DumpMS), msec(res.TotalMS), what)
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "name of the checkpoint (default GPID-TIME)")
	c.Flags().BoolVar(&leaveRunning, "leave-running", false, "keep the job running after the dump")
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return c
}

func checkpointsCmd(e *env) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "checkpoints",
		Short: "List the cluster's checkpoints",
		Long: `List every checkpoint in the cluster: its name, the job it was taken of, the
node whose store holds it (a checkpoint can be restored while that node is
Ready), its size and age. 'ssi checkpoints rm NAME' removes one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" {
				return usageErr("checkpoints: -o %q: want json", output)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			cs, err := cl.Checkpoints(cmd.Context())
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				return writeJSONOut(e.stdout, cs)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tGPID\tNODE\tSIZE\tAGE\tSTATE\tUSER\tCOMMAND")
			now := time.Now()
			for _, c := range cs {
				node := c.Node
				if !c.NodeReady {
					node += " (NotReady)"
				}
				state := string(c.State)
				if c.State == pidtable.Ready && c.LeaveRunning {
					state += ",left-running"
				}
				command := display.CommandLine(c.Proc.Argv)
				if len(command) > 40 {
					command = command[:37] + "..."
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.GPID, node, display.Bytes(c.Size),
					now.Sub(c.Created).Truncate(time.Second), state, c.Proc.User, command)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	c.AddCommand(&cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove checkpoints and their images",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr("checkpoints rm: want one or more checkpoint names (see ssi checkpoints)")
			}
			for _, n := range args {
				if err := pidtable.ValidCheckpointName(n); err != nil {
					return usageErr("checkpoints rm: %v", err)
				}
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			for _, n := range args {
				if err := cl.DeleteCheckpoint(cmd.Context(), n); err != nil {
					return explain(err, src)
				}
				fmt.Fprintf(e.stdout, "removed checkpoint %s\n", n)
			}
			return nil
		},
	})
	return c
}

func restoreCmd(e *env) *cobra.Command {
	var output, node, policy string
	var asNew bool
	c := &cobra.Command{
		Use:   "restore CHECKPOINT",
		Short: "Bring a checkpoint back as a running job, on any node",
		Long: `Restore a checkpoint (see ssi checkpoints) on NODE, or where placement puts
it. The images are shipped from the node that holds them. The job comes back
under its own gpid, with its output so far (ssi logs -f shows it and what
follows), unless that gpid is still running: that would run it twice, so it is
refused. --as-new restores a second copy under a new gpid instead.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("restore: want one CHECKPOINT name (see ssi checkpoints)")
			}
			if err := pidtable.ValidCheckpointName(args[0]); err != nil {
				return usageErr("restore: %v", err)
			}
			if output != "" && output != "json" {
				return usageErr("restore: -o %q: want json", output)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			res, err := cl.RestoreCheckpoint(cmd.Context(), args[0], api.CheckpointRestoreRequest{Node: node, Placement: policy, AsNew: asNew})
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				return writeJSONOut(e.stdout, res)
			}
			shipped := "images read in place"
			if res.From != res.Node {
				shipped = fmt.Sprintf("%s shipped from %s in %s", display.Bytes(res.ImageBytes), res.From, msec(res.TransferMS))
			}
			fmt.Fprintf(e.stdout, "restored checkpoint %s as gpid %d on %s: %s, restore %s, total %s\n",
				res.Checkpoint, res.GPID, res.Node, shipped, msec(res.RestoreMS), msec(res.TotalMS))
			return nil
		},
	}
	c.Flags().StringVar(&node, "node", "", "node to restore on (default: placement chooses)")
	c.Flags().StringVar(&policy, "placement", "", "placement policy when --node is not given")
	c.Flags().BoolVar(&asNew, "as-new", false, "restore a copy under a new gpid")
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return c
}

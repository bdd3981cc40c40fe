package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/top"
)

func topCmd(e *env) *cobra.Command {
	var batch bool
	var iterations int
	var interval time.Duration
	var sortKey, filter string
	c := &cobra.Command{
		Use:   "top [-b] [-n N] [-d DELAY] [--sort KEY] [--filter TEXT]",
		Short: "Show the cluster's nodes and processes, refreshed (like top)",
		Long: `A full-screen view of the cluster, refreshed every DELAY: a bar per node (CPU:
load in green and the demand it could not get in red, out of its CPUs; its
jobs' memory out of its memory; its jobs), then the processes of the whole
cluster sorted by CPU, and the migrations in flight on the bottom line. Each
refresh is three API reads (nodes, processes, balancer) whatever the size of
the cluster.

Keys: up/down/PgUp/PgDn select; c, r, n, g sort by CPU, RSS, node, gpid;
/ filters (words that must all match: user:NAME, node:NAME, cmd:TEXT, or
text found in the user, node or command; Esc clears); k signals the selected
process (TERM, or type another signal); m migrates it to a node chosen with
the arrows or its number; q quits.

-b prints plain-text snapshots instead (for scripts, like top -b), -n N of
them (default: until interrupted).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := top.ParseSortKey(sortKey)
			if err != nil {
				return usageErr("%v", err)
			}
			if interval <= 0 {
				return usageErr("top: -d %s: want a positive duration", interval)
			}
			if iterations < 0 {
				return usageErr("top: -n %d: want 0 (no limit) or more", iterations)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			s := &topSource{cl: cl}
			o := top.Options{Interval: interval, Iterations: iterations, Sort: key, Filter: filter}
			ctx := cmd.Context()
			if batch {
				if _, err := s.Snapshot(ctx); err != nil {
					return explain(err, src)
				}
				return explain(top.Batch(ctx, e.stdout, s, o), src)
			}
			if !isTerminal(os.Stdout) || !isTerminal(os.Stdin) {
				return usageErr("top: stdin and stdout must be a terminal; use ssi top -b for a snapshot as text")
			}
			if _, err := s.Snapshot(ctx); err != nil {
				return explain(err, src)
			}
			return top.Run(ctx, s, o)
		},
	}
	c.Flags().BoolVarP(&batch, "batch", "b", false, "print plain-text snapshots (for scripts)")
	c.Flags().IntVarP(&iterations, "iterations", "n", 0, "with -b: number of snapshots (0: until interrupted)")
	c.Flags().DurationVarP(&interval, "delay", "d", 2*time.Second, "time between refreshes")
	c.Flags().StringVar(&sortKey, "sort", "cpu", "sort processes by cpu, rss, node or gpid")
	c.Flags().StringVar(&filter, "filter", "", "show only processes matching (user:NAME node:NAME cmd:TEXT or text)")
	return c
}

// topSource feeds ssi top from the API.
type topSource struct{ cl *api.Client }

// Snapshot reads nodes, live processes and the balancer's state (three
// requests, whatever the cluster's size). The balancer's state is optional.
func (s *topSource) Snapshot(ctx context.Context) (top.Snapshot, error) {
	nodes, err := s.cl.Nodes(ctx)
	if err != nil {
		return top.Snapshot{}, err
	}
	procs, err := s.cl.PS(ctx, "", false)
	if err != nil {
		return top.Snapshot{}, err
	}
	snap := top.Snapshot{Time: time.Now(), Nodes: nodes, Procs: procs}
	if b, err := s.cl.Balance(ctx); err == nil {
		snap.Balance = &b
	} else if ctx.Err() != nil {
		return top.Snapshot{}, ctx.Err()
	}
	return snap, nil
}

// Signal sends sig to gpid.
func (s *topSource) Signal(ctx context.Context, gpid uint64, sig string) error {
	return s.cl.Signal(ctx, gpid, sig)
}

// Migrate moves gpid to node, through its owner's agent when reachable (as
// ssi migrate), and summarizes the move.
func (s *topSource) Migrate(ctx context.Context, gpid uint64, node string) (string, error) {
	st, err := ownerClient(ctx, s.cl, gpid).Migrate(ctx, gpid, api.MigrateRequest{Node: node}, nil)
	if errors.Is(err, api.ErrStreamLost) {
		return fmt.Sprintf("migration of gpid %d to %s: progress stream lost; see the table", gpid, node), nil
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("migrated gpid %d %s -> %s: frozen %s, total %s", st.GPID, st.From, st.To, msec(st.FrozenMS), msec(st.TotalMS)), nil
}

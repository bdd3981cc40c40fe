package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/display"
)

func migrateCmd(e *env) *cobra.Command {
	var output string
	var detach, postcopy, fromCheckpoint bool
	c := &cobra.Command{
		Use:   "migrate GPID NODE",
		Short: "Move a running job to another node (live migration with CRIU)",
		Long: `Move a running job to NODE: it is checkpointed (and stopped) on its node, its
images are streamed to NODE and checksummed, restored there with its output
re-plumbed, and the process table switched to NODE in one transaction; only
then is the stopped original killed. Any failure before that resumes the
original. The job keeps its gpid; attached 'ssi run' and 'ssi logs -f' keep
streaming. On a terminal the phases are shown as they happen; at the end one
line of figures (-o json: the same as JSON). With -d, returns once the
migration has started.

--from-checkpoint is for a job that cannot be moved live (CRIU cannot dump
it now): its agent kills it, and NODE restores its newest checkpoint (ssi run
--checkpoint-every, or ssi checkpoint) under the same gpid. The work it did
since that checkpoint is done again; 'ssi wait' waits on. A drain does this by
itself for a job with --checkpoint-every whose live moves all failed.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageErr("migrate: want GPID NODE (see ssi ps -A, ssi nodes)")
			}
			gpids, err := parseGPIDs("migrate", args[:1])
			if err != nil {
				return err
			}
			if output != "" && output != "json" {
				return usageErr("migrate: -o %q: want json", output)
			}
			if fromCheckpoint && postcopy {
				return usageErr("migrate: --from-checkpoint restores a checkpoint; --postcopy is for live moves: give one of them")
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			tty := isTerminal(os.Stderr)
			started := false
			var lastAt time.Time // progress: the previous transfer event
			var lastBytes int64
			var rate float64
			// Talk to the owner's agent directly when it can be reached: the
			// progress stream then crosses no forwarding agent (a forwarded
			// stream has been seen cut; see docs/ROBUSTNESS.md).
			mc := ownerClient(ctx, cl, gpids[0])
			st, err := mc.Migrate(ctx, gpids[0], api.MigrateRequest{Node: args[1], PostCopy: postcopy, FromCheckpoint: fromCheckpoint}, func(ev api.MigrateEvent) {
				if ev.Phase == "prepare" {
					started = true
					if detach {
						cancel() // the agent carries on without us
					}
				}
				if tty && ev.Phase != "" {
					line := fmt.Sprintf("migrating gpid %d to %s: %s", gpids[0], args[1], ev.Phase)
					if ev.Total > 0 {
						// The rate over the last interval between two events.
						now := time.Now()
						if !lastAt.IsZero() && ev.Bytes >= lastBytes {
							rate = float64(ev.Bytes-lastBytes) / max(now.Sub(lastAt).Seconds(), 1e-3)
						}
						lastAt, lastBytes = now, ev.Bytes
						line += fmt.Sprintf(" %s / %s", display.Bytes(ev.Bytes), display.Bytes(ev.Total))
						if rate > 0 {
							line += fmt.Sprintf(", %s/s", display.Bytes(int64(rate)))
						}
					}
					fmt.Fprintf(e.stderr, "\r%s\033[K", line)
				}
			})
			if tty {
				fmt.Fprint(e.stderr, "\r\033[K")
			}
			if detach && started && ctx.Err() != nil {
				fmt.Fprintf(e.stdout, "migration of gpid %d to %s started\n", gpids[0], args[1])
				return nil
			}
			if err != nil && errors.Is(err, api.ErrStreamLost) {
				// The migration goes on in the agent regardless: ask the table.
				return migrationOutcome(cmd.Context(), e, cl, gpids[0], args[1], output == "json", err)
			}
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				return writeJSONOut(e.stdout, st)
			}
			if st.Checkpoint != "" {
				fmt.Fprintf(e.stdout, "moved gpid %d %s -> %s from checkpoint %s: ran nowhere for %s, images %s fetched in %s, restore %s, total %s\nnote: %s\n",
					st.GPID, st.From, st.To, st.Checkpoint, msec(st.FrozenMS), display.Bytes(st.ImageBytes), msec(st.TransferMS), msec(st.RestoreMS), msec(st.TotalMS), st.Note)
				return nil
			}
			fmt.Fprintf(e.stdout, "migrated gpid %d %s -> %s: frozen %s, images %s, dump %s, transfer %s (%s/s), restore %s, total %s\n",
				st.GPID, st.From, st.To, msec(st.FrozenMS), display.Bytes(st.ImageBytes), msec(st.DumpMS), msec(st.TransferMS),
				display.Bytes(int64(float64(st.ImageBytes)/max(st.TransferMS/1000, 1e-3))), msec(st.RestoreMS), msec(st.TotalMS))
			if st.PostCopy {
				fmt.Fprintf(e.stdout, "post-copy: %s of memory paged over in %s after the job resumed\n", display.Bytes(st.LazyBytes), msec(st.PagesMS))
			}
			if st.Note != "" {
				fmt.Fprintf(e.stdout, "note: %s\n", st.Note)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	c.Flags().BoolVarP(&detach, "detach", "d", false, "return once the migration has started")
	c.Flags().BoolVar(&fromCheckpoint, "from-checkpoint", false, "do not move it live: kill it and restore its newest checkpoint on NODE (the work since is done again)")
	c.Flags().BoolVar(&postcopy, "postcopy", false, "move the memory after the job resumes on NODE (short freeze; the job needs its source node until the copy ends)")
	return c
}

func msec(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + "s"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// migrationOutcome waits for a migration whose progress stream was lost to
// finish, and reports how it ended according to the process table.
func migrationOutcome(ctx context.Context, e *env, cl *api.Client, gpid uint64, node string, asJSON bool, lost error) error {
	start := time.Now().Add(-5 * time.Minute) // generous: clocks of nodes differ
	deadline := time.Now().Add(6 * time.Minute)
	var notReadySince time.Time
	for time.Now().Before(deadline) {
		p, err := cl.Proc(ctx, gpid)
		if err == nil && p.State == "migrating" && !p.NodeReady {
			// The source's agent is gone: nothing moves until it restarts, and
			// then it rolls the migration back.
			if notReadySince.IsZero() {
				notReadySince = time.Now()
			} else if time.Since(notReadySince) > 2*time.Second {
				return fmt.Errorf("migration of gpid %d interrupted: the agent of %s went away (%v); the job stays stopped there until that agent restarts and rolls the migration back", gpid, p.Node, lost)
			}
		}
		if err == nil && p.State != "migrating" {
			if p.Node == node {
				if asJSON {
					return writeJSONOut(e.stdout, api.MigrateStats{GPID: gpid, To: node, StreamLost: true})
				}
				fmt.Fprintf(e.stdout, "migrated gpid %d -> %s (progress stream lost: %v; no figures)\n", gpid, node, lost)
				return nil
			}
			if p.MigrationError != "" && p.MigrationFailed.After(start) {
				return fmt.Errorf("%s (progress stream lost; reason read from the process table)", p.MigrationError)
			}
			return fmt.Errorf("migration of gpid %d to %s did not happen (progress stream lost: %v); it runs on %s", gpid, node, lost, p.Node)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("migration of gpid %d: progress stream lost (%v) and still migrating after 6 minutes; see ssi ps -A", gpid, lost)
}

// ownerClient returns a client for the agent that owns gpid, or cl when the
// owner cannot be found or reached.
func ownerClient(ctx context.Context, cl *api.Client, gpid uint64) *api.Client {
	p, err := cl.Proc(ctx, gpid)
	if err != nil {
		return cl
	}
	nodes, err := cl.Nodes(ctx)
	if err != nil {
		return cl
	}
	for _, n := range nodes {
		if n.Name == p.Node && n.Ready {
			oc, err := cl.For(n.Addr)
			if err != nil {
				return cl
			}
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if _, err := oc.Nodes(pctx); err != nil {
				return cl // not reachable from here: go through the entry agent
			}
			return oc
		}
	}
	return cl
}

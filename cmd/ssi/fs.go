package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/clusterfs"
)

func fsCmd(e *env) *cobra.Command {
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "fs MOUNTPOINT",
		Short: "Mount the cluster as a read-only file tree (FUSE)",
		Long: `Mount a read-only view of the cluster at MOUNTPOINT (an existing directory)
and serve it until interrupted (SIGINT, SIGTERM), then unmount it:

  proc/<gpid>/status    the job's record, "Key:<TAB>value" lines
  proc/<gpid>/node      the node that runs it
  proc/<gpid>/cmdline   its argv, NUL-separated (as /proc/PID/cmdline)
  proc/<gpid>/stdout    its output so far (tail -f follows it)
  proc/<gpid>/stderr
  nodes/<name>/status   the node: address, Ready, CPUs, memory, load, jobs
  nodes/<name>/jobs     its live jobs: gpid, user, state, command

You see the jobs 'ssi ps -A --exited' shows you, and only you (the mount is
not shared with other local users). Tables are read at most once per --ttl.
Needs /dev/fuse; as non-root, fusermount3 (Debian: apt-get install fuse3).
If ssi fs is killed hard, unmount with: fusermount3 -u MOUNTPOINT (or umount).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("fs: want MOUNTPOINT (an existing directory)")
			}
			dir := args[0]
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return usageErr("fs: mount point %q: not an existing directory", dir)
			}
			if ttl <= 0 {
				return usageErr("fs: --ttl %s: want a positive duration", ttl)
			}
			if _, err := os.Stat("/dev/fuse"); err != nil {
				return fmt.Errorf("fs: /dev/fuse: %w (load the fuse module: modprobe fuse)", err)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if _, err := cl.Nodes(ctx); err != nil {
				return explain(err, src)
			}
			log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			view := clusterfs.New(clusterfs.Config{Source: cl, TTL: ttl, Log: log})
			srv, err := view.Mount(dir, os.Geteuid() == 0)
			if err != nil {
				return fmt.Errorf("%w (as non-root this needs fusermount3: apt-get install fuse3)", err)
			}
			fmt.Fprintf(e.stderr, "ssi: cluster mounted at %s (read-only); Ctrl-C unmounts\n", dir)
			served := make(chan struct{})
			go func() { srv.Wait(); close(served) }()
			select {
			case <-served: // unmounted from outside (fusermount -u)
				return nil
			case <-ctx.Done():
			}
			if err := unmount(srv.Unmount, served); err != nil {
				return fmt.Errorf("fs: unmount %s: %w; unmount by hand once it is not in use: fusermount3 -u %s", dir, err, dir)
			}
			return nil
		},
	}
	c.Flags().DurationVar(&ttl, "ttl", time.Second, "how long the process and node tables and a job's output are reused")
	return c
}

// unmount retries for a few seconds while the mount is busy (a shell cd'ed
// into it, a tail -f), then waits for the server to stop.
func unmount(do func() error, served <-chan struct{}) error {
	var err error
	for range 20 {
		if err = do(); err == nil {
			<-served
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return err
}

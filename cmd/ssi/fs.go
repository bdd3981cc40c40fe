package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/clusterfs"
	"github.com/ssi-cluster/ssi/msg"
)

func fsCmd(e *env) *cobra.Command {
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "fs MOUNTPOINT",
		Short: "Mount the cluster as a file tree (FUSE)",
		Long: `Mount a view of the cluster at MOUNTPOINT (an existing directory) and serve
it until interrupted (SIGINT, SIGTERM), then unmount it:

  proc/<gpid>/status    the job's record, "Key:<TAB>value" lines
  proc/<gpid>/node      the node that runs it
  proc/<gpid>/cmdline   its argv, NUL-separated (as /proc/PID/cmdline)
  proc/<gpid>/stdout    its output so far (tail -f follows it)
  proc/<gpid>/stderr
  nodes/<name>/status   the node: address, Ready, CPUs, memory, load, jobs
  nodes/<name>/jobs     its live jobs: gpid, user, state, command
  topics/<subject>      your message subject (ssi pub/sub): a write publishes
                        each line (echo x > topics/orders); a reader gets the
                        messages published from its open on, a line each
                        (tail -f topics/orders); ls lists your topics

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
			cfg := clusterfs.Config{Source: cl, TTL: ttl, Log: log}
			if nc, err := e.natsDial(ctx); err != nil {
				fmt.Fprintf(e.stderr, "ssi: no topics/ in the tree: the message broker: %v\n", err)
			} else {
				defer nc.Close()
				cfg.Messages = fsMessages{nc}
			}
			view := clusterfs.New(cfg)
			srv, err := view.Mount(dir, os.Geteuid() == 0)
			if err != nil {
				return fmt.Errorf("%w (as non-root this needs fusermount3: apt-get install fuse3)", err)
			}
			fmt.Fprintf(e.stderr, "ssi: cluster mounted at %s (read-only but for topics/); Ctrl-C unmounts\n", dir)
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

// fsMessages is the broker behind ssi fs's topics/: the user's connection.
type fsMessages struct{ nc *msg.Client }

func (m fsMessages) Topics(ctx context.Context) ([]string, error) {
	rep, err := m.nc.CallRetry(ctx, msg.OpTopicList, struct{}{})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(rep.Topics))
	for _, t := range rep.Topics {
		names = append(names, t.Name)
	}
	return names, nil
}

func (m fsMessages) Publish(name string, data []byte) error {
	subj, err := msg.Subject(m.nc.User, name, false)
	if err != nil {
		return err
	}
	if err := m.nc.Publish(subj, data); err != nil {
		return err
	}
	return m.nc.Flush()
}

func (m fsMessages) Subscribe(name string, deliver func([]byte)) (func(), error) {
	subj, err := msg.Subject(m.nc.User, name, false)
	if err != nil {
		return nil, err
	}
	sub, err := m.nc.Subscribe(subj, func(mm *nats.Msg) { deliver(mm.Data) })
	if err != nil {
		return nil, err
	}
	if err := m.nc.Flush(); err != nil { // the subscription is in place before the open returns
		_ = sub.Unsubscribe()
		return nil, err
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

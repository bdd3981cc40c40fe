package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/display"
	"github.com/ssi-cluster/ssi/joblog"
	"github.com/ssi-cluster/ssi/service"
)

func servicesCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "services",
		Short: "List services (yours; an admin's: all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			svcs, err := cl.Services(cmd.Context())
			if err != nil {
				return explain(err, src)
			}
			bw := bufio.NewWriter(e.stdout)
			defer bw.Flush()
			tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tREPLICAS\tNODES\tRESTARTS\tAGE\tSTATE")
			for _, s := range svcs {
				st := s.Status
				state := st.State
				if state == "" {
					state = "pending"
				}
				if s.Service.Removing {
					state = "removing"
				}
				nodes := strings.Join(st.Nodes, ",")
				if nodes == "" {
					nodes = "-"
				}
				fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%d\t%s\t%s\n", s.Service.Name, st.Running, s.Service.Spec.Replicas, nodes, st.Restarts, age(s.Service.Created), state)
			}
			return tw.Flush()
		},
	}
}

func serviceCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "service", Short: "Inspect, scale and remove a service (see ssi apply)"}
	var follow bool
	var noWait bool
	logs := &cobra.Command{
		Use:   "logs [-f] NAME",
		Short: "Print the output of every replica, each line prefixed by gpid/node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			info, err := cl.Service(cmd.Context(), args[0])
			if err != nil {
				return explain(err, src)
			}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, r := range info.Replicas {
				if follow && r.State.Ended() {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					prefix := fmt.Sprintf("%d/%s: ", r.GPID, r.Node)
					if err := prefixedLog(cmd.Context(), cl, r.GPID, follow, prefix, e.stdout, &mu); err != nil && !errors.Is(err, context.Canceled) {
						mu.Lock()
						fmt.Fprintf(e.stderr, "ssi: logs of gpid %d: %v\n", r.GPID, err)
						mu.Unlock()
					}
				}()
				if !follow {
					wg.Wait()
				}
			}
			wg.Wait()
			return nil
		},
	}
	logs.Flags().BoolVarP(&follow, "follow", "f", false, "follow the running replicas' output (replicas started later are not followed)")
	status := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a service: replicas with gpids and nodes, their last log lines, recent events",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			info, err := cl.Service(cmd.Context(), args[0])
			if err != nil {
				return explain(err, src)
			}
			return printServiceStatus(cmd.Context(), e, cl, info)
		},
	}
	scale := &cobra.Command{
		Use:   "scale NAME N",
		Short: fmt.Sprintf("Set a service's replicas (0 to %d)", service.MaxReplicas),
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 0 || n > service.MaxReplicas {
				return usageErr("service scale: %q: want a number of replicas from 0 to %d", args[1], service.MaxReplicas)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			if _, err := cl.Scale(cmd.Context(), args[0], n); err != nil {
				return explain(err, src)
			}
			fmt.Fprintf(e.stdout, "%s: scaled to %d\n", args[0], n)
			return nil
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a service: stop its replicas, then forget it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			if err := cl.RemoveService(cmd.Context(), args[0]); err != nil {
				return explain(err, src)
			}
			if noWait {
				fmt.Fprintf(e.stdout, "%s: removing\n", args[0])
				return nil
			}
			for {
				_, err := cl.Service(cmd.Context(), args[0])
				if api.IsCode(err, api.CodeNotFound) {
					fmt.Fprintf(e.stdout, "%s: removed\n", args[0])
					return nil
				}
				if err != nil {
					return explain(err, src)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	rm.Flags().BoolVar(&noWait, "no-wait", false, "return at once instead of waiting for the replicas to stop")
	c.AddCommand(status, scale, rm, logs)
	return c
}

func printServiceStatus(ctx context.Context, e *env, cl *api.Client, info api.ServiceInfo) error {
	s, st := info.Service, info.Status
	w := e.stdout
	fmt.Fprintf(w, "● %s - %s\n", s.Name, s.Spec.Description)
	fmt.Fprintf(w, "     Source: %s (generation %d, owner %s)\n", s.Source, s.Generation, s.Owner)
	fmt.Fprintf(w, "    Command: %s\n", display.CommandLine(s.Spec.Argv))
	fmt.Fprintf(w, "   Replicas: %d/%d running, Spread=%s, Restart=%s, restarts %d\n", st.Running, s.Spec.Replicas, s.Spec.Spread, s.Spec.Restart, st.Restarts)
	fmt.Fprintf(w, "      State: %s %s\n", st.State, st.Message)
	for _, r := range info.Replicas {
		if r.State.Ended() {
			continue
		}
		fmt.Fprintf(w, "\n  gpid %d on %s: %s since %s (%s ago)\n", r.GPID, r.Node, r.State, r.Started.Local().Format(time.DateTime), age(r.Started))
		var mu sync.Mutex
		var buf strings.Builder
		_ = prefixedLog(ctx, cl, r.GPID, false, "    ", &buf, &mu)
		lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
		if len(lines) > 5 {
			lines = lines[len(lines)-5:]
		}
		for _, l := range lines {
			if l != "" {
				fmt.Fprintln(w, l)
			}
		}
	}
	if len(info.Events) > 0 {
		fmt.Fprintln(w, "\nEvents:")
		for _, ev := range info.Events {
			fmt.Fprintf(w, "  %s %s\n", ev.Time.Local().Format(time.TimeOnly), strings.TrimPrefix(ev.Reason, "service "+s.Name+": "))
		}
	}
	return nil
}

// prefixedLog copies a job's output, each line prefixed.
func prefixedLog(ctx context.Context, cl *api.Client, gpid uint64, follow bool, prefix string, out io.Writer, mu *sync.Mutex) error {
	body, err := cl.Logs(ctx, gpid, follow, 0)
	if err != nil {
		return err
	}
	defer body.Close()
	jr := joblog.NewReader(body)
	var partial []byte
	for {
		rec, err := jr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = nil
			}
			if len(partial) > 0 {
				mu.Lock()
				fmt.Fprintf(out, "%s%s\n", prefix, partial)
				mu.Unlock()
			}
			return err
		}
		if rec.Kind != joblog.Stdout && rec.Kind != joblog.Stderr {
			if rec.Kind == joblog.Exit {
				return nil
			}
			continue
		}
		partial = append(partial, rec.Data...)
		for {
			i := strings.IndexByte(string(partial), '\n')
			if i < 0 {
				break
			}
			mu.Lock()
			fmt.Fprintf(out, "%s%s\n", prefix, partial[:i])
			mu.Unlock()
			partial = partial[i+1:]
		}
	}
}

// age is a short duration since t: 45s, 12m, 3h, 2d.
func age(t time.Time) string {
	d := time.Since(t)
	switch {
	case t.IsZero():
		return "-"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

func parseGPIDs(cmd string, args []string) ([]uint64, error) {
	if len(args) == 0 {
		return nil, usageErr("%s: no gpid given (see ssi ps -A)", cmd)
	}
	out := make([]uint64, len(args))
	for i, a := range args {
		g, err := strconv.ParseUint(a, 10, 64)
		if err != nil || g == 0 {
			return nil, usageErr("%s: invalid gpid %q: want a positive integer (see ssi ps -A)", cmd, a)
		}
		out[i] = g
	}
	return out, nil
}

func killCmd(e *env) *cobra.Command {
	var sig string
	c := &cobra.Command{
		Use:   "kill [-s SIGNAL] GPID...",
		Short: "Send a signal to jobs (default TERM)",
		RunE: func(cmd *cobra.Command, args []string) error {
			gpids, err := parseGPIDs("kill", args)
			if err != nil {
				return err
			}
			if _, err := api.ParseSignal(sig); err != nil {
				return usageErr("kill: -s: %v", err)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			failed := 0
			for _, g := range gpids {
				if err := cl.Signal(cmd.Context(), g, sig); err != nil {
					if errors.Is(err, api.ErrUnreachable) {
						return explain(err, src)
					}
					fmt.Fprintf(e.stderr, "ssi: kill %d: %v\n", g, err)
					failed++
				}
			}
			if failed > 0 {
				return &exitError{code: exitFailure}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&sig, "signal", "s", "TERM", "signal name or number")
	return c
}

func logsCmd(e *env) *cobra.Command {
	var followFlag bool
	c := &cobra.Command{
		Use:   "logs [-f] GPID",
		Short: "Print a job's output (stdout and stderr)",
		Long: `Print what a job wrote, running or ended: stdout to stdout, stderr to
stderr, in the order it was written. With -f, keep printing until the job ends.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErr("logs: one gpid at a time")
			}
			gpids, err := parseGPIDs("logs", args)
			if err != nil {
				return err
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			if followFlag {
				_, err := follow(cmd.Context(), e, cl, gpids[0])
				return explain(err, src)
			}
			body, err := cl.Logs(cmd.Context(), gpids[0], false, 0)
			if err != nil {
				return explain(err, src)
			}
			defer body.Close()
			if _, _, err := copyRecords(e, body, 0); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				return err
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&followFlag, "follow", "f", false, "follow the output until the job ends")
	return c
}

func waitCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "wait GPID...",
		Short: "Wait for jobs to end; print and return their exit status",
		Long: `Block until every given job has ended. Prints one line per job and exits
with the status of the last one (128+N when killed by signal N), as the shell's
wait does.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			gpids, err := parseGPIDs("wait", args)
			if err != nil {
				return err
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			var last error
			for _, g := range gpids {
				st, err := cl.Wait(cmd.Context(), g)
				if err != nil {
					return explain(err, src)
				}
				fmt.Fprintf(e.stdout, "%d %s\n", g, describeStatus(st))
				last = exitFor(g, st)
			}
			var ee *exitError
			if errors.As(last, &ee) {
				ee.err = nil // already printed
			}
			return last
		},
	}
}

func describeStatus(st api.ExitStatus) string {
	switch {
	case st.State == pidtable.Checkpointed:
		return st.Error
	case st.State == "lost" || st.Code < 0:
		return "lost: " + st.Error
	case st.Code > 128 && st.Code <= 128+64:
		return fmt.Sprintf("exited %d (%s)", st.Code, unix.SignalName(unix.Signal(st.Code-128)))
	}
	return fmt.Sprintf("exited %d", st.Code)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/joblog"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/placement"
)

func runCmd(e *env) *cobra.Command {
	var (
		req         api.RunRequest
		detach      bool
		noStdin     bool
		tty         bool
		memory      string
		constraints []string
	)
	c := &cobra.Command{
		Use:   "run [flags] -- CMD [ARGS...]",
		Short: "Run a command on a node of the cluster",
		Long: `Run CMD on a node: the one named by --node, else one chosen by the placement
policy (random by default) among Ready nodes with room for --cpus/--memory.

Attached (the default) it behaves like a local command, or like ssh: your
stdin is forwarded to the job (then end of file), the job's stdout and stderr
arrive on yours, SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to it, and
ssi run exits with its exit code (128+N if it was killed by signal N, 127 if
CMD does not exist on the node). The stdin stream survives a restart of the
job's agent and moves of the job (ssi migrate): every byte reaches the job
once, in order. With --no-stdin the job reads /dev/null (as ssh -n); run in
the background of a shell, use it, or the read of your terminal stops ssi.
With -d it prints the job's gpid and returns; the job's stdin is /dev/null.

With -t (your stdin must be a terminal) the job gets a terminal of its own, as
with ssh -t or docker run -it: interactive programs work, keys go to the job
as typed (^C is the job's SIGINT, not ssi's), and its size follows your
window. Its stdout and stderr are the terminal's one stream. A job with a
terminal cannot be moved (ssi migrate, the balancer) or checkpointed yet.`,
		Example: `  ssi run -- hostname
  seq 1 1000 | ssi run --node node2 -- awk '{s+=$1} END {print s}'
  ssi run --node node2 --memory 256M -- python3 train.py
  ssi run -d --cpus 1 -- sleep 600`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr("run: no command given (usage: ssi run [flags] -- CMD [ARGS...])")
			}
			req.Argv = args
			if memory != "" {
				m, err := parseSize(memory)
				if err != nil {
					return usageErr("run: --memory: %v", err)
				}
				req.Memory = m
			}
			if req.CPUs < 0 {
				return usageErr("run: --cpus %g: must not be negative", req.CPUs)
			}
			if _, err := placement.ParsePolicy(req.Placement); err != nil {
				return usageErr("run: --placement: %v", err)
			}
			for i, kv := range req.Env {
				k, _, ok := strings.Cut(kv, "=")
				if k == "" {
					return usageErr("run: --env %q: want KEY=VALUE or KEY", kv)
				}
				if !ok { // --env KEY passes the caller's value, as docker does
					req.Env[i] = k + "=" + e.getenv(k)
				}
			}
			var err error
			if req.Constraints, err = parseLabels("run: --constraint", constraints); err != nil {
				return err
			}
			cwdGone := false
			if req.Workdir != "" {
				req.WorkdirExplicit = true
			} else if wd, err := os.Getwd(); err == nil {
				req.Workdir = wd
			} else {
				cwdGone = true // deleted under the shell, say
			}
			req.Stdin = !detach && !noStdin && e.stdin != nil
			var term *terminal
			if tty {
				if detach || noStdin {
					return usageErr("run: -t: a terminal needs an attached run with stdin (not -d, not --no-stdin)")
				}
				if term, err = openTerminal(e.stdin); err != nil {
					return usageErr("run: -t: %v (ssh -t would say the same)", err)
				}
				ws := term.size()
				req.TTY = &ws
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := cl.Run(ctx, req)
			if err != nil {
				return explain(err, src)
			}
			// Like Slurm's "couldn't chdir ... going to /tmp instead": a job
			// never runs somewhere other than asked without a word.
			switch {
			case cwdGone && resp.Workdir != "":
				fmt.Fprintf(e.stderr, "ssi: note: your working directory no longer exists; gpid %d runs in %s on node %s\n", resp.GPID, resp.Workdir, resp.Node)
			case !req.WorkdirExplicit && resp.Workdir != "" && resp.Workdir != req.Workdir:
				fmt.Fprintf(e.stderr, "ssi: note: %s does not exist on node %s; gpid %d runs in %s there (--workdir to choose)\n", req.Workdir, resp.Node, resp.GPID, resp.Workdir)
			}
			if detach {
				fmt.Fprintln(e.stdout, resp.GPID)
				return nil
			}
			if term != nil {
				if err := term.raw(); err != nil {
					return err
				}
				defer term.restore()
				tctx, stop := context.WithCancel(ctx)
				defer stop()
				term.followSize(tctx, e, cl, resp.GPID)
			}
			return attach(ctx, e, cl, resp.GPID, req.Stdin)
		},
	}
	f := c.Flags()
	f.SetInterspersed(false) // flags after CMD belong to CMD
	f.StringVar(&req.Node, "node", "", "run on this node")
	f.BoolVarP(&detach, "detach", "d", false, "print the gpid and return at once (the job's stdin is /dev/null)")
	f.BoolVarP(&noStdin, "no-stdin", "n", false, "give the job /dev/null for stdin instead of yours (as ssh -n)")
	f.BoolVarP(&tty, "tty", "t", false, "give the job a terminal, your stdin's size (as ssh -t); such a job cannot be moved or checkpointed")
	f.StringArrayVarP(&req.Env, "env", "e", nil, "set an environment variable (KEY=VALUE, or KEY to pass yours); repeatable")
	f.StringVarP(&req.Workdir, "workdir", "w", "", "working directory on the node (default: your cwd if it exists there, else your home)")
	f.StringVarP(&req.User, "user", "u", "", "run as this user (root only; default: you)")
	f.Float64Var(&req.CPUs, "cpus", 0, "CPU limit and request, in cores (e.g. 0.5)")
	f.StringVar(&memory, "memory", "", "memory limit and request (e.g. 512M, 2G)")
	f.StringVar(&req.Placement, "placement", "", "placement policy: random, least-loaded or two-choices (default: the agent's)")
	f.StringArrayVar(&constraints, "constraint", nil, "only nodes with this label (LABEL=VALUE); repeatable")
	f.BoolVar(&req.Pin, "pin", false, "never let the balancer move the job (ssi migrate still can)")
	f.BoolVar(&req.Reconnects, "reconnects", false, "the job re-makes its TCP connections when they break (a NATS client, a database client): a move or a checkpoint closes them instead of being refused")
	f.DurationVar(&req.CheckpointEvery, "checkpoint-every", 0, "checkpoint the job this often (e.g. 30s), a copy on a second node; if its node dies it is restored elsewhere from the newest")
	return c
}

// forwardedSignals are the signals `ssi run` passes on to an attached job.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// attach streams a job's output until it ends, forwarding signals (and with
// stdin, e.stdin to the job), and returns an exitError with the job's status.
func attach(ctx context.Context, e *env, cl *api.Client, gpid uint64, stdin bool) error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	// The signal context of main must not end the stream: the job decides.
	ctx = context.WithoutCancel(ctx)
	go func() {
		for s := range sigs {
			name := unix.SignalName(s.(syscall.Signal))
			if err := cl.Signal(ctx, gpid, name); err != nil && !api.IsCode(err, api.CodeConflict) {
				fmt.Fprintf(e.stderr, "ssi: forward %s to gpid %d: %v\n", name, gpid, err)
			}
		}
	}()
	if stdin {
		feed := &stdinFeed{
			send: func(ctx context.Context, offset int64, data []byte, eof bool) (api.StdinStatus, error) {
				return cl.Stdin(ctx, gpid, offset, data, eof)
			},
			retry: 250 * time.Millisecond,
			warn:  func(err error) { fmt.Fprintf(e.stderr, "ssi: stdin of gpid %d: %v\n", gpid, err) },
		}
		fctx, stop := context.WithCancel(ctx)
		defer stop() // the job has ended: stop feeding it
		go feed.run(fctx, e.stdin)
	}
	st, err := follow(ctx, e, cl, gpid)
	if err != nil {
		return err
	}
	return exitFor(gpid, st)
}

// exitFor turns a job's end into the CLI's exit.
func exitFor(gpid uint64, st api.ExitStatus) error {
	if st.State == pidtable.Checkpointed {
		return &exitError{code: exitCheckpointed, err: fmt.Errorf("gpid %d was %s", gpid, st.Error)}
	}
	if st.State == "lost" || st.Code < 0 {
		return &exitError{code: exitLost, err: fmt.Errorf("gpid %d was lost: %s", gpid, st.Error)}
	}
	if st.Code == 0 {
		return nil
	}
	return &exitError{code: st.Code}
}

// follow copies the job's output to e.stdout/e.stderr from the start until the
// Exit record, reconnecting at the reached offset if the stream breaks (an agent
// restart, say) for up to a minute.
func follow(ctx context.Context, e *env, cl *api.Client, gpid uint64) (api.ExitStatus, error) {
	var offset int64
	var lastErr error
	deadline := time.Time{}
	for {
		body, err := cl.Logs(ctx, gpid, true, offset)
		if err == nil {
			var st *api.ExitStatus
			st, offset, err = copyRecords(e, body, offset)
			body.Close()
			if st != nil {
				return *st, nil
			}
			deadline = time.Time{} // progress was made; restart the grace period
		}
		var apiErr *api.Error
		if errors.As(err, &apiErr) && apiErr.Code != api.CodeNotReady {
			return api.ExitStatus{}, err
		}
		lastErr = err
		if deadline.IsZero() {
			deadline = time.Now().Add(time.Minute)
		}
		if time.Now().After(deadline) {
			return api.ExitStatus{}, fmt.Errorf("lost the output stream of gpid %d: %w", gpid, lastErr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// copyRecords writes output records to stdout/stderr and returns the exit status
// if the stream carried one, and the offset reached.
func copyRecords(e *env, r io.Reader, offset int64) (*api.ExitStatus, int64, error) {
	jr := joblog.NewReader(r)
	for {
		rec, err := jr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // a follow stream ends only after Exit
			}
			return nil, offset, err
		}
		switch rec.Kind {
		case joblog.Stdout:
			_, _ = e.stdout.Write(rec.Data)
		case joblog.Stderr:
			_, _ = e.stderr.Write(rec.Data)
		case joblog.Exit:
			var st api.ExitStatus
			if err := json.Unmarshal(rec.Data, &st); err != nil {
				return nil, offset, fmt.Errorf("bad exit record: %w", err)
			}
			return &st, offset, nil
		case joblog.Error:
			return nil, offset, fmt.Errorf("agent: %s", rec.Data)
		}
		if rec.Kind == joblog.Stdout || rec.Kind == joblog.Stderr {
			offset += joblog.HeaderSize + int64(len(rec.Data))
		}
	}
}

package benchkit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Benchmark is one benchmark program's measurements, as Main runs them.
type Benchmark interface {
	// Run measures. It tears down what it set up (its cluster) before it
	// returns, also on error and when ctx ends; what it measured until then
	// stays reported.
	Run(ctx context.Context) error
	// WriteMarkdown writes the report docs/BENCHMARKS*.md quote; runErr is
	// Run's error (the figures are partial then).
	WriteMarkdown(w io.Writer, runErr error)
	// Result returns the figures for the JSON result file.
	Result() Result
}

// Config is how Main runs a Benchmark.
type Config struct {
	// Program names the program in messages and the JSON result (bench,
	// benchmigrate, benchbalance).
	Program string
	// Timeout bounds Run (its teardown comes after it).
	Timeout time.Duration
	// JSON, if set, is the path of the JSON result file.
	JSON string
	// Flags are the program's parsed flags, recorded in the JSON result
	// (default flag.CommandLine).
	Flags *flag.FlagSet
	// Stdout receives the markdown report, Stderr the final error (default
	// os.Stdout and os.Stderr); progress is the benchmark's own logger's.
	Stdout, Stderr io.Writer
}

// Main runs b and returns the process's exit code: 0 when it completed and
// its report (and JSON result) were written, 1 otherwise. SIGINT, SIGTERM and
// SIGHUP cancel Run's context and stay caught until Main returns, so a second
// Ctrl-C does not cut the teardown short.
func Main(cfg Config, b Benchmark) int {
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.Flags == nil {
		cfg.Flags = flag.CommandLine
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	return run(ctx, cfg, b)
}

// run is Main without the signals.
func run(ctx context.Context, cfg Config, b Benchmark) int {
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	err := b.Run(rctx)
	switch {
	case err == nil:
	case errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		err = fmt.Errorf("%w (-timeout %s reached)", err, cfg.Timeout)
	case rctx.Err() != nil:
		err = fmt.Errorf("%w (interrupted by a signal)", err)
	}
	b.WriteMarkdown(cfg.Stdout, err)
	code := 0
	if err != nil {
		fmt.Fprintf(cfg.Stderr, "%s: %v\n", cfg.Program, err)
		code = 1
	}
	if cfg.JSON != "" {
		res := b.Result()
		res.finish(cfg.Program, cfg.Flags, time.Since(start), err)
		if werr := WriteJSON(cfg.JSON, res); werr != nil {
			fmt.Fprintf(cfg.Stderr, "%s: %v\n", cfg.Program, werr)
			code = 1
		}
	}
	return code
}

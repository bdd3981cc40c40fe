package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// variant is one thing timed by measureInterleaved; fn returns the duration,
// an output size (0 if not meaningful) and an error.
type variant struct {
	name string
	fn   func(context.Context) (time.Duration, int, error)
}

// row is one variant's figures in a section.
type row struct {
	name  string
	durs  []time.Duration
	size  int // output size of the last successful run
	errs  int
	first string // first error
	st    stats
	cut   string // why it has fewer runs than asked
}

// measureInterleaved runs warmup rounds, then up to runs rounds; each round
// calls every variant once in order (benchkit.Plan). It stops at the time
// limit, noting it on every row. A failed run is counted on its row; more
// failures than half the runs fail the measurement.
func measureInterleaved(ctx context.Context, vs []variant, warmup, runs int, limit time.Duration) ([]*row, error) {
	rows := make([]*row, len(vs))
	for i, v := range vs {
		rows[i] = &row{name: v.name}
	}
	err := benchkit.Plan{Warmup: warmup, Runs: runs, Limit: limit}.Do(ctx, len(vs), func(ctx context.Context, round benchkit.Round, i int) error {
		d, size, err := vs[i].fn(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r := rows[i]
		if round.Warm() {
			return nil
		}
		if err != nil {
			r.errs++
			if r.first == "" {
				r.first = err.Error()
			}
			return nil
		}
		r.durs = append(r.durs, d)
		r.size = size
		return nil
	})
	if errors.Is(err, benchkit.ErrTimeLimit) {
		for _, r := range rows {
			r.cut = fmt.Sprintf("time limit %s reached after %d runs", limit, len(r.durs))
		}
		err = nil
	}
	for _, r := range rows {
		r.st = benchkit.Summarize(r.durs)
	}
	if err != nil {
		return rows, err
	}
	for _, r := range rows {
		if r.errs > 0 && r.errs*2 > runs {
			return rows, fmt.Errorf("%s failed %d of %d runs: %s", r.name, r.errs, runs, r.first)
		}
	}
	return rows, nil
}

func findRow(rows []*row, name string) *row {
	for _, r := range rows {
		if r.name == name {
			return r
		}
	}
	return nil
}

// execVariant times a whole process; okCode is the exit code that counts as
// success (0, or 2 for ssi-shim without arguments). Stdout is captured through
// a pipe for every variant alike; its size is reported.
func (b *bench) execVariant(name string, okCode int, bin string, args ...string) variant {
	return variant{name: name, fn: func(ctx context.Context) (time.Duration, int, error) {
		out, d, err := benchkit.Exec(ctx, cmdTimeout, b.env, bin, args...)
		if ee := (*exec.ExitError)(nil); okCode != 0 && errors.As(err, &ee) && ee.ExitCode() == okCode {
			err = nil
		}
		return d, len(out), err
	}}
}

// cli is an ssi CLI variant.
func (b *bench) cli(name string, args ...string) variant {
	return b.execVariant(name, 0, b.ssi, args...)
}

// getVariant is a GET on node1's agent from this process (kept-alive
// connection, no CLI): what the agent itself costs. The body size is reported.
func (b *bench) getVariant(path string) variant {
	return variant{name: fmt.Sprintf("GET %s in-process (no CLI)", path), fn: func(ctx context.Context) (time.Duration, int, error) {
		t0 := time.Now()
		size, err := b.rawGet(ctx, path)
		return time.Since(t0), int(size), err
	}}
}

// spawnVariant starts `true` on node, detached, through package api.
func (b *bench) spawnVariant(node string) variant {
	return variant{name: fmt.Sprintf("in-process api: spawn `true` on %s, detached (no CLI)", node), fn: func(ctx context.Context) (time.Duration, int, error) {
		ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
		defer cancel()
		t0 := time.Now()
		_, err := b.api.Run(ctx, api.RunRequest{Argv: []string{"true"}, Node: node, Workdir: b.wd})
		return time.Since(t0), 0, err
	}}
}

// pausedSpawnVariant is spawnVariant after an untimed pause, so that the
// agents and the CPUs are idle when the request arrives, as they are between
// a user's commands.
func (b *bench) pausedSpawnVariant(node string, pause time.Duration) variant {
	v := b.spawnVariant(node)
	v.name = fmt.Sprintf("in-process api: spawn `true` on %s, detached, after an untimed %s pause (no CLI)", node, pause)
	fn := v.fn
	v.fn = func(ctx context.Context) (time.Duration, int, error) {
		if err := benchkit.Sleep(ctx, pause); err != nil {
			return 0, 0, err
		}
		return fn(ctx)
	}
	return v
}

// tableSize returns the number of records in the process table, ended ones
// included (-1 on error).
func (b *bench) tableSize(ctx context.Context) int {
	procs, err := b.api.PS(ctx, "", true)
	if err != nil {
		return -1
	}
	return len(procs)
}

// attachedVariant does what an attached `ssi run --node node -- true` does,
// through package api.
func (b *bench) attachedVariant(node string) variant {
	return variant{name: fmt.Sprintf("in-process api: run `true` on %s + follow to exit (no CLI)", node), fn: func(ctx context.Context) (time.Duration, int, error) {
		t0 := time.Now()
		err := b.apiRunAttached(ctx, node)
		return time.Since(t0), 0, err
	}}
}

// interleaved measures vs as one section.
func (b *bench) interleaved(ctx context.Context, title string, showSize bool, vs []variant) (*section, error) {
	b.log.Info("measuring", "section", title, "variants", len(vs), "runs", b.o.runs, "warmup", b.o.warmup)
	sec := &section{title: title, showSize: showSize}
	m0 := b.mark()
	rows, err := measureInterleaved(ctx, vs, b.o.warmup, b.o.runs, latencyLimit)
	sec.rows = rows
	sec.cpu = m0.until(b.mark())
	b.rep.sections = append(b.rep.sections, sec)
	return sec, err
}

package benchkit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrTimeLimit is returned (wrapped) by Plan.Do when the plan's Limit ends it
// before its last round.
var ErrTimeLimit = errors.New("benchkit: time limit reached")

// Plan is how a measurement repeats its variants (the things it compares):
// Warmup rounds whose figures are discarded, then Runs measured rounds. Every
// round runs each variant once, one after the other, so that background noise
// hits all variants alike.
type Plan struct {
	Warmup, Runs int
	// Rotate starts each round one variant later than the one before (round
	// i runs variants i, i+1, ... modulo their number; warm-up rounds count),
	// so that no variant always runs first or right after the same one. With
	// two variants the order alternates. Otherwise every round runs them in
	// the order given.
	Rotate bool
	// Limit bounds the whole plan (0: none). It is checked before each round;
	// a round under way runs to its end.
	Limit time.Duration
	// Before, if set, runs before each round (warm-up ones too); its error
	// ends the plan.
	Before func(ctx context.Context, r Round) error
}

// Round is one round of a Plan.
type Round struct {
	// Index counts all rounds from 0, warm-up ones first.
	Index int
	// N numbers the measured rounds from 1; warm-up rounds have N <= 0.
	N int
}

// Warm reports whether the round is a warm-up round (its figures discarded).
func (r Round) Warm() bool { return r.N <= 0 }

// Order returns the variants of round r, of n, in the order they run.
func (p Plan) Order(r Round, n int) []int {
	out := make([]int, n)
	for k := range out {
		out[k] = k
		if p.Rotate {
			out[k] = (r.Index + k) % n
		}
	}
	return out
}

// Do runs the plan over n variants: run(ctx, round, v) for every variant v of
// every round. It returns the first error of Before or run, ctx's error once
// ctx is done (checked before each round and after each run), or, when Limit
// ends the plan early, an error wrapping ErrTimeLimit that says how many
// measured rounds were done. A run that should not end the plan (a failure
// to count, say) records its error and returns nil.
func (p Plan) Do(ctx context.Context, n int, run func(ctx context.Context, r Round, v int) error) error {
	if p.Warmup < 0 || p.Runs < 0 {
		return fmt.Errorf("benchkit: plan of %d warm-up and %d measured rounds", p.Warmup, p.Runs)
	}
	start := time.Now()
	for i := range p.Warmup + p.Runs {
		r := Round{Index: i, N: i + 1 - p.Warmup}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.Limit > 0 && time.Since(start) > p.Limit {
			return fmt.Errorf("%w: %s, after %d measured rounds", ErrTimeLimit, p.Limit, max(r.N-1, 0))
		}
		if p.Before != nil {
			if err := p.Before(ctx, r); err != nil {
				return err
			}
		}
		for _, v := range p.Order(r, n) {
			if err := run(ctx, r, v); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

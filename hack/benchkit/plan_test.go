package benchkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// trace runs p over n variants and returns "round:variant" for every call.
func trace(t *testing.T, p Plan, n int) []string {
	t.Helper()
	var got []string
	err := p.Do(context.Background(), n, func(_ context.Context, r Round, v int) error {
		got = append(got, fmt.Sprintf("%d:%d", r.N, v))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestPlanOrder(t *testing.T) {
	tests := []struct {
		name string
		p    Plan
		n    int
		want []string
	}{
		{"fixed, warm-up rounds numbered <= 0", Plan{Warmup: 2, Runs: 2}, 2, []string{"-1:0", "-1:1", "0:0", "0:1", "1:0", "1:1", "2:0", "2:1"}},
		// Rotation counts warm-up rounds: round i starts with variant i mod n.
		{"rotate", Plan{Warmup: 1, Runs: 3, Rotate: true}, 3, []string{"0:0", "0:1", "0:2", "1:1", "1:2", "1:0", "2:2", "2:0", "2:1", "3:0", "3:1", "3:2"}},
		// Two variants alternate: off, on; on, off; ...
		{"rotate two", Plan{Runs: 3, Rotate: true}, 2, []string{"1:0", "1:1", "2:1", "2:0", "3:0", "3:1"}},
		{"no runs", Plan{}, 3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := trace(t, tt.p, tt.n); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRoundWarm(t *testing.T) {
	if !(Round{Index: 0, N: 0}).Warm() || (Round{Index: 1, N: 1}).Warm() {
		t.Error("Warm: N <= 0 is a warm-up round, N >= 1 a measured one")
	}
}

func TestPlanBefore(t *testing.T) {
	var got []string
	stop := errors.New("no memory")
	p := Plan{Warmup: 1, Runs: 3, Before: func(_ context.Context, r Round) error {
		got = append(got, fmt.Sprintf("before %d", r.N))
		if r.N == 2 {
			return stop
		}
		return nil
	}}
	err := p.Do(context.Background(), 1, func(_ context.Context, r Round, v int) error {
		got = append(got, fmt.Sprintf("run %d", r.N))
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Do = %v, want Before's error", err)
	}
	want := []string{"before 0", "run 0", "before 1", "run 1", "before 2"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestPlanRunError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	err := Plan{Runs: 3}.Do(context.Background(), 2, func(_ context.Context, r Round, v int) error {
		calls++
		if r.N == 2 && v == 0 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 3 {
		t.Errorf("Do = %v after %d calls, want boom after 3", err, calls)
	}
}

func TestPlanLimit(t *testing.T) {
	rounds := 0
	err := Plan{Runs: 100, Limit: 30 * time.Millisecond}.Do(context.Background(), 1, func(ctx context.Context, r Round, v int) error {
		rounds++
		return Sleep(ctx, 20*time.Millisecond)
	})
	if !errors.Is(err, ErrTimeLimit) {
		t.Fatalf("Do = %v, want ErrTimeLimit", err)
	}
	// Two rounds on an idle machine; one when a loaded one stretches the
	// 20 ms sleep past the limit (seen in a run at load 12).
	if rounds < 1 || rounds > 10 {
		t.Errorf("%d rounds in a 30 ms limit of 20 ms rounds", rounds)
	}
	if want := fmt.Sprintf("after %d measured rounds", rounds); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

func TestPlanCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := Plan{Warmup: 1, Runs: 5}.Do(ctx, 3, func(context.Context, Round, int) error {
		calls++
		if calls == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 2 {
		t.Errorf("Do = %v after %d calls, want context.Canceled right after the run that saw it", err, calls)
	}
}

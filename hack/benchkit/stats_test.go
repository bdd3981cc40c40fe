package benchkit

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		in   []time.Duration
		want Stats[time.Duration]
	}{
		{"empty", nil, Stats[time.Duration]{}},
		{"one", []time.Duration{5 * ms}, Stats[time.Duration]{N: 1, Median: 5 * ms, P90: 5 * ms, Min: 5 * ms, Max: 5 * ms}},
		{"odd", []time.Duration{3 * ms, 1 * ms, 2 * ms}, Stats[time.Duration]{N: 3, Median: 2 * ms, P90: 3 * ms, Min: ms, Max: 3 * ms}},
		// Even: the mean of the two middle values.
		{"even", []time.Duration{4 * ms, 1 * ms, 3 * ms, 2 * ms}, Stats[time.Duration]{N: 4, Median: 2500 * time.Microsecond, P90: 4 * ms, Min: ms, Max: 4 * ms}},
		// p90 by nearest rank: ceil(0.9*10) = 9th of 10.
		{"ten", []time.Duration{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, Stats[time.Duration]{N: 10, Median: 5, P90: 9, Min: 1, Max: 10}},
		// 20 values: rank 18.
		{"twenty", seq(20), Stats[time.Duration]{N: 20, Median: 10, P90: 18, Min: 1, Max: 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			if got := Summarize(tt.in); got != tt.want {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("Summarize sorted its input: %v", tt.in)
			}
		})
	}
}

// seq is 1..n in reverse order.
func seq(n int) []time.Duration {
	var out []time.Duration
	for i := n; i >= 1; i-- {
		out = append(out, time.Duration(i))
	}
	return out
}

func TestMedianFloat(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{2.5}, 2.5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{1, 2, 3, 10}, 2.5},
	}
	for _, tt := range tests {
		if got := Median(tt.in); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		name             string
		num, den         float64
		numN, denN       int
		target           float64
		wantOK           bool
		wantValue        float64
		wantMet          *bool
		wantString       string
		wantNum, wantDen float64
	}{
		{name: "met", num: 1.05, den: 1, numN: 5, denN: 5, target: 1.1, wantOK: true, wantValue: 1.05, wantMet: ptr(true), wantString: "1.05× (met)"},
		{name: "at the target is met", num: 1.1, den: 1, numN: 5, denN: 5, target: 1.1, wantOK: true, wantValue: 1.1, wantMet: ptr(true), wantString: "1.10× (met)"},
		{name: "not met", num: 2.8, den: 2, numN: 5, denN: 5, target: 1.3, wantOK: true, wantValue: 1.4, wantMet: ptr(false), wantString: "1.40× (**not met**)"},
		{name: "no target", num: 30, den: 2, numN: 1, denN: 1, wantOK: true, wantValue: 15, wantString: "15.00×"},
		{name: "no numerator sample", num: 0, den: 1, numN: 0, denN: 3, target: 1.1},
		{name: "no denominator sample", num: 1, den: 0, numN: 3, denN: 0, target: 1.1},
		{name: "zero denominator", num: 1, den: 0, numN: 3, denN: 3},
		{name: "NaN", num: math.NaN(), den: 1, numN: 3, denN: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := NewRatio("x", tt.num, tt.numN, tt.den, tt.denN, tt.target)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v (%+v)", ok, tt.wantOK, r)
			}
			if !ok {
				return
			}
			if math.Abs(r.Value-tt.wantValue) > 1e-9 {
				t.Errorf("Value = %v, want %v", r.Value, tt.wantValue)
			}
			if (r.Met == nil) != (tt.wantMet == nil) || (r.Met != nil && *r.Met != *tt.wantMet) {
				t.Errorf("Met = %v, want %v", deref(r.Met), deref(tt.wantMet))
			}
			if got := r.String(); got != tt.wantString {
				t.Errorf("String() = %q, want %q", got, tt.wantString)
			}
			if r.Num != tt.num || r.Den != tt.den {
				t.Errorf("Num, Den = %v, %v, want the medians %v, %v", r.Num, r.Den, tt.num, tt.den)
			}
		})
	}
}

func TestMedianRatio(t *testing.T) {
	ssi := Summarize([]float64{1.2, 1.0, 1.1}) // median 1.1
	raw := Summarize([]float64{1.0, 0.9, 1.1}) // median 1.0
	r, ok := MedianRatio("frozen / raw dump", ssi, raw, 1.1)
	if !ok || math.Abs(r.Value-1.1) > 1e-9 || r.Met == nil || !*r.Met {
		t.Errorf("MedianRatio = %+v, %v; want 1.1, met", r, ok)
	}
	if _, ok := MedianRatio("x", Stats[float64]{}, raw, 0); ok {
		t.Error("MedianRatio of an empty sample: ok")
	}
}

func ptr[T any](v T) *T { return &v }

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

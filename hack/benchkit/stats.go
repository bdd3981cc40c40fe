package benchkit

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Number is what Summarize takes: durations, counts, seconds.
type Number interface {
	~int | ~int64 | ~float64
}

// Stats summarises a sample. The zero value (N == 0) is an empty sample.
type Stats[T Number] struct {
	N                     int
	Median, P90, Min, Max T
}

// Summarize returns n, the median (the mean of the two middle values when n is
// even), the 90th percentile by nearest rank, the minimum and the maximum of
// xs, which it does not modify.
func Summarize[T Number](xs []T) Stats[T] {
	if len(xs) == 0 {
		return Stats[T]{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	rank := int(math.Ceil(0.9*float64(n))) - 1 // nearest rank
	return Stats[T]{N: n, Median: middle(s), P90: s[max(rank, 0)], Min: s[0], Max: s[n-1]}
}

// Median returns the median of xs (0 for none), which it does not modify.
func Median[T Number](xs []T) T {
	return Summarize(xs).Median
}

// middle is the median of sorted, non-empty s.
func middle[T Number](s []T) T {
	n := len(s)
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}

// Seconds converts durations to seconds, for Series and Ratio.
func Seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	return out
}

// Ratio is a paired ratio: the median of a figure over the median of its
// peer's (ssi against raw CRIU, `ssi run` against `sh -c true`, the balancer
// on against off), both measured in the same rounds of one run. Target, if
// not 0, is the most the ratio may be.
type Ratio struct {
	Name   string  `json:"name"`
	Num    float64 `json:"numerator"`
	Den    float64 `json:"denominator"`
	Value  float64 `json:"value"`
	Target float64 `json:"target,omitempty"`
	Met    *bool   `json:"met,omitempty"` // Value <= Target; absent without a target
}

// NewRatio returns num/den against target (0: none). ok is false when either
// side has no sample (n == 0) or den is not positive: there is no ratio then.
func NewRatio(name string, num float64, numN int, den float64, denN int, target float64) (r Ratio, ok bool) {
	if numN == 0 || denN == 0 || den <= 0 || math.IsNaN(num) || math.IsNaN(den) {
		return Ratio{Name: name}, false
	}
	r = Ratio{Name: name, Num: num, Den: den, Value: num / den, Target: target}
	if target != 0 {
		met := r.Value <= target
		r.Met = &met
	}
	return r, true
}

// MedianRatio is NewRatio over the medians of two samples.
func MedianRatio[T Number](name string, num, den Stats[T], target float64) (Ratio, bool) {
	return NewRatio(name, float64(num.Median), num.N, float64(den.Median), den.N, target)
}

// String formats the ratio as the reports do: "1.05× (met)", "1.40× (**not
// met**)", or "1.05×" without a target.
func (r Ratio) String() string {
	switch {
	case r.Met == nil:
		return fmt.Sprintf("%.2f×", r.Value)
	case *r.Met:
		return fmt.Sprintf("%.2f× (met)", r.Value)
	default:
		return fmt.Sprintf("%.2f× (**not met**)", r.Value)
	}
}

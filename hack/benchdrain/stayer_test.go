package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseSamples(t *testing.T) {
	in := "1000.0000 1024\n1000.1000 2048\nnot a sample\n1000.2 x\n1000.2500 4096\n1000.3000 51"
	got, err := parseSamples(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	// The unfinished last line and the lines that do not parse are left out.
	want := []sample{{at: at(1000), n: 1024}, {at: at(1000.1), n: 2048}, {at: at(1000.25), n: 4096}}
	if len(got) != len(want) {
		t.Fatalf("parseSamples = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].n != want[i].n || got[i].at.Sub(want[i].at).Abs() > time.Microsecond {
			t.Errorf("sample %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func at(secs float64) time.Time { return time.Unix(0, int64(secs*1e9)) }

func TestRateOver(t *testing.T) {
	// 1000 iterations per 100 ms from t=0 to t=1 s, then 500 per 100 ms.
	var s []sample
	n := int64(0)
	for i := 0; i <= 20; i++ {
		s = append(s, sample{at: at(float64(i) / 10), n: n})
		if i < 10 {
			n += 1000
		} else {
			n += 500
		}
	}
	tests := []struct {
		name     string
		from, to float64
		want     float64
		ok       bool
	}{
		{"first second", 0, 1, 10000, true},
		{"second second", 1, 2, 5000, true},
		{"both", 0, 2, 7500, true},
		// Samples inside the window only: 0.05..0.95 covers 0.1..0.9.
		{"inside", 0.05, 0.95, 10000, true},
		{"one sample", 0.95, 1.05, 0, false},
		{"under 200 ms", 0.3, 0.45, 0, false},
		{"before all", -2, -1, 0, false},
		{"after all", 3, 4, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := rateOver(s, at(tt.from), at(tt.to))
			if ok != tt.ok || math.Abs(got-tt.want) > 1e-6*tt.want {
				t.Errorf("rateOver(%v, %v) = %v, %v; want %v, %v", tt.from, tt.to, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestStayerRatios(t *testing.T) {
	ms := []measurement{
		{stayers: []stayerRate{{node: "node1", baseline: 100, during: 50}, {node: "node3", baseline: 100, during: 80}}},
		// A window too short for a figure is left out, never counted as 0.
		{stayers: []stayerRate{{node: "node1", baseline: 100}, {node: "node3", baseline: 0, during: 70}}},
		{stayers: []stayerRate{{node: "node1", baseline: 200, during: 200}}},
	}
	got := stayerRatios(ms)
	want := []float64{0.5, 0.8, 1}
	if len(got) != len(want) {
		t.Fatalf("stayerRatios = %v, want %v", got, want)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Errorf("stayerRatios = %v, want %v", got, want)
		}
	}
}

func TestWriteStayers(t *testing.T) {
	b := &bench{o: options{baseline: 5 * time.Second, parallel: []int{2}}}
	var w bytes.Buffer
	b.writeStayers(&w)
	if w.Len() != 0 {
		t.Errorf("no stayers: wrote %q", w.String())
	}
	b.rep.runs = []measurement{
		{round: 1, variant: byHand, stayers: []stayerRate{{node: "node1", baseline: 1000, during: 600}, {node: "node3", baseline: 1000}}},
		{round: 1, variant: variant{parallel: 2}, stayers: []stayerRate{{node: "node1", baseline: 1000, during: 400}, {node: "node3", baseline: 1000, during: 500}}},
	}
	b.writeStayers(&w)
	for _, want := range []string{
		"over 5s before each emptying",
		"| 1 | by hand (ssi migrate, one at a time) | node1 | 1000 | 600 | 0.60 |",
		"| 1 | by hand (ssi migrate, one at a time) | node3 | 1000 | - | - |",
		"| by hand (ssi migrate, one at a time) | 1 | 0.60 | 0.60 | 0.60 |",
		"| drain --parallel 2 | 2 | 0.45 | 0.40 | 0.50 |",
	} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, w.String())
		}
	}
}

func TestJobBytes(t *testing.T) {
	hand := []measurement{{bytes: 300}, {bytes: 100}, {bytes: 200}}
	own := []measurement{{bytes: 10}}
	if got := jobBytes(hand, own); got != 200 {
		t.Errorf("jobBytes with by-hand figures = %d, want their median 200", got)
	}
	if got := jobBytes(nil, own); got != 10 {
		t.Errorf("jobBytes without = %d, want the variant's own 10", got)
	}
	if got := jobBytes(nil, nil); got != 0 {
		t.Errorf("jobBytes of nothing = %d", got)
	}
}

func TestVariants(t *testing.T) {
	b := &bench{o: options{parallel: []int{1, 4}, handPostCopy: true}}
	var got []string
	for _, v := range b.variants() {
		got = append(got, v.String())
	}
	want := []string{"by hand (ssi migrate, one at a time)", "by hand, post-copy (ssi migrate --postcopy)", "drain --parallel 1", "drain --parallel 4"}
	if strings.Join(got, ";") != strings.Join(want, ";") {
		t.Errorf("variants = %q, want %q", got, want)
	}
}

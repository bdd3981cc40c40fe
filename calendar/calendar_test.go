package calendar

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseErrorsSayWhat(t *testing.T) {
	for expr, want := range map[string]string{
		"Mon..Fry 02:00": "expected a weekday",
		"*-*-* 24:00":    "hour 24 is out of range 0..23",
		"*-02~29":        "day 29 is out of range 1..28",
		"12:00 foo":      `expected ':' after the minute at " foo"`,
		"":               "empty",
		"*:*/5":          `at "/5"`,
	} {
		_, err := Parse(expr)
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an ErrSyntax saying %q", expr, err, want)
		}
	}
}

func TestNext(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // a Thursday
	for expr, want := range map[string]string{
		"Mon..Fri *-*-* 02:00":      "2026-01-01 02:00:00",
		"Sat,Sun 09:30":             "2026-01-03 09:30:00",
		"*:0/15":                    "2026-01-01 00:15:00",
		"*-*~1":                     "2026-01-31 00:00:00",
		"*-*-* 02:00 Europe/Berlin": "2026-01-01 01:00:00",
	} {
		s, err := Parse(expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Next(base).UTC().Format(time.DateTime); got != want {
			t.Errorf("%q.Next(%v) = %s, want %s", expr, base, got, want)
		}
	}
	s, _ := Parse("2025-01-01")
	if got := s.Next(base); !got.IsZero() {
		t.Errorf("an elapsed date: Next = %v, want zero", got)
	}
	s, _ = Parse("*:*:0/0.5")
	if got := s.Next(base); !got.Equal(base.Add(500 * time.Millisecond)) {
		t.Errorf("fractions: Next = %v", got)
	}
}

func TestParseSpan(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"5":        5 * time.Second,
		"5min":     5 * time.Minute,
		"1h 30min": 90 * time.Minute,
		"2min30s":  150 * time.Second,
		"500ms":    500 * time.Millisecond,
		"0.5s":     500 * time.Millisecond,
		"1d":       24 * time.Hour,
		"1w 1d":    8 * 24 * time.Hour,
		" 10 s ":   10 * time.Second,
		"3 hours":  3 * time.Hour,
	} {
		got, err := ParseSpan(in)
		if err != nil || got != want {
			t.Errorf("ParseSpan(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "abc", "5 parsecs", "-5s"} {
		if _, err := ParseSpan(in); !errors.Is(err, ErrSpan) {
			t.Errorf("ParseSpan(%q) = %v, want ErrSpan", in, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"daily", "Mon..Fri 02:00", "*-*~1/1", "*:*:0/0.5 UTC"} {
		f.Add(s)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := Parse(s)
		if err != nil {
			return
		}
		if n := spec.Next(base); !n.IsZero() && !n.After(base) {
			t.Fatalf("%q: Next(%v) = %v, not after", s, base, n)
		}
	})
}

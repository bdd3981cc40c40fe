package calendar

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// ErrSpan is wrapped by every error ParseSpan returns.
var ErrSpan = errors.New("calendar: invalid time span")

// spanUnits are systemd's time span units, longest match first where one
// is a prefix of another (as parse_time tries them).
var spanUnits = []struct {
	name string
	d    time.Duration
}{
	{"seconds", time.Second}, {"second", time.Second}, {"sec", time.Second}, {"s", time.Second},
	{"minutes", time.Minute}, {"minute", time.Minute}, {"min", time.Minute},
	{"months", 2629800 * time.Second}, {"month", 2629800 * time.Second}, {"M", 2629800 * time.Second},
	{"msec", time.Millisecond}, {"ms", time.Millisecond}, {"m", time.Minute},
	{"hours", time.Hour}, {"hour", time.Hour}, {"hr", time.Hour}, {"h", time.Hour},
	{"days", 24 * time.Hour}, {"day", 24 * time.Hour}, {"d", 24 * time.Hour},
	{"weeks", 7 * 24 * time.Hour}, {"week", 7 * 24 * time.Hour}, {"w", 7 * 24 * time.Hour},
	{"years", 31557600 * time.Second}, {"year", 31557600 * time.Second}, {"y", 31557600 * time.Second},
	{"usec", time.Microsecond}, {"us", time.Microsecond}, {"µs", time.Microsecond}, {"μs", time.Microsecond},
	{"nsec", time.Nanosecond}, {"ns", time.Nanosecond},
}

// ParseSpan parses a systemd time span (systemd.time(7)): numbers with
// units, summed ("1h 30min", "2min30s", "0.5s"); a bare number is seconds.
func ParseSpan(s string) (time.Duration, error) {
	p := strings.TrimSpace(s)
	if p == "" {
		return 0, fmt.Errorf("%w %q: empty", ErrSpan, s)
	}
	if p == "infinity" {
		return time.Duration(math.MaxInt64), nil
	}
	var total time.Duration
	for p != "" {
		i := 0
		for i < len(p) && (p[i] >= '0' && p[i] <= '9' || p[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("%w %q: expected a number at %q", ErrSpan, s, p)
		}
		var f float64
		if _, err := fmt.Sscanf(p[:i], "%g", &f); err != nil {
			return 0, fmt.Errorf("%w %q: bad number %q", ErrSpan, s, p[:i])
		}
		p = strings.TrimLeft(p[i:], " ")
		unit := time.Second
		for _, u := range spanUnits {
			if strings.HasPrefix(p, u.name) {
				unit = u.d
				p = p[len(u.name):]
				break
			}
		}
		if p != "" && p[0] != ' ' && (p[0] < '0' || p[0] > '9') {
			return 0, fmt.Errorf("%w %q: unknown unit at %q (use us, ms, s, min, h, d, w, M, y)", ErrSpan, s, p)
		}
		p = strings.TrimLeft(p, " ")
		total += time.Duration(f * float64(unit))
	}
	return total, nil
}

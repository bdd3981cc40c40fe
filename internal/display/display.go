// Package display formats the figures ssi shows people, the same way in every
// view of them (ssi ps, ssi top, ssi fs): sizes, run times, command lines.
package display

import (
	"fmt"
	"strings"
	"time"
)

// Bytes formats n like ps and free -h do: 512B, 3.4M, 1.2G (binary units).
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, suffix := float64(n)/unit, "K"
	for _, s := range []string{"M", "G", "T"} {
		if f < unit {
			break
		}
		f, suffix = f/unit, s
	}
	if f < 10 {
		return fmt.Sprintf("%.1f%s", f, suffix)
	}
	return fmt.Sprintf("%.0f%s", f, suffix)
}

// Elapsed formats a run time like ps's etime: [[DD-]HH:]MM:SS.
func Elapsed(d time.Duration) string {
	s := int(max(d, 0).Seconds())
	days, h, m, sec := s/86400, s/3600%24, s/60%60, s%60
	switch {
	case days > 0:
		return fmt.Sprintf("%d-%02d:%02d:%02d", days, h, m, sec)
	case h > 0:
		return fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
	}
	return fmt.Sprintf("%02d:%02d", m, sec)
}

// CommandLine joins argv on one line for a table, whatever argv holds:
// control characters become spaces.
func CommandLine(argv []string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.Join(argv, " "))
}

// Package display formats the figures ssi shows people, the same way in every
// view of them (ssi ps, ssi top, ssi fs): sizes, run times, command lines.
package display

import (
	"strconv"
	"strings"
	"time"
)

// Bytes formats n like ps and free -h do: 512B, 3.4M, 1.2G (binary units).
// It is strconv, not fmt: ssi ps formats it for each of up to 100,000 rows.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	f, suffix := float64(n)/unit, "K"
	for _, s := range []string{"M", "G", "T"} {
		if f < unit {
			break
		}
		f, suffix = f/unit, s
	}
	prec := 0
	if f < 10 {
		prec = 1
	}
	var b [32]byte
	return string(append(strconv.AppendFloat(b[:0], f, 'f', prec, 64), suffix...))
}

// Elapsed formats a run time like ps's etime: [[DD-]HH:]MM:SS.
func Elapsed(d time.Duration) string {
	s := int(max(d, 0).Seconds())
	days, h, m, sec := s/86400, s/3600%24, s/60%60, s%60
	var b [32]byte
	out := b[:0]
	switch {
	case days > 0:
		out = append(strconv.AppendInt(out, int64(days), 10), '-')
		out = append(two(out, h), ':')
	case h > 0:
		out = append(two(out, h), ':')
	}
	out = append(two(out, m), ':')
	return string(two(out, sec))
}

// two appends n (0 to 99) in two digits, as %02d does.
func two(b []byte, n int) []byte { return append(b, byte('0'+n/10), byte('0'+n%10)) }

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

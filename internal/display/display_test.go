package display

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestFormats(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1.0K", 3 << 20: "3.0M", 15 << 30: "15G"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{-time.Second: "00:00", 61 * time.Second: "01:01", 3*time.Hour + 2*time.Minute: "03:02:00", 50 * time.Hour: "2-02:00:00"} {
		if got := Elapsed(d); got != want {
			t.Errorf("Elapsed(%s) = %q, want %q", d, got, want)
		}
	}
	if got := CommandLine([]string{"sh", "-c", "a\nb\tc"}); got != "sh -c a b c" {
		t.Errorf("CommandLine = %q", got)
	}
}

// TestFormatsAsFmt: Bytes and Elapsed, written with strconv, format as the
// fmt verbs they replaced.
func TestFormatsAsFmt(t *testing.T) {
	bytesFmt := func(n int64) string {
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
	elapsedFmt := func(d time.Duration) string {
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
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200_000 {
		n := r.Int64N(1 << (i % 63))
		if i%7 == 0 {
			n = -n
		}
		if got, want := Bytes(n), bytesFmt(n); got != want {
			t.Fatalf("Bytes(%d) = %q, want %q", n, got, want)
		}
		d := time.Duration(r.Int64N(1 << (i % 62)))
		if i%5 == 0 {
			d = -d
		}
		if got, want := Elapsed(d), elapsedFmt(d); got != want {
			t.Fatalf("Elapsed(%d) = %q, want %q", d, got, want)
		}
	}
}

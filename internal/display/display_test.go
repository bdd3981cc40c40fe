package display

import (
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

//go:build failpoints

package failpoint

import (
	"errors"
	"testing"
	"time"
)

func TestHit(t *testing.T) {
	t.Setenv("SSI_FAILPOINTS", "a=error; b=sleep(50ms);c=bogus")
	if err := Hit("a"); !errors.Is(err, ErrInjected) {
		t.Fatalf("a: %v", err)
	}
	start := time.Now()
	if err := Hit("b"); err != nil || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("b: %v after %s", err, time.Since(start))
	}
	if err := Hit("c"); err == nil {
		t.Fatal("unknown action accepted")
	}
	if err := Hit("d"); err != nil {
		t.Fatalf("unlisted point: %v", err)
	}
}

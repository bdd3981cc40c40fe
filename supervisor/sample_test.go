package supervisor

import (
	"os"
	"testing"
	"time"
)

// TestThreadDemand: this test's own threads have run, and one (this one) is
// runnable.
func TestThreadDemand(t *testing.T) {
	out := map[int]time.Duration{}
	runnable := threadDemand(os.Getpid(), out)
	if len(out) == 0 || runnable < 1 {
		t.Fatalf("threads %v, runnable %d", out, runnable)
	}
	var total time.Duration
	for _, d := range out {
		total += d
	}
	if total <= 0 {
		t.Errorf("no run or wait time in %v", out)
	}
}

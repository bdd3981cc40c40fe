//go:build failpoints

package failpoint

import (
	"errors"
	"os"
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

func TestWait(t *testing.T) {
	gate := t.TempDir() + "/gate"
	t.Setenv("SSI_FAILPOINTS", "w=wait("+gate+")")
	done := make(chan error, 1)
	go func() { done <- Hit("w") }()
	for {
		if _, err := os.Stat(gate + ".reached"); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("returned before the gate opened: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

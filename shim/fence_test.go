package shim

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestWatchFence: the shim leaves the job alone while the agent's lease
// bound lies ahead (or there is none), and kills it, marking its directory
// fenced and moved, once the bound has passed.
func TestWatchFence(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, "jobs", "7")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	job := exec.Command("sleep", "60")
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = job.Wait(); close(exited) }()
	done := make(chan struct{})
	defer close(done)
	go watchFence(dir, job.Process.Pid, slog.New(slog.DiscardHandler), done)

	time.Sleep(3 * fenceCheck) // no file: nothing happens
	if err := WriteLeaseDeadline(data, Monotonic()+time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		t.Fatal("killed before the bound")
	case <-time.After(500 * time.Millisecond):
	}
	start := time.Now()
	select {
	case <-exited:
	case <-time.After(3 * time.Second):
		t.Fatal("not killed 3 s after the bound passed")
	}
	t.Logf("killed %s after the bound was half a second away", time.Since(start).Round(time.Millisecond))
	var m FencedMark
	if err := ReadJSON(dir, FencedFile, &m); err != nil || m.Late <= 0 {
		t.Fatalf("fenced mark: %+v, %v", m, err)
	}
	if _, err := os.Stat(filepath.Join(dir, MovedFile)); err != nil {
		t.Fatalf("moved mark: %v", err)
	}
}

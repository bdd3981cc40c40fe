package shim

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The fence without the agent. A job with a failover copy (Spec.Fence) must
// not run once its node's etcd lease may have expired: the failover
// controller restores it elsewhere Grace after the expiry. The agent fences
// such jobs itself when its session ends, but a dead agent cannot; so the
// agent also writes, every second, a lower bound of its lease's expiry to
// LeaseFile in its data directory (the parent of the jobs directory), on
// the system's monotonic clock, and each such job's shim kills the job when
// that time has passed. The bound is the time the agent asked etcd for the
// lease's remaining TTL plus that TTL: etcd computed it later, so the lease
// cannot expire before. A missing file fences nothing (an older agent).

// LeaseFile holds the agent's lease expiry bound: monotonic nanoseconds.
const LeaseFile = "lease-deadline"

// fenceCheck is how often a shim reads LeaseFile.
const fenceCheck = 200 * time.Millisecond

// Monotonic is the system's monotonic clock (CLOCK_MONOTONIC), shared by
// every process of the machine and immune to the wall clock's steps.
func Monotonic() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// WriteLeaseDeadline writes the agent's lease expiry bound into dataDir.
func WriteLeaseDeadline(dataDir string, deadline time.Duration) error {
	tmp := filepath.Join(dataDir, LeaseFile+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(int64(deadline), 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("shim: write lease deadline: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dataDir, LeaseFile))
}

// ReadLeaseDeadline reads the bound written in dataDir (ok false: none).
func ReadLeaseDeadline(dataDir string) (time.Duration, bool) {
	b, err := os.ReadFile(filepath.Join(dataDir, LeaseFile))
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return time.Duration(n), err == nil
}

// FencedMark is FencedFile's content.
type FencedMark struct {
	Time time.Time `json:"time"`
	// Late is how far past the lease bound the shim saw it.
	Late time.Duration `json:"late_ns"`
}

// watchFence kills the job (its init, PID 1 of its namespace) once the
// lease bound in the agent's data dir has passed, marking its directory
// moved and fenced first, so that its end is not taken for the job's. It
// returns when done closes.
func watchFence(dir string, initPID int, log *slog.Logger, done <-chan struct{}) {
	dataDir := filepath.Dir(filepath.Dir(dir))
	t := time.NewTicker(fenceCheck)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		deadline, ok := ReadLeaseDeadline(dataDir)
		if !ok {
			continue
		}
		late := Monotonic() - deadline
		if late <= 0 {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, MovedFile)); err == nil {
			return // moved, checkpointed or fenced by the agent already
		}
		err := errors.Join(
			WriteJSON(dir, FencedFile, FencedMark{Time: time.Now().UTC(), Late: late}),
			WriteJSON(dir, MovedFile, map[string]any{"time": time.Now().UTC(), "fenced": true}),
			unix.Kill(initPID, unix.SIGKILL))
		log.Warn("fenced: the agent's etcd lease may have expired (the agent is gone or cut off), and the job has a failover copy: killed", "late", late, "err", err)
		return
	}
}

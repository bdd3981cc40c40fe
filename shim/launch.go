package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// ErrStart wraps the reason a shim could not start its job.
var ErrStart = errors.New("shim: job did not start")

// Mode is how a shim gets its job.
type Mode string

// Shim modes: start the job fresh, or restore it from images (migration).
const (
	ModeStart   Mode = "shim"
	ModeRestore Mode = "restore"
)

// Launch starts `exe MODE dir` (exe is ssi-shim) in its own session and waits for its start report.
// The returned Cmd is the shim (the caller must Wait for it); the shim outlives the
// caller if the caller dies. On ErrStart the shim has exited or is exiting.
func Launch(ctx context.Context, exe, dir string, mode Mode) (*exec.Cmd, State, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, State{}, fmt.Errorf("shim: report pipe: %w", err)
	}
	defer r.Close()
	logf, err := os.OpenFile(filepath.Join(dir, ShimLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		w.Close()
		return nil, State{}, fmt.Errorf("shim: open shim log: %w", err)
	}
	cmd := exec.Command(exe, string(mode), dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	logf.Close()
	if err != nil {
		return nil, State{}, fmt.Errorf("shim: start %s shim: %w", exe, err)
	}
	// A fresh job reports within milliseconds; a restore takes as long as CRIU
	// needs for the job's memory (the shim gives CRIU 2 minutes).
	wait := 30 * time.Second
	if mode == ModeRestore {
		wait = 3 * time.Minute
	}
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = r.SetReadDeadline(deadline)
	line, err := bufio.NewReader(r).ReadBytes('\n')
	if err != nil {
		return cmd, State{}, fmt.Errorf("shim: no start report from shim %d (see %s): %w", cmd.Process.Pid, filepath.Join(dir, ShimLog), err)
	}
	var m readyMsg
	if err := json.Unmarshal(line, &m); err != nil {
		return cmd, State{}, fmt.Errorf("shim: bad start report %q: %w", line, err)
	}
	if m.Error != "" || m.State == nil {
		return cmd, State{}, fmt.Errorf("%w: %s", ErrStart, m.Error)
	}
	return cmd, *m.State, nil
}

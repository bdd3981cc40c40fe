package benchkit

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Exec runs a command to completion, within timeout, with env (nil: this
// process's) and returns its stdout and its wall time: from just before
// fork+exec until wait returns. Stdout and stderr go to pipes read by this
// process, for every command alike. The error names the command and quotes
// its stderr.
func Exec(ctx context.Context, timeout time.Duration, env []string, name string, args ...string) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	err := cmd.Wait()
	d := time.Since(t0)
	if err != nil {
		return out.Bytes(), d, fmt.Errorf("%s: %w: %s", commandLine(name, args), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), d, nil
}

// commandLine is the start of a command line, for messages: the program's
// base name and its first two arguments.
func commandLine(name string, args []string) string {
	s := append([]string{filepath.Base(name)}, args[:min(len(args), 2)]...)
	if len(args) > 2 {
		s = append(s, "…")
	}
	return strings.Join(s, " ")
}

//go:build failpoints

package failpoint

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Enabled reports whether this is a failpoint build.
const Enabled = true

// ErrInjected is returned by Hit for the "error" action.
var ErrInjected = errors.New("failpoint: injected error")

// ExitCode is the status a process exits with at an "exit" failpoint.
const ExitCode = 86

// Hit runs the action SSI_FAILPOINTS gives for name, if any.
func Hit(name string) error {
	for _, spec := range strings.Split(os.Getenv("SSI_FAILPOINTS"), ";") {
		point, action, ok := strings.Cut(strings.TrimSpace(spec), "=")
		if !ok || point != name {
			continue
		}
		switch {
		case action == "exit":
			fmt.Fprintf(os.Stderr, "failpoint %s: exiting\n", name)
			os.Exit(ExitCode)
		case action == "error":
			// Said on stderr (an agent's log) so that a test can tell a fault
			// that fired from one the code never reached.
			fmt.Fprintf(os.Stderr, "failpoint %s: returning an error\n", name)
			return fmt.Errorf("%w at %s", ErrInjected, name)
		case strings.HasPrefix(action, "wait(") && strings.HasSuffix(action, ")"):
			return wait(name, strings.TrimSuffix(strings.TrimPrefix(action, "wait("), ")"))
		case strings.HasPrefix(action, "sleep(") && strings.HasSuffix(action, ")"):
			d, err := time.ParseDuration(strings.TrimSuffix(strings.TrimPrefix(action, "sleep("), ")"))
			if err != nil {
				return fmt.Errorf("failpoint %s: %w", name, err)
			}
			time.Sleep(d)
		default:
			return fmt.Errorf("failpoint %s: unknown action %q", name, action)
		}
	}
	return nil
}

// waitLimit bounds a wait action: a test that never opens the gate does not
// hold the process for good.
const waitLimit = 5 * time.Minute

// wait announces that name was reached (creates gate+".reached") and blocks
// until the file gate exists.
func wait(name, gate string) error {
	if err := os.WriteFile(gate+".reached", nil, 0o600); err != nil {
		return fmt.Errorf("failpoint %s: %w", name, err)
	}
	for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(gate); err == nil {
			return nil
		}
	}
	return fmt.Errorf("failpoint %s: %s not created within %s", name, gate, waitLimit)
}

package testenv

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// CI reports whether the tests run in CI: the environment variable CI is
// "true", as CI services and .ci/run set it.
func CI() bool { return os.Getenv("CI") == "true" }

// Skip skips t, saying why. In CI it fails t instead, unless t's top-level
// test is listed in SSI_CI_SKIP: then it skips, marked as a CI exception.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	kind := "skip"
	if CI() {
		if !excepted(t.Name(), os.Getenv("SSI_CI_SKIP")) {
			t.Fatalf("cannot run in CI (CI=true), where every test must run: %s (if this is expected on this CI machine, list %s in SSI_CI_SKIP)", reason, topLevel(t.Name()))
		}
		kind = "ci-exception"
		reason = "CI exception (SSI_CI_SKIP): " + reason
	}
	if err := record(os.Getenv("SSI_SKIP_LOG"), t.Name(), kind, reason); err != nil {
		t.Logf("testenv: %v", err)
	}
	t.Skip(reason)
}

// excepted reports whether the top-level test of name is in the
// comma-separated list.
func excepted(name, list string) bool {
	return slices.Contains(strings.Split(list, ","), topLevel(name))
}

func topLevel(name string) string {
	top, _, _ := strings.Cut(name, "/")
	return top
}

// record appends one line for a skip to the file at path ("" records nothing).
func record(path, name, kind, reason string) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("record skip: %w", err)
	}
	// One write per line: test binaries of several packages append at once.
	line := strings.Join([]string{name, kind, strings.ReplaceAll(reason, "\n", " ")}, "\t") + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("record skip: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("record skip: %w", err)
	}
	return nil
}

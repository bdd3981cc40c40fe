package checkpoint

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/ssi-cluster/ssi/checkpoint/criulog"
)

// DefaultCRIUPath is where hack/install-criu.sh installs CRIU. The `criu` on PATH
// may be a distribution build that does not work here, so it is never looked up.
const DefaultCRIUPath = "/usr/local/sbin/criu"

// MinVersion is the oldest usable CRIU, as Major*10000 + Minor*100 + Sublevel.
const MinVersion = 40200

// ErrCRIUUnavailable is wrapped by every error saying CRIU cannot be used here.
var ErrCRIUUnavailable = errors.New("checkpoint: CRIU unavailable")

// Problem says what is wrong with the CRIU installation.
type Problem int

// Problems reported in an UnavailableError.
const (
	// NotInstalled: the binary is missing or cannot be executed.
	NotInstalled Problem = iota + 1
	// BadVersion: `criu --version` failed or printed no version.
	BadVersion
	// TooOld: the version is below MinVersion.
	TooOld
	// CheckFailed: `criu check` failed (kernel features, privileges).
	CheckFailed
)

func (p Problem) String() string {
	switch p {
	case NotInstalled:
		return "not installed"
	case BadVersion:
		return "version unknown"
	case TooOld:
		return "too old"
	case CheckFailed:
		return "criu check failed"
	}
	return "Problem(" + strconv.Itoa(int(p)) + ")"
}

// UnavailableError is returned by Probe. errors.Is(err, ErrCRIUUnavailable) holds for
// it, and so does errors.Is/As on the underlying cause (Err).
type UnavailableError struct {
	Path    string
	Problem Problem
	// Version is the version found (0 if unknown).
	Version int
	// Output holds the relevant lines CRIU printed (the Error lines of `criu check`).
	Output []string
	// NotRoot is set when `criu check` failed in a process that is not root: the
	// failure may only mean that CRIU needs root (or CAP_CHECKPOINT_RESTORE).
	NotRoot bool
	// Err is the underlying cause, if any (exec error, exit status).
	Err error
}

func (e *UnavailableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "checkpoint: CRIU at %s unusable: ", e.Path)
	switch e.Problem {
	case NotInstalled:
		b.WriteString("not installed")
	case BadVersion:
		b.WriteString("cannot read its version")
	case TooOld:
		fmt.Fprintf(&b, "version %s is older than the required %s", FormatVersion(e.Version), FormatVersion(MinVersion))
	case CheckFailed:
		fmt.Fprintf(&b, "`%s check` failed", e.Path)
		if e.NotRoot {
			b.WriteString(" (not run as root: CRIU needs root or CAP_CHECKPOINT_RESTORE)")
		}
	default:
		b.WriteString(e.Problem.String())
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if len(e.Output) > 0 {
		fmt.Fprintf(&b, " [%s]", strings.Join(e.Output, "; "))
	}
	if e.NotRoot {
		b.WriteString("; run as root, and if it still fails, run")
	} else {
		b.WriteString("; run")
	}
	b.WriteString(" hack/install-criu.sh (as root) to install CRIU >= ")
	b.WriteString(FormatVersion(MinVersion))
	return b.String()
}

// Unwrap returns ErrCRIUUnavailable and the underlying cause.
func (e *UnavailableError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrCRIUUnavailable}
	}
	return []error{ErrCRIUUnavailable, e.Err}
}

// Info describes a usable CRIU.
type Info struct {
	Path string
	// Version is Major*10000 + Minor*100 + Sublevel, e.g. 40201 for 4.2.1.
	Version int
}

// FormatVersion renders 40201 as "4.2.1".
func FormatVersion(v int) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

// Probe checks the CRIU binary at criuPath (DefaultCRIUPath when empty): that it
// runs, is at least MinVersion, and passes `criu check` (which needs root). On
// failure the returned Info still carries what was learnt (path, version) and the
// error is an *UnavailableError wrapping ErrCRIUUnavailable; a cancelled ctx is
// returned as is.
//
// The version comes from `criu --version` rather than go-criu's VERSION RPC: it
// needs no privileges and honours ctx.
func Probe(ctx context.Context, criuPath string) (Info, error) {
	if criuPath == "" {
		criuPath = DefaultCRIUPath
	}
	info := Info{Path: criuPath}
	unavailable := func(p Problem, out []string, err error) (Info, error) {
		return info, &UnavailableError{Path: criuPath, Problem: p, Version: info.Version, Output: out,
			NotRoot: p == CheckFailed && os.Geteuid() != 0, Err: err}
	}
	st, err := os.Stat(criuPath)
	if err != nil {
		return unavailable(NotInstalled, nil, err)
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return unavailable(NotInstalled, nil, fs.ErrPermission)
	}

	out, err := exec.CommandContext(ctx, criuPath, "--version").CombinedOutput()
	if ctx.Err() != nil {
		return info, ctx.Err()
	}
	if err != nil {
		return unavailable(BadVersion, lastLines(out, 3), err)
	}
	v, ok := parseVersion(out)
	if !ok {
		return unavailable(BadVersion, lastLines(out, 3), nil)
	}
	info.Version = v
	if v < MinVersion {
		return unavailable(TooOld, nil, nil)
	}

	out, err = exec.CommandContext(ctx, criuPath, "check").CombinedOutput()
	if ctx.Err() != nil {
		return info, ctx.Err()
	}
	if err != nil {
		lines := criulog.ErrorLines(out, maxQuotedLines)
		if len(lines) == 0 {
			lines = lastLines(out, 3)
		}
		return unavailable(CheckFailed, lines, err)
	}
	return info, nil
}

// parseVersion reads the "Version: X.Y[.Z]" line of `criu --version`.
func parseVersion(out []byte) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Version:")
		if !ok {
			continue
		}
		parts := strings.Split(strings.TrimSpace(rest), ".")
		if len(parts) < 2 || len(parts) > 3 {
			return 0, false
		}
		v := 0
		for i, mul := range []int{10000, 100, 1} {
			if i >= len(parts) {
				break
			}
			n, err := strconv.Atoi(parts[i])
			if err != nil || n < 0 || (i > 0 && n > 99) {
				return 0, false
			}
			v += n * mul
		}
		return v, true
	}
	return 0, false
}

// lastLines returns up to n last non-empty lines of out.
func lastLines(out []byte, n int) []string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

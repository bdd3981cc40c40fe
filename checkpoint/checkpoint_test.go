package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/checkpoint/criulog"
	"github.com/ssi-cluster/ssi/internal/testenv"
)

func TestParseVersion(t *testing.T) {
	for _, c := range []struct {
		out  string
		want int
		ok   bool
	}{
		{"Version: 4.2.1\n", 40201, true},
		{"Version: 4.2\nGitID: v4.2-12-gabcdef\n", 40200, true},
		{"Version: 3.17.1\n", 31701, true},
		{"criu: unknown\n", 0, false},
		{"Version: 4\n", 0, false},
		{"Version: 4.x.1\n", 0, false},
	} {
		got, ok := parseVersion([]byte(c.out))
		if got != c.want || ok != c.ok {
			t.Errorf("parseVersion(%q) = %d, %v; want %d, %v", c.out, got, ok, c.want, c.ok)
		}
	}
	if s := FormatVersion(40201); s != "4.2.1" {
		t.Errorf("FormatVersion(40201) = %q", s)
	}
}

func TestErrorLines(t *testing.T) {
	log := `(00.000010) Version: 4.2.1
(00.031105) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.040000) Warn  (criu/x.c:1): something
(00.050000) Error (criu/files-reg.c:2000): File a/b has bad size 60 (expect 6)
(00.050001) Error (criu/cr-restore.c:2500): Restoring FAILED.
`
	got := criulog.ErrorLines([]byte(log), 10)
	want := []string{
		"(00.050000) Error (criu/files-reg.c:2000): File a/b has bad size 60 (expect 6)",
		"(00.050001) Error (criu/cr-restore.c:2500): Restoring FAILED.",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("errorLines = %q, want %q", got, want)
	}
	if got := criulog.ErrorLines([]byte(log), 1); len(got) != 1 {
		t.Fatalf("errorLines(n=1) returned %d lines", len(got))
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "restore.log"), []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	lines, omitted := logErrors(filepath.Join(dir, "restore.log"))
	e := &CRIUError{Op: "restore", LogPath: filepath.Join(dir, "restore.log"), Lines: lines, Omitted: omitted, Err: fs.ErrClosed}
	if !strings.Contains(e.Error(), "bad size 60") || !errors.Is(e, fs.ErrClosed) {
		t.Fatalf("CRIUError %q does not quote the log or unwrap", e)
	}
}

// fakeCRIU writes a shell script standing in for criu.
func fakeCRIU(t *testing.T, version string, checkOK bool) string {
	t.Helper()
	check := `echo "Looks good."`
	if !checkOK {
		check = `echo "Error (criu/cr-check.c:1): vdso: no such thing" >&2; exit 1`
	}
	path := filepath.Join(t.TempDir(), "criu")
	script := "#!/bin/sh\ncase \"$1\" in\n--version) echo \"Version: " + version + "\" ;;\ncheck) " + check + " ;;\n*) exit 2 ;;\nesac\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProbe(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		testenv.Skip(t, "no sh")
	}
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "criu")
	for _, c := range []struct {
		name    string
		path    string
		problem Problem
		cause   error
	}{
		{"missing", missing, NotInstalled, fs.ErrNotExist},
		{"old", fakeCRIU(t, "4.1.1", true), TooOld, nil},
		{"check fails", fakeCRIU(t, "4.2.1", false), CheckFailed, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Probe(ctx, c.path)
			var ue *UnavailableError
			if !errors.Is(err, ErrCRIUUnavailable) || !errors.As(err, &ue) {
				t.Fatalf("Probe(%s) = %v, want an *UnavailableError", c.path, err)
			}
			if ue.Problem != c.problem {
				t.Errorf("problem %v, want %v", ue.Problem, c.problem)
			}
			if c.cause != nil && !errors.Is(err, c.cause) {
				t.Errorf("%v does not wrap %v", err, c.cause)
			}
			if !strings.Contains(err.Error(), "hack/install-criu.sh") {
				t.Errorf("%q does not say how to install CRIU", err)
			}
			t.Log(err)
		})
	}
	info, err := Probe(ctx, fakeCRIU(t, "4.2.1", true))
	if err != nil || info.Version != 40201 {
		t.Fatalf("Probe(good fake) = %+v, %v", info, err)
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	if err := Dump(ctx, DumpOpts{PID: os.Getpid(), ImagesDir: dir}); !errors.Is(err, context.Canceled) {
		t.Errorf("Dump with a cancelled context: %v", err)
	}
	if _, err := Restore(ctx, RestoreOpts{ImagesDir: dir}); !errors.Is(err, context.Canceled) {
		t.Errorf("Restore with a cancelled context: %v", err)
	}
}

// TestDumpFailureQuotesLog makes real CRIU fail and checks the error quotes its log.
func TestDumpFailureQuotesLog(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to run CRIU")
	}
	if _, err := Probe(context.Background(), ""); err != nil {
		testenv.Skip(t, "CRIU not usable: %v", err)
	}
	// A plain child of this process: not a session leader, so CRIU refuses to
	// dump it without --shell-job.
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	dir := t.TempDir()
	err := Dump(context.Background(), DumpOpts{PID: cmd.Process.Pid, ImagesDir: dir, LeaveRunning: true})
	var ce *CRIUError
	if !errors.As(err, &ce) {
		t.Fatalf("Dump = %v, want a *CRIUError", err)
	}
	if ce.Op != "dump" || len(ce.Lines) == 0 || ce.LogPath != filepath.Join(dir, DefaultDumpLog) {
		t.Fatalf("CRIUError %+v: want op dump, quoted Error lines, log %s", ce, filepath.Join(dir, DefaultDumpLog))
	}
	t.Log(err)
	// A failed dump leaves the task as it was.
	if s, err := procState(cmd.Process.Pid); err != nil || s == "T" || s == "Z" {
		t.Errorf("dumped task after the failed dump: state %q, err %v", s, err)
	}
}

// procState returns the state letter of pid from /proc/PID/stat.
func procState(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+3 > len(b) {
		return "", fmt.Errorf("malformed stat of %d", pid)
	}
	return string(b[i+2 : i+3]), nil
}

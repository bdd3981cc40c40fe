package supervisor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ssi-cluster/ssi/joblog"
	"github.com/ssi-cluster/ssi/shim"
)

// TestInitCrashedInAbortedDump: the end of a job whose init the Go runtime
// killed after an aborted CRIU dump (as seen in CI: exit 2, the trap's trace
// on the job's stderr) is recognised from the job's framed log; a plain exit
// 2, or another status with that text, is not.
func TestInitCrashedInAbortedDump(t *testing.T) {
	write := func(t *testing.T, stderr string) string {
		dir := t.TempDir()
		f, err := os.Create(filepath.Join(dir, shim.LogFile))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w := joblog.NewWriter(f)
		_, _ = w.StreamWriter(joblog.Stdout).Write([]byte("0\n1\n2\n"))
		_, _ = w.StreamWriter(joblog.Stderr).Write([]byte(stderr))
		return dir
	}
	trace := "SIGTRAP: trace trap\nPC=0x7fc09e17fba0 m=0 sigcode=4\ngoroutine 0 gp=0x8052e0 m=0 mp=0x8062e0 [idle]:\n"
	for _, c := range []struct {
		name   string
		code   int
		stderr string
		want   bool
	}{
		{"init crashed in CRIU's parasite", 2, trace, true},
		{"the job exited 2", 2, "usage: prog FILE\n", false},
		{"killed, the text in its output", 137, trace, false},
	} {
		if got := initCrashedInAbortedDump(c.code, write(t, c.stderr)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if initCrashedInAbortedDump(2, t.TempDir()) {
		t.Error("a job with no log recognised")
	}
}

// TestTrappedInAbortedDump: only a death by SIGTRAP (status 133) is taken
// for CRIU's trap; a SIGKILL or an exit 5 is the job's own.
func TestTrappedInAbortedDump(t *testing.T) {
	for code, want := range map[int]bool{133: true, 137: false, 5: false, 2: false} {
		if got := trappedInAbortedDump(code); got != want {
			t.Errorf("status %d: %v, want %v", code, got, want)
		}
	}
}

package checkpoint

import (
	"fmt"
	"testing"
)

// TestClassifyDumpErrors: the dump failures the agent explains or retries are
// recognised from CRIU's error lines (as measured on this machine), wrapped or
// not, and nothing else is.
func TestClassifyDumpErrors(t *testing.T) {
	rlimit := &CRIUError{Op: "dump", Lines: []string{
		"(00.060690) Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted",
		"(00.060692) Error (criu/cr-dump.c:1584): Dump core (pid: 32431) failed with -1"}}
	unpriv := &CRIUError{Op: "dump", Lines: []string{
		"(00.040001) Error (criu/pie/parasite.c:412): can't dump unprivileged task whose /proc doesn't belong to it"}}
	collision := &CRIUError{Op: "dump", Lines: []string{
		"(00.040001) Error (criu/pie/parasite.c:405): Can't create a directory (-17)"}}
	other := &CRIUError{Op: "dump", Lines: []string{
		"(00.010000) Error (criu/cr-dump.c:2000): Dumping FAILED."}}
	for _, c := range []struct {
		name                           string
		err                            error
		rlimit, unprivileged, collides bool
	}{
		{"rlimit", rlimit, true, false, false},
		{"wrapped rlimit", fmt.Errorf("migrate: %w", rlimit), true, false, false},
		{"unprivileged /proc", unpriv, false, true, false},
		{"proc.crtools collision", collision, false, false, true},
		{"other CRIU error", other, false, false, false},
		{"not a CRIU error", fmt.Errorf("Can't get rlimit 0: Operation not permitted"), false, false, false},
	} {
		if got := IsForeignRlimit(c.err); got != c.rlimit {
			t.Errorf("%s: IsForeignRlimit = %v", c.name, got)
		}
		if got := IsUnprivilegedProc(c.err); got != c.unprivileged {
			t.Errorf("%s: IsUnprivilegedProc = %v", c.name, got)
		}
		if got := IsProcDirCollision(c.err); got != c.collides {
			t.Errorf("%s: IsProcDirCollision = %v", c.name, got)
		}
	}
}

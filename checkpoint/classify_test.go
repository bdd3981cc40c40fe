package checkpoint

import (
	"fmt"
	"strings"
	"testing"
)

// TestClassifyDumpErrors: the dump failures the agent explains are
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
	readOnly := &CRIUError{Op: "dump", Lines: []string{
		"(00.040001) Error (criu/pie/parasite.c:634): Can't create a directory (-30)"}}
	other := &CRIUError{Op: "dump", Lines: []string{
		"(00.010000) Error (criu/cr-dump.c:2000): Dumping FAILED."}}
	for _, c := range []struct {
		name               string
		err                error
		rlimit, sharedProc bool
	}{
		{"rlimit", rlimit, true, false},
		{"wrapped rlimit", fmt.Errorf("migrate: %w", rlimit), true, false},
		{"unprivileged /proc", unpriv, false, true},
		{"proc.crtools collision", collision, false, true},
		{"read-only working directory", readOnly, false, true},
		{"other CRIU error", other, false, false},
		{"not a CRIU error", fmt.Errorf("Can't get rlimit 0: Operation not permitted"), false, false},
	} {
		if got := IsForeignRlimit(c.err); got != c.rlimit {
			t.Errorf("%s: IsForeignRlimit = %v", c.name, got)
		}
		if got := IsSharedProc(c.err); got != c.sharedProc {
			t.Errorf("%s: IsSharedProc = %v", c.name, got)
		}
	}
}

// TestExplain: the CRIU failures a user meets, as CRIU words them on this
// machine, become sentences that say what in the job stops the move.
func TestExplain(t *testing.T) {
	for _, c := range []struct {
		line, want string
	}{
		{"(00.062882) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option.", "established TCP connection"},
		{"(00.008613) Error (criu/files-reg.c:1031): Can't dump ghost file /opt/app/bin/server of 104857600 size, increase limit", "deleted (or replaced) while it ran"},
		{"(00.120000) Error (criu/sk-inet.c:1001): inet: Can't bind inet socket (id 22): Cannot assign requested address", "bound to an address of its node"},
		{"(00.050000) Error (criu/sk-unix.c:700): unix: External socket is used. Consider using --ext-unix-sk option.", "Unix socket connected to a process outside it"},
		{"(00.030000) Error (criu/files.c:500): Can't dump file 5 of that type [1234] (unknown /dev/foo)", "kind of file descriptor"},
		{"(00.200000) Error (criu/files-reg.c:2000): File /tmp/x has bad size 60 (expect 6)", "does not have the size"},
		{"(00.300000) Error (criu/mem.c:900): Can't map: Cannot allocate memory", "ran out of memory"},
	} {
		got := Explain(fmt.Errorf("migrate: %w", &CRIUError{Op: "dump", Lines: []string{c.line}}))
		if !strings.Contains(got, c.want) {
			t.Errorf("%q: explained as %q, want %q", c.line, got, c.want)
		}
	}
	if got := Explain(&CRIUError{Op: "dump", Lines: []string{"(00.010000) Error (criu/cr-dump.c:2000): Dumping FAILED."}}); got != "" {
		t.Errorf("an unknown failure explained as %q", got)
	}
	if got := Explain(fmt.Errorf("criu restore failed: (00.1) Error (criu/sk-inet.c:1001): inet: Can't bind inet socket (id 22): Cannot assign requested address")); !strings.Contains(got, "bound to an address") {
		t.Errorf("a restore failure quoted by the shim: %q", got)
	}
}

package service

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

func readNone(string) ([]byte, error) { return nil, os.ErrNotExist }

func TestParseGood(t *testing.T) {
	unit := `# a comment
[Unit]
Description=Web %n
After=network.target

[Service]
Environment="GREETING=hello world" PORT=80
EnvironmentFile=/etc/web.env
ExecStart=/usr/bin/web --port=${PORT} $FLAGS "a b" 'c\td' \
   --id=%i
WorkingDirectory=-/srv
User=alice
Restart=on-failure
RestartSec=2s
CPUQuota=150%
MemoryMax=512M
KillSignal=SIGINT
TimeoutStopSec=1min 30s

[X-SSI]
Replicas=4
Spread=node
Constraint=zone=a
Constraint=disk=ssd
Migratable=no
`
	read := func(p string) ([]byte, error) {
		if p != "/etc/web.env" {
			t.Fatalf("read %s", p)
		}
		return []byte("# env\nFLAGS=-v -x\nPORT='8080'\n"), nil
	}
	u, warns, err := Parse("/u/web@.service", []byte(unit), "7", read)
	if err != nil {
		t.Fatal(err)
	}
	s := u.Spec
	want := []string{"/usr/bin/web", "--port=8080", "-v", "-x", "a b", "c\td", "--id=7"}
	if u.Name != "web@7" || strings.Join(s.Argv, "|") != strings.Join(want, "|") {
		t.Fatalf("name %q argv %q", u.Name, s.Argv)
	}
	if s.Description != "Web web@7.service" || s.Workdir != "/srv" || !s.WorkdirOptional || s.User != "alice" ||
		s.Restart != pidtable.RestartOnFailure || s.RestartSec != 2*time.Second || s.CPUs != 1.5 || s.Memory != 512<<20 ||
		s.KillSignal != "SIGINT" || s.StopTimeout != 90*time.Second || s.Replicas != 4 || s.Spread != pidtable.SpreadNode ||
		s.Constraints["zone"] != "a" || s.Constraints["disk"] != "ssd" || !s.Pinned {
		t.Fatalf("spec %+v", s)
	}
	if strings.Join(s.Env, "|") != "GREETING=hello world|PORT=8080|FLAGS=-v -x" {
		t.Fatalf("env %q", s.Env)
	}
	if len(warns) != 1 || warns[0].Line != 4 || !strings.Contains(warns[0].String(), "/u/web@.service:4: [Unit] After=") {
		t.Fatalf("warnings %v", warns)
	}
}

func TestParseDefaultsAndWarnings(t *testing.T) {
	u, warns, err := Parse("x.service", []byte("[Service]\nExecStart=/bin/sleep 1\nFoo=bar\nGroup=g\n[Install]\nWantedBy=multi-user.target\n[X-SSI]\nBar=1\n[X-Other]\nA=b\n"), "", readNone)
	if err != nil {
		t.Fatal(err)
	}
	if u.Spec.Replicas != 1 || u.Spec.Restart != "no" || u.Spec.RestartSec != DefaultRestartSec || u.Spec.Spread != "any" || u.Spec.KillSignal != "SIGTERM" {
		t.Fatalf("defaults %+v", u.Spec)
	}
	var lines []int
	for _, w := range warns {
		lines = append(lines, w.Line)
	}
	if len(warns) != 5 || lines[0] != 3 || lines[1] != 4 || lines[2] != 6 || lines[3] != 8 || lines[4] != 10 {
		t.Fatalf("warnings %v", warns)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ file, unit, inst, want string }{
		{"a.service", "[Service]\nExecStart=/bin/true\nno equals sign\n", "", "a.service:3: malformed line"},
		{"a.service", "ExecStart=/bin/true\n", "", "a.service:1: ExecStart= before any [Section]"},
		{"a.service", "[Service\nExecStart=/bin/true\n", "", "a.service:1: malformed section header"},
		{"a.service", "[Unit]\nDescription=x\n", "", "a.service: no ExecStart="},
		{"a.service", "[Service]\nExecStart=/bin/a\nExecStart=/bin/b\n", "", "a.service:3: a second ExecStart="},
		{"a.service", "[Service]\nExecStart=-/bin/a\n", "", "a.service:2: ExecStart=: the prefix '-'"},
		{"a.service", "[Service]\nExecStart=/bin/a \"x\n", "", "a.service:2: ExecStart=: unterminated"},
		{"a.service", "[Service]\nExecStart=/bin/a\nRestart=on-abort\n", "", "a.service:3: Restart=on-abort"},
		{"a.service", "[Service]\nExecStart=/bin/a\n[X-SSI]\nReplicas=0\n", "", "a.service:4: Replicas=0: want a number from 1 to 1000"},
		{"a.service", "[Service]\nExecStart=/bin/a\n[X-SSI]\nReplicas=-1\n", "", "a.service:4: Replicas=-1"},
		{"a.service", "[Service]\nExecStart=/bin/a\n[X-SSI]\nReplicas=1001\n", "", "a.service:4: Replicas=1001"},
		{"a.service", "[Service]\nExecStart=/bin/a\n[X-SSI]\nSpread=rack\n", "", "a.service:4: Spread=rack"},
		{"a.service", "[Service]\nExecStart=/bin/a\n[X-SSI]\nConstraint=zone\n", "", "a.service:4: Constraint=zone"},
		{"a.service", "[Service]\nExecStart=/bin/a\nMemoryMax=10%\n", "", "a.service:3: MemoryMax=10%"},
		{"a.service", "[Service]\nExecStart=/bin/a\nKillSignal=SIGFOO\n", "", "a.service:3: KillSignal=SIGFOO"},
		{"a.service", "[Service]\nExecStart=/bin/a %u\n", "", "a.service:2: ExecStart=: specifier %u"},
		{"a.service", "[Service]\nExecStart=/bin/a\nEnvironmentFile=/nonexistent\n", "", "a.service:3: EnvironmentFile=/nonexistent"},
		{"w@.service", "[Service]\nExecStart=/bin/a\n", "", "needs instances"},
		{"a.service", "[Service]\nExecStart=/bin/a\n", "3", "for template units"},
		{"a.txt", "", "", "not a .service unit"},
		{"a.service", "[Service]\nExecStart=/bin/a\n[X-SSI]\nCheckpointEvery=1s\n", "", "a.service:4: CheckpointEvery=1s: want 2s or more"},
		{"a.service", "[Service]\nExecStart=/bin/a\n[X-SSI]\nCheckpointEvery=soon\n", "", "a.service:4: CheckpointEvery=soon"},
	} {
		_, _, err := Parse(tc.file, []byte(tc.unit), tc.inst, readNone)
		if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.unit, err, tc.want)
		}
	}
	// CheckpointEvery= is taken, and rolls the replicas.
	u, warns, err := Parse("a.service", []byte("[Service]\nExecStart=/bin/a\n[X-SSI]\nCheckpointEvery=30s\n"), "", readNone)
	if err != nil || len(warns) != 0 || u.Spec.CheckpointEvery != 30*time.Second {
		t.Fatalf("CheckpointEvery=30s: %+v %v %v", u.Spec, warns, err)
	}
	plain := u.Spec
	plain.CheckpointEvery = 0
	if RunHash(u.Spec) == RunHash(plain) {
		t.Fatal("CheckpointEvery does not change the run hash")
	}
	// An optional EnvironmentFile is a warning.
	_, warns, err = Parse("a.service", []byte("[Service]\nExecStart=/bin/a\nEnvironmentFile=-/nonexistent\n"), "", readNone)
	if err != nil || len(warns) != 1 || warns[0].Line != 3 {
		t.Fatalf("optional env file: %v %v", err, warns)
	}
}

func TestSplitCommand(t *testing.T) {
	env := []string{"A=x y", "B=b", "E="}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`/bin/echo a  b`, []string{"/bin/echo", "a", "b"}},
		{`/bin/echo "a b" 'c d' e"f g"h`, []string{"/bin/echo", "a b", "c d", "ef gh"}},
		{`/bin/echo $A`, []string{"/bin/echo", "x", "y"}},
		{`/bin/echo ${A}`, []string{"/bin/echo", "x y"}},
		{`/bin/echo pre${B}post $B$B`, []string{"/bin/echo", "prebpost", "$B$B"}},
		{`/bin/echo $E end`, []string{"/bin/echo", "end"}},
		{`/bin/echo $$A $${B}`, []string{"/bin/echo", "$A", "${B}"}},
		{`/bin/echo \x41\101\u00e9\n`, []string{"/bin/echo", "AAé\n"}},
		{`:/bin/echo $A`, []string{"/bin/echo", "$A"}},
		{`/bin/echo "$A"`, []string{"/bin/echo", "x", "y"}},
	} {
		got, err := SplitCommand(tc.in, env)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: %q %v, want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`/bin/a "x`, `/bin/a \q`, `/bin/a ${A`, `/bin/a \`, `@/bin/a`} {
		if _, err := SplitCommand(bad, env); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestTimespan(t *testing.T) {
	for in, want := range map[string]time.Duration{"5": 5 * time.Second, "100ms": 100 * time.Millisecond, "1min 30s": 90 * time.Second, "2h": 2 * time.Hour, "1.5s": 1500 * time.Millisecond} {
		if got, err := ParseTimespan(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "5 parsecs"} {
		if _, err := ParseTimespan(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestHash(t *testing.T) {
	a, _, _ := Parse("a.service", []byte("[Service]\nExecStart=/bin/a x\n[X-SSI]\nReplicas=2\n"), "", readNone)
	b, _, _ := Parse("a.service", []byte("# comment\n[X-SSI]\nReplicas=2\n\n[Service]\nExecStart=/bin/a   x\n"), "", readNone)
	c, _, _ := Parse("a.service", []byte("[Service]\nExecStart=/bin/a x\n[X-SSI]\nReplicas=3\n"), "", readNone)
	if Hash(a.Spec) != Hash(b.Spec) || Hash(a.Spec) == Hash(c.Spec) || RunHash(a.Spec) != RunHash(c.Spec) {
		t.Fatal("hashes: normalized specs must match; replicas change the hash, not the run hash")
	}
}

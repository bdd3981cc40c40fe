package benchkit

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestClaimName(t *testing.T) {
	dir := t.TempDir()
	release, err := ClaimName(dir, "sbench")
	if err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(dir, ".sbench.bench-lock")
	if b, err := os.ReadFile(lock); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q (%v), want our pid", b, err)
	}
	// A second benchmark of the same name is refused, and told what to do.
	if _, err := ClaimName(dir, "sbench"); err == nil || !strings.Contains(err.Error(), "another -name and -subnet") {
		t.Errorf("second claim: %v, want a refusal naming -name and -subnet", err)
	}
	// Another name is free.
	other, err := ClaimName(dir, "sbenchx")
	if err != nil {
		t.Fatalf("claim of another name: %v", err)
	}
	other()
	release()
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Errorf("lock file after release: %v", err)
	}
	again, err := ClaimName(dir, "sbench")
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	again()
}

func TestClusterFlags(t *testing.T) {
	var c ClusterFlags
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.Register(fs, "smig", "10.214.0.0/24")
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Check("smig"); err != nil || c.Name != "smig" || c.Subnet != "10.214.0.0/24" || c.DataDir != "/var/lib/ssi-local/smig" {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	c = ClusterFlags{}
	if err := fs.Parse([]string{"-name", "ssi"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Check("smig"); err == nil || !strings.Contains(err.Error(), "must start with smig") {
		t.Errorf("-name ssi: %v, want a refusal", err)
	}
}

func TestExec(t *testing.T) {
	out, d, err := Exec(context.Background(), time.Minute, nil, "sh", "-c", "echo hi")
	if err != nil || string(out) != "hi\n" || d <= 0 {
		t.Errorf("Exec = %q, %s, %v", out, d, err)
	}
	_, _, err = Exec(context.Background(), time.Minute, nil, "/bin/sh", "-c", "echo oops >&2; exit 3", "x", "y")
	if err == nil || !strings.Contains(err.Error(), "sh -c echo oops >&2; exit 3 …: exit status 3: oops") {
		t.Errorf("Exec error = %v", err)
	}
	_, _, err = Exec(context.Background(), 50*time.Millisecond, nil, "sleep", "5")
	if err == nil {
		t.Error("Exec past its timeout: no error")
	}
}

func TestProbeMachine(t *testing.T) {
	m := ProbeMachine(context.Background(), filepath.Join(t.TempDir(), "no-criu"), "sbench")
	if m.CPUs < 1 || m.Go == "" || m.Started.IsZero() || m.LoadAvg == "" {
		t.Errorf("machine %+v", m)
	}
	if !strings.HasPrefix(m.CRIU, "criu unknown") {
		t.Errorf("CRIU without a binary: %q", m.CRIU)
	}
	if s := m.String(); !strings.Contains(s, "CPUs") || !strings.Contains(s, m.Go) {
		t.Errorf("String() = %q", s)
	}
}

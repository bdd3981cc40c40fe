package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTB records how a test ended; Fatalf and Skip end it by panicking, as
// the real ones end the goroutine.
type fakeTB struct {
	testing.TB
	name  string
	ended string // "fatal" or "skip"
	msg   string
}

type stop struct{}

func (f *fakeTB) Helper()             {}
func (f *fakeTB) Name() string        { return f.name }
func (f *fakeTB) Logf(string, ...any) {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.ended, f.msg = "fatal", format
	panic(stop{})
}
func (f *fakeTB) Skip(args ...any) {
	f.ended = "skip"
	panic(stop{})
}

func run(f *fakeTB, reason string) {
	defer func() {
		if r := recover(); r != nil && r != (stop{}) {
			panic(r)
		}
	}()
	Skip(f, "%s", reason)
	f.ended = "returned"
}

func TestSkip(t *testing.T) {
	cases := []struct {
		ci, allow, name string
		want, kind      string
	}{
		{"", "", "TestX", "skip", "skip"},
		{"false", "", "TestX/sub", "skip", "skip"},
		{"true", "", "TestX", "fatal", ""},
		{"true", "TestY", "TestX/sub", "fatal", ""},
		{"true", "TestY,TestX", "TestX/sub", "skip", "ci-exception"},
		{"true", "TestX/sub", "TestX/sub", "fatal", ""}, // top-level names only
	}
	for _, tc := range cases {
		t.Run(tc.ci+"_"+tc.allow+"_"+tc.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "skips")
			t.Setenv("CI", tc.ci)
			t.Setenv("SSI_CI_SKIP", tc.allow)
			t.Setenv("SSI_SKIP_LOG", log)
			f := &fakeTB{name: tc.name}
			run(f, "needs root")
			if f.ended != tc.want {
				t.Fatalf("ended %q, want %q", f.ended, tc.want)
			}
			b, err := os.ReadFile(log)
			if tc.kind == "" {
				if err == nil {
					t.Fatalf("a failure was recorded as a skip: %q", b)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f2 := strings.Split(strings.TrimSuffix(string(b), "\n"), "\t")
			if len(f2) != 3 || f2[0] != tc.name || f2[1] != tc.kind || !strings.HasSuffix(f2[2], "needs root") {
				t.Fatalf("skip log %q", b)
			}
		})
	}
}

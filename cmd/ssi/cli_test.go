package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1048576": 1 << 20, "512M": 512 << 20, "512m": 512 << 20, "1.5G": 3 << 29,
		"2GiB": 2 << 30, "64MB": 64 << 20, "1T": 1 << 40, "10K": 10 << 10, " 8M ": 8 << 20, "100B": 100,
	}
	for in, want := range good {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "12XB", "-5M", "1.2.3G", "abc", "1e3", "99999999999T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512M", "1.5G", "0", "12XB", "9999999999999999999T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("parseSize(%q) = %d: negative size accepted", s, n)
		}
	})
}

func TestHumanBytes(t *testing.T) {
	for in, want := range map[int64]string{0: "0B", 1023: "1023B", 1536: "1.5K", 7 << 20: "7.0M", 300 << 20: "300M", 24 << 30: "24G"} {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestElapsed(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		5 * time.Second: "00:05", 61 * time.Minute: "01:01:00", 49*time.Hour + 2*time.Second: "2-01:00:02",
	} {
		if got := elapsed(pidtable.Proc{Started: start}, start.Add(d)); got != want {
			t.Errorf("elapsed(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestResolveEndpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.json")
	if err := os.WriteFile(cfg, []byte(`{"endpoint":"http://10.0.0.1:7070"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"endpoint":`), 0o600); err != nil {
		t.Fatal(err)
	}
	envOf := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		name      string
		flag      string
		env       map[string]string
		want, src string
		wantErr   string
	}{
		{"flag wins", "http://a:1", map[string]string{"SSI_ENDPOINT": "http://b:2"}, "http://a:1", "--endpoint", ""},
		{"env next", "", map[string]string{"SSI_ENDPOINT": "http://b:2", "SSI_CONFIG": cfg}, "http://b:2", "SSI_ENDPOINT", ""},
		{"config file", "", map[string]string{"SSI_CONFIG": cfg}, "http://10.0.0.1:7070", cfg, ""},
		{"malformed config", "", map[string]string{"SSI_CONFIG": bad}, "", "", "config " + bad},
		{"nothing", "", map[string]string{"SSI_CONFIG": filepath.Join(dir, "none.json")}, "", "", "no cluster configured"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := &env{getenv: envOf(c.env), endpoint: c.flag}
			got, src, err := e.resolveEndpoint()
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want || src != c.src {
				t.Fatalf("got %q from %q (%v), want %q from %q", got, src, err, c.want, c.src)
			}
		})
	}
}

// TestUsageErrors: argument mistakes exit 2 with one line, before any network use.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"run"}, {"run", "--memory", "lots", "--", "x"}, {"run", "--nope"}, {"kill"}, {"kill", "0"},
		{"kill", "-s", "SIGWHAT", "3"}, {"wait", "x"}, {"logs", "1", "2"}, {"ps", "-o", "yaml"}, {"nodes", "-o", "wide"},
		{"run", "--constraint", "novalue", "--", "x"}, {"run", "--placement", "best", "--", "x"},
		{"balance"}, {"balance", "foo"}, {"balance", "on", "off"}, {"balance", "status", "--residency", "1s"},
		{"balance", "on", "--hysteresis", "-1"}, {"balance", "status", "-o", "yaml"},
		{"events", "--gpid", "x"}, {"events", "--gpid", "0"}, {"events", "-o", "wide"}, {"events", "extra"},
		{"agent", "--name", "n", "--listen", "127.0.0.1:1", "--data-dir", "/tmp/x", "--cpuset", "99"},
		{"agent", "--name", "n", "--listen", "127.0.0.1:1", "--data-dir", "/tmp/x", "--cpuset", "0-x"},
	} {
		var out, errb bytes.Buffer
		e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, endpoint: "http://127.0.0.1:1"}
		root := newRoot(e)
		root.SetArgs(args)
		err := root.ExecuteContext(context.Background())
		ee, ok := err.(*exitError)
		if !ok || ee.code != exitUsage {
			t.Errorf("%v: err %v, want a usage error (exit 2)", args, err)
		}
	}
}

func TestDescribeStatus(t *testing.T) {
	cases := map[string]api.ExitStatus{
		"exited 0":                {State: pidtable.Exited, Code: 0},
		"exited 137 (SIGKILL)":    {State: pidtable.Exited, Code: 137},
		"lost: machine went away": {State: pidtable.Lost, Code: -1, Error: "machine went away"},
	}
	for want, st := range cases {
		if got := describeStatus(st); got != want {
			t.Errorf("describeStatus(%+v) = %q, want %q", st, got, want)
		}
	}
}

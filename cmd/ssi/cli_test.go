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
	"github.com/ssi-cluster/ssi/internal/display"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
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

func FuzzParseLabels(f *testing.F) {
	f.Add("a=b", "c=")
	f.Add("=x", "novalue")
	f.Fuzz(func(t *testing.T, a, b string) {
		m, err := parseLabels("--label", []string{a, b})
		if err != nil {
			return
		}
		for k := range m {
			if k == "" {
				t.Fatalf("parseLabels(%q, %q) accepted an empty key", a, b)
			}
		}
	})
}

func TestHumanBytes(t *testing.T) {
	for in, want := range map[int64]string{0: "0B", 1023: "1023B", 1536: "1.5K", 7 << 20: "7.0M", 300 << 20: "300M", 24 << 30: "24G"} {
		if got := display.Bytes(in); got != want {
			t.Errorf("display.Bytes(%d) = %q, want %q", in, got, want)
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

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("t")
	if err != nil {
		t.Fatal(err)
	}
	uc, err := pki.NewUserConfig(ca, "10.0.0.1:7070", "alice", false, pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.json")
	if err := uc.Write(cfg); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.json")
	if err := uc.Write(open); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(open, 0o644)
	old := filepath.Join(dir, "old.json")
	if err := os.WriteFile(old, []byte(`{"endpoint":"http://10.0.0.1:7070"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	envOf := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		name      string
		flag      string
		insecure  bool
		env       map[string]string
		want, src string
		wantErr   string
	}{
		{"config file", "", false, map[string]string{"SSI_CONFIG": cfg}, "10.0.0.1:7070", cfg, ""},
		{"flag overrides the server", "a:1", false, map[string]string{"SSI_ENDPOINT": "b:2", "SSI_CONFIG": cfg}, "a:1", "--endpoint", ""},
		{"env next", "", false, map[string]string{"SSI_ENDPOINT": "b:2", "SSI_CONFIG": cfg}, "b:2", "SSI_ENDPOINT", ""},
		{"key readable by others", "", false, map[string]string{"SSI_CONFIG": open}, "", "", "chmod 600"},
		{"old insecure config", "", false, map[string]string{"SSI_CONFIG": old}, "", "", "a config from before mutual TLS"},
		{"nothing", "", false, map[string]string{"SSI_CONFIG": filepath.Join(dir, "none.json")}, "", "", "no cluster configured"},
		{"no credentials, endpoint only", "", false, map[string]string{"SSI_ENDPOINT": "b:2", "SSI_CONFIG": filepath.Join(dir, "none.json")}, "", "", "no cluster configured"},
		{"insecure", "http://a:1", true, map[string]string{"SSI_CONFIG": old}, "http://a:1", "--endpoint", ""},
		{"insecure without endpoint", "", true, map[string]string{"SSI_CONFIG": old}, "", "", "--insecure: no endpoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := &env{getenv: envOf(c.env), endpoint: c.flag, insecure: c.insecure}
			got, err := e.resolve()
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got.endpoint != c.want || got.source != c.src || (got.cfg == nil) != c.insecure {
				t.Fatalf("got %+v (%v), want %q from %q", got, err, c.want, c.src)
			}
		})
	}
}

// TestUsageErrors: argument mistakes exit 2 with one line, before any network use.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"run"}, {"run", "--memory", "lots", "--", "x"}, {"run", "--nope"}, {"kill"}, {"kill", "0"},
		{"kill", "-s", "SIGWHAT", "3"}, {"wait", "x"}, {"logs", "1", "2"}, {"ps", "-o", "yaml"}, {"nodes", "-o", "yaml"},
		{"run", "--constraint", "novalue", "--", "x"}, {"run", "--placement", "best", "--", "x"},
		{"balance"}, {"balance", "foo"}, {"balance", "on", "off"}, {"balance", "status", "--residency", "1s"},
		{"balance", "on", "--hysteresis", "-1"}, {"balance", "status", "-o", "yaml"},
		{"balance", "on", "--max-moves", "-1"}, {"balance", "status", "--max-moves", "2"},
		{"events", "--gpid", "x"}, {"events", "--gpid", "0"}, {"events", "-o", "wide"}, {"events", "extra"}, {"events", "--type", "run,bogus"},
		{"agent", "--name", "n", "--listen", "127.0.0.1:1", "--data-dir", "/tmp/x", "--cpuset", "99"},
		{"agent", "--name", "n", "--listen", "127.0.0.1:1", "--data-dir", "/tmp/x", "--cpuset", "0-x"},
		{"node", "cordon"}, {"node", "cordon", "a", "b"}, {"node", "uncordon", "bad name"}, {"node", "label", "n1"},
		{"node", "label", "n1", "novalue"}, {"node", "label", "n1", "=x"}, {"node", "drain"}, {"node", "drain", "n1", "--parallel", "-1"},
		{"node", "drain", "n1", "--cancel", "--force"}, {"node", "drain", "n1", "--status", "--wait"}, {"node", "drain", "n1", "-o", "yaml"}, {"node", "rm"},
		{"timers", "-o", "yaml"}, {"timers", "x"}, {"timer", "status"}, {"timer", "status", "t", "-o", "yaml"}, {"timer", "run", "a", "b"},
		{"timer", "run", "t", "-o", "wide"}, {"timer", "rm"},
	} {
		var out, errb bytes.Buffer
		e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, endpoint: "127.0.0.1:1"}
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

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func runSimCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	root := newRoot(e)
	root.SetArgs(append([]string{"sim"}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// TestSimUsageErrors: bad input exits 2 with a message naming the flag and the rule.
func TestSimUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "0"}, "--nodes 0: must be between 1"},
		{[]string{"--load", "-1"}, "--load -1: must be a number above 0"},
		{[]string{"--scenarios", "fastest"}, `unknown scenario "fastest" (choose from none, random`},
		{[]string{"--origins", "1.5"}, "--origins 1.5: must be in (0, 1]"},
		{[]string{"--max-inflight", "-1"}, "--max-inflight -1: must be ≥ 0"},
		{[]string{"--memory", "lots"}, "--memory: invalid size"},
		{[]string{"-o", "yaml"}, `-o "yaml": want table, json or markdown`},
		{[]string{"--loads", "0.5,x"}, `--loads: "x" is not a load above 0`},
		{[]string{"--min-work", "10s", "--max-work", "1s"}, "--max-work 1s: must be at least --min-work"},
	}
	for _, c := range cases {
		_, _, err := runSimCLI(t, c.args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitUsage {
			t.Errorf("%v: err %v, want a usage error (exit 2)", c.args, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %q does not say %q", c.args, err, c.want)
		}
	}
}

func TestSimSmall(t *testing.T) {
	out, _, err := runSimCLI(t, "--nodes", "20", "--jobs", "500", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rs []struct {
		Scenario     string  `json:"scenario"`
		Jobs         int     `json:"jobs"`
		MeanSlowdown float64 `json:"mean_slowdown"`
	}
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if len(rs) != 6 || rs[0].Scenario != "none" || rs[0].Jobs != 500 || rs[0].MeanSlowdown < 1 {
		t.Fatalf("unexpected results %+v", rs)
	}
	out, _, err = runSimCLI(t, "--nodes", "20", "--jobs", "200", "--scenarios", "random,balance")
	if err != nil || !strings.Contains(out, "MEAN SLOWDOWN") || !strings.Contains(out, "balance") {
		t.Fatalf("table: %v\n%s", err, out)
	}
}

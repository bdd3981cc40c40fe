package benchkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSeriesJSON(t *testing.T) {
	s := NewSeries("64 MiB", "raw dump", "s", []float64{0.3, 0.1, 0.2})
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"section": "64 MiB", "name": "raw dump", "unit": "s",
		"values": []any{0.3, 0.1, 0.2},
		"n":      3, "median": 0.2, "p90": 0.3, "min": 0.1, "max": 0.3,
	}
	if !jsonEqual(got, want) {
		t.Errorf("series JSON = %s, want %v", b, want)
	}

	// No values: an empty list and null figures, never a made-up 0.
	b, err = json.Marshal(NewSeries("", "x", "s", nil))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"values":[]`)) || !bytes.Contains(b, []byte(`"median":null`)) || !bytes.Contains(b, []byte(`"n":0`)) || bytes.Contains(b, []byte(`"section"`)) {
		t.Errorf("empty series JSON = %s", b)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// fake is a Benchmark for Main.
type fake struct {
	err      error
	ran      bool
	deadline bool
	gotErr   error
}

func (f *fake) Run(ctx context.Context) error {
	f.ran = true
	_, f.deadline = ctx.Deadline()
	return f.err
}

func (f *fake) WriteMarkdown(w io.Writer, runErr error) {
	f.gotErr = runErr
	io.WriteString(w, "| a |\n")
}

func (f *fake) Result() Result {
	r, _ := NewRatio("on/off", 1, 1, 2, 1, 0.6)
	return Result{
		Machine: Machine{CPUs: 2, CRIU: "criu 4.2.1", LoadAvg: "0.1 0.2 0.3"},
		Series:  []Series{NewSeries("equal", "makespan off", "s", []float64{2})},
		Ratios:  []Ratio{r},
	}
}

func TestMainResultFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "result.json")
	fs := flag.NewFlagSet("benchbalance", flag.ContinueOnError)
	fs.Int("runs", 3, "")
	if err := fs.Parse([]string{"-runs", "1"}); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	f := &fake{}
	code := run(context.Background(), Config{Program: "benchbalance", Timeout: time.Minute, JSON: path, Flags: fs, Stdout: &out, Stderr: &errb}, f)
	if code != 0 || !f.ran || !f.deadline || f.gotErr != nil {
		t.Fatalf("exit %d, ran %v, deadline %v, report error %v; stderr %q", code, f.ran, f.deadline, f.gotErr, errb.String())
	}
	if out.String() != "| a |\n" {
		t.Errorf("stdout %q, want the markdown report", out.String())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	// The shape other tools read: these keys, and no error key on success.
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"command", "flags", "load_avg_end", "machine", "notes", "program", "ratios", "seconds", "series"}
	if !slices.Equal(keys, want) {
		t.Errorf("result keys %v, want %v", keys, want)
	}
	var res struct {
		Program string            `json:"program"`
		Flags   map[string]string `json:"flags"`
		Machine struct {
			CPUs int    `json:"cpus"`
			CRIU string `json:"criu"`
		} `json:"machine"`
		Series []struct {
			Name   string   `json:"name"`
			N      int      `json:"n"`
			Median *float64 `json:"median"`
		} `json:"series"`
		Ratios []struct {
			Value  float64 `json:"value"`
			Target float64 `json:"target"`
			Met    *bool   `json:"met"`
		} `json:"ratios"`
		Notes []string `json:"notes"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	if res.Program != "benchbalance" || res.Flags["runs"] != "1" || res.Machine.CPUs != 2 || res.Machine.CRIU != "criu 4.2.1" {
		t.Errorf("result %s", raw)
	}
	if len(res.Series) != 1 || res.Series[0].N != 1 || res.Series[0].Median == nil || *res.Series[0].Median != 2 {
		t.Errorf("series %+v", res.Series)
	}
	if len(res.Ratios) != 1 || res.Ratios[0].Value != 0.5 || res.Ratios[0].Target != 0.6 || res.Ratios[0].Met == nil || !*res.Ratios[0].Met {
		t.Errorf("ratios %+v", res.Ratios)
	}
	if res.Notes == nil {
		t.Error("notes: null, want []")
	}
}

func TestMainFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "result.json")
	var out, errb bytes.Buffer
	f := &fake{err: errors.New("cluster up: boom")}
	code := run(context.Background(), Config{Program: "bench", Timeout: time.Minute, JSON: path, Flags: flag.NewFlagSet("x", flag.ContinueOnError), Stdout: &out, Stderr: &errb}, f)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if f.gotErr == nil || !strings.Contains(errb.String(), "bench: cluster up: boom") {
		t.Errorf("report got %v, stderr %q", f.gotErr, errb.String())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"error": "cluster up: boom"`)) {
		t.Errorf("result has no error: %s", raw)
	}
}

func TestMainInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := &fake{err: context.Canceled}
	var out, errb bytes.Buffer
	if code := run(ctx, Config{Program: "bench", Timeout: time.Minute, Stdout: &out, Stderr: &errb}, f); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "interrupted by a signal") {
		t.Errorf("stderr %q", errb.String())
	}
}

func TestTable(t *testing.T) {
	tb := NewTable("what", "n:", "median:")
	var b strings.Builder
	if err := tb.Write(&b); err != nil || b.Len() != 0 {
		t.Errorf("empty table wrote %q", b.String())
	}
	tb.Add("`ssi ps -A`", "50", "12.3 ms")
	tb.Add("a|b", "0")
	if err := tb.Write(&b); err != nil {
		t.Fatal(err)
	}
	want := "| what | n | median |\n|---|--:|--:|\n| `ssi ps -A` | 50 | 12.3 ms |\n| a\\|b | 0 |  |\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

package benchkit

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// Result is a benchmark's figures in the JSON result file (-json). Main fills
// Program, Command, Flags, Seconds, LoadAvgEnd and Error; the benchmark the
// rest.
type Result struct {
	Program    string            `json:"program"` // bench, benchmigrate, benchbalance
	Command    string            `json:"command"`
	Flags      map[string]string `json:"flags"` // every flag, defaults included
	Machine    Machine           `json:"machine"`
	Seconds    float64           `json:"seconds"` // the whole run, teardown included
	LoadAvgEnd string            `json:"load_avg_end"`
	Series     []Series          `json:"series"`
	Ratios     []Ratio           `json:"ratios"`
	Notes      []string          `json:"notes"`
	// Error says why the run did not complete; the figures are then partial.
	Error string `json:"error,omitempty"`
}

// Series is one measured figure: every value of it and their summary.
type Series struct {
	// Section groups series as the report does ("1. `ssi run` latency",
	// "512 MiB").
	Section string `json:"section,omitempty"`
	Name    string `json:"name"`
	Unit    string `json:"unit"` // "s", "jobs/s", "MiB", ...
	// Values are in measurement order; Stats summarises them.
	Values []float64      `json:"values"`
	Stats  Stats[float64] `json:"-"`
	// Failed counts runs that failed and have no value.
	Failed int `json:"failed,omitempty"`
}

// NewSeries returns the series of values, summarised.
func NewSeries(section, name, unit string, values []float64) Series {
	if values == nil {
		values = []float64{}
	}
	return Series{Section: section, Name: name, Unit: unit, Values: values, Stats: Summarize(values)}
}

// MarshalJSON writes the summary beside the values: n, median, p90, min,
// max (null without values).
func (s Series) MarshalJSON() ([]byte, error) {
	type plain Series
	out := struct {
		plain
		N      int      `json:"n"`
		Median *float64 `json:"median"`
		P90    *float64 `json:"p90"`
		Min    *float64 `json:"min"`
		Max    *float64 `json:"max"`
	}{plain: plain(s), N: s.Stats.N}
	if s.Stats.N > 0 {
		st := s.Stats
		out.Median, out.P90, out.Min, out.Max = &st.Median, &st.P90, &st.Min, &st.Max
	}
	return json.Marshal(out)
}

// finish completes a benchmark's result with what Main knows.
func (r *Result) finish(program string, fs *flag.FlagSet, took time.Duration, runErr error) {
	r.Program = program
	r.Command = Command(program)
	r.Flags = map[string]string{}
	if fs != nil {
		fs.VisitAll(func(f *flag.Flag) { r.Flags[f.Name] = f.Value.String() })
	}
	r.Seconds = took.Seconds()
	r.LoadAvgEnd = LoadAvg()
	if runErr != nil {
		r.Error = runErr.Error()
	}
	if r.Series == nil {
		r.Series = []Series{}
	}
	if r.Ratios == nil {
		r.Ratios = []Ratio{}
	}
	if r.Notes == nil {
		r.Notes = []string{}
	}
}

// Command is how this run was started, as the reports quote it: "go run
// ./hack/PROGRAM" and the arguments.
func Command(program string) string {
	return strings.TrimSpace("go run ./hack/" + program + " " + strings.Join(os.Args[1:], " "))
}

// WriteJSON writes r to path, indented, through a temporary file renamed
// into place.
func WriteJSON(path string, r Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("benchkit: encode the result: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("benchkit: write the result: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("benchkit: write the result: %w", err)
	}
	return nil
}

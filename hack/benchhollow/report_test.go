package main

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSVG: the plot is well-formed XML with a point per configuration and
// figure, and the lease TTL drawn in the kill panel.
func TestSVG(t *testing.T) {
	b := &bench{o: options{}}
	b.rep.commit = "abc<1>"
	for i, c := range []config{{10, 1000}, {1000, 100_000}} {
		b.rep.results = append(b.rep.results, &configResult{
			config: c, fill: time.Second, jobs: c.records,
			run: []float64{0.1, 0.2}, notice: []float64{4.5, 5.1}, rounds: []float64{1, 2, float64(i)},
			leaderCPU: 3, node1CPU: 40, dbSize: 12, windowed: true, dbMeasured: true,
		})
	}
	svg := b.svg()
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, svg)
		}
	}
	if n := strings.Count(svg, "<circle"); n != 6*2 {
		t.Fatalf("%d points, want 12", n)
	}
	for _, want := range []string{"stroke-dasharray", "1000 nodes", "100k jobs", "abc&lt;1&gt;"} {
		if !strings.Contains(svg, want) {
			t.Fatalf("plot lacks %q", want)
		}
	}
	var md strings.Builder
	b.WriteMarkdown(&md, nil)
	if !strings.Contains(md.String(), "| 1000 | 100000 |") || !strings.Contains(md.String(), "100000") {
		t.Fatalf("markdown:\n%s", md.String())
	}
}

// TestReplot: the -json result of a run gives back its figures, sorted by
// records then nodes, without the configurations cut short.
func TestReplot(t *testing.T) {
	b := &bench{}
	b.rep.results = []*configResult{
		{config: config{1000, 1000}, run: []float64{0.4}, notice: []float64{4}, lag: []float64{1}, rounds: []float64{5}, leaderCPU: 7, dbSize: 37, leaseLosses: 12, windowed: true, dbMeasured: true},
		{config: config{10, 1000}, run: []float64{0.06}, rounds: []float64{3}, leaderCPU: 2, windowed: true},
		{config: config{100, 100_000}}, // cut short
	}
	raw, err := json.Marshal(b.Result())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := replot([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].config != (config{10, 1000}) || got[1].config != (config{1000, 1000}) {
		t.Fatalf("configs: %+v", got)
	}
	c := got[1]
	if c.run[0] != 0.4 || c.lag[0] != 1 || c.leaderCPU != 7 || !c.windowed || !c.dbMeasured || c.dbSize != 37 || c.leaseLosses != 12 {
		t.Fatalf("figures: %+v", c)
	}
	if got[0].dbMeasured {
		t.Fatalf("db size 0 taken as measured: %+v", got[0])
	}
}

package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// stats summarises durations (n, median, p90, min, max).
type stats = benchkit.Stats[time.Duration]

// kv is a line of "Other timings".
type kv struct{ k, v string }

// memRow is a line of a memory table.
type memRow struct {
	label string
	jobs  int
	m     memSample
}

// section is one measurement's part of the report.
type section struct {
	title    string
	showSize bool
	cpu      cpuUse
	rows     []*row
	spawns   []spawnResult
	mem      []memRow
	notes    []string
	// ratio compares a row with its peer's (`ssi run` against `sh -c true`).
	ratio *benchkit.Ratio
}

// report is what the run found.
type report struct {
	o        options
	machine  benchkit.Machine
	sections []*section
	extra    []kv
	notes    []string
}

func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f ms", ms)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func fmtSize(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func trunc(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// WriteMarkdown writes the report docs/BENCHMARKS.md quotes.
func (b *bench) WriteMarkdown(w io.Writer, runErr error) {
	r, o := b.rep, b.o
	m := r.machine
	fmt.Fprintf(w, "# ssi benchmark results\n\n")
	fmt.Fprintf(w, "- date: %s, duration %s\n", m.Started.Format(time.RFC3339), time.Since(m.Started).Round(time.Second))
	fmt.Fprintf(w, "- machine: %s; commit %s\n", m, m.Commit)
	fmt.Fprintf(w, "- cluster: %s, %d nodes (network namespaces on this machine), %d runs after %d warm-up rounds per latency row, concurrency %d\n", o.cluster.Name, o.nodes, o.runs, o.warmup, o.concurrency)
	fmt.Fprintf(w, "- load average (1, 5, 15 min) at start: %s, at the end: %s\n", m.LoadAvg, benchkit.LoadAvg())
	if len(m.OtherNetns) > 0 {
		fmt.Fprintf(w, "- other network namespaces on the machine (other clusters share the CPUs): %s\n", strings.Join(m.OtherNetns, ", "))
	}
	if runErr != nil {
		fmt.Fprintf(w, "\n**The benchmark did not complete: %v. Results below are partial.**\n", runErr)
	}
	for _, s := range r.sections {
		fmt.Fprintf(w, "\n## %s\n\n", s.title)
		if c := s.cpu.String(); c != "" {
			fmt.Fprintf(w, "%s\n\n", c)
		}
		notes := s.writeTables(w)
		for _, n := range append(notes, s.notes...) {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
	if len(r.extra) > 0 {
		fmt.Fprintf(w, "\n## Other timings\n\n")
		for _, e := range r.extra {
			fmt.Fprintf(w, "- %s: %s\n", e.k, e.v)
		}
	}
	for _, n := range r.notes {
		fmt.Fprintf(w, "\n**Note:** %s\n", n)
	}
}

// writeTables writes the section's latency, spawn and memory tables and
// returns the notes they call for (rows cut short, failures).
func (s *section) writeTables(w io.Writer) (notes []string) {
	if len(s.rows) > 0 {
		cols := []string{"what", "n:", "median:", "p90:", "min:", "max:"}
		if s.showSize {
			cols = append(cols, "output:")
		}
		t := benchkit.NewTable(cols...)
		for _, rw := range s.rows {
			st := rw.st
			name := rw.name
			if rw.errs > 0 {
				name += fmt.Sprintf(" (%d failed: %s)", rw.errs, trunc(rw.first, 120))
			}
			cells := []string{name, "0", "-", "-", "-", "-"}
			if st.N > 0 {
				cells = []string{name, strconv.Itoa(st.N), fmtDur(st.Median), fmtDur(st.P90), fmtDur(st.Min), fmtDur(st.Max)}
			}
			if s.showSize {
				size := ""
				if rw.size > 0 {
					size = fmtSize(rw.size)
				}
				cells = append(cells, size)
			}
			t.Add(cells...)
			if rw.cut != "" {
				notes = append(notes, fmt.Sprintf("%s: %s.", rw.name, rw.cut))
			}
		}
		_ = t.Write(w)
		fmt.Fprintln(w)
	}
	if len(s.spawns) > 0 {
		t := benchkit.NewTable("run:", "jobs started / asked:", "failed:", "records in table before:", "wall (first submit → last gpid):", "**jobs/s**:", "CLI latency median:", "p90:", "max:", "CPU per job: CLI / agents+etcd / shim+init:", "per node", "kill + drain:")
		for i, sr := range s.spawns {
			st := benchkit.Summarize(sr.perCall)
			nodes := make([]string, 0, len(sr.perNode))
			for k, v := range sr.perNode {
				nodes = append(nodes, fmt.Sprintf("%s %d", k, v))
			}
			slices.Sort(nodes)
			drain := "-"
			if sr.drain > 0 {
				drain = fmt.Sprintf("%.1f s", sr.drain.Seconds())
			}
			cpu := "-"
			if sr.ok > 0 {
				per := func(sec float64) string { return fmt.Sprintf("%.1f", 1000*sec/float64(sr.ok)) }
				cpu = fmt.Sprintf("%s / %s / %s ms", per(sr.cpuCLI), per(sr.cpuAgents), per(sr.cpuJobs))
			}
			t.Add(strconv.Itoa(i+1), fmt.Sprintf("%d / %d", sr.ok, sr.requested), strconv.Itoa(sr.failed), strconv.Itoa(sr.tableBefore),
				fmt.Sprintf("%.2f s", sr.wall.Seconds()), fmt.Sprintf("**%.1f**", sr.rate()),
				fmtDur(st.Median), fmtDur(st.P90), fmtDur(st.Max), cpu, strings.Join(nodes, ", "), drain)
			if sr.firstErr != "" {
				notes = append(notes, fmt.Sprintf("run %d: first failure: %s", i+1, trunc(sr.firstErr, 300)))
			}
			if sr.stopped != "" {
				notes = append(notes, fmt.Sprintf("run %d stopped early: %s", i+1, sr.stopped))
			}
		}
		_ = t.Write(w)
		fmt.Fprintln(w)
	}
	if len(s.mem) > 0 {
		t := benchkit.NewTable("memory", "shims:", "inits:", "RSS shim (avg):", "RSS init (avg):", "**RSS per job**:", "PSS per job:", "MemAvailable drop per job:", "agents' RSS (sum):", "MemAvailable:")
		for _, mr := range s.mem {
			x := mr.m
			avg := func(sum int64, n int) string {
				if n == 0 {
					return "-"
				}
				return mib(sum / int64(n))
			}
			t.Add(mr.label, strconv.Itoa(x.shims), strconv.Itoa(x.inits),
				avg(x.shimRSS, x.shims), avg(x.initRSS, x.inits), "**"+avg(x.shimRSS+x.initRSS, mr.jobs)+"**",
				avg(x.shimPSS+x.initPSS, mr.jobs), avg(x.availDrop, mr.jobs), mib(x.agentRSS), mib(x.avail))
		}
		_ = t.Write(w)
		fmt.Fprintln(w)
	}
	return notes
}

// Result returns every latency row, every spawn repetition's throughput and
// per-call latency, and the ratio of `ssi run` to `sh -c true`.
func (b *bench) Result() benchkit.Result {
	r := b.rep
	res := benchkit.Result{Machine: r.machine, Notes: slices.Clone(r.notes)}
	for _, s := range r.sections {
		for _, rw := range s.rows {
			ser := benchkit.NewSeries(s.title, rw.name, "s", benchkit.Seconds(rw.durs))
			ser.Failed = rw.errs
			res.Series = append(res.Series, ser)
		}
		var rates []float64
		for i, sr := range s.spawns {
			rates = append(rates, sr.rate())
			res.Series = append(res.Series, benchkit.NewSeries(s.title, fmt.Sprintf("run %d: CLI latency of `ssi run -d`", i+1), "s", benchkit.Seconds(sr.perCall)))
		}
		if len(rates) > 0 {
			res.Series = append(res.Series, benchkit.NewSeries(s.title, "spawn throughput", "jobs/s", rates))
		}
		if s.ratio != nil {
			res.Ratios = append(res.Ratios, *s.ratio)
		}
		for _, n := range s.notes {
			res.Notes = append(res.Notes, s.title+": "+n)
		}
	}
	for _, e := range r.extra {
		res.Notes = append(res.Notes, e.k+": "+e.v)
	}
	return res
}

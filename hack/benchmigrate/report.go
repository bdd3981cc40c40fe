package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// report is what the run found.
type report struct {
	machine     benchkit.Machine
	python      string
	pipeMaxSize string // fs.pipe-max-size at start (post-copy raises it to 4 MiB)
	sizes       []*sizeResult
	notes       []string
}

// dist is the summary of one figure over the samples of one method.
type dist = benchkit.Stats[float64]

// of collects f over the samples of method m.
func (r *sizeResult) of(m method, f func(sample) float64) dist {
	return benchkit.Summarize(r.values(m, f))
}

// values are f over the samples of method m, in measurement order.
func (r *sizeResult) values(m method, f func(sample) float64) []float64 {
	xs := []float64{}
	for _, s := range r.samples {
		if s.method == m {
			xs = append(xs, f(s))
		}
	}
	return xs
}

// secs is "median (min–max)" in seconds.
func secs(d dist) string {
	if d.N == 0 {
		return "–"
	}
	p := 2
	if d.Median < 1 {
		p = 3
	}
	return fmt.Sprintf("%.*f (%.*f–%.*f)", p, d.Median, p, d.Min, p, d.Max)
}

// med is the median in seconds.
func med(d dist) string {
	if d.N == 0 {
		return "–"
	}
	if d.Median < 1 {
		return fmt.Sprintf("%.3f", d.Median)
	}
	return fmt.Sprintf("%.2f", d.Median)
}

// ratio is num's median over den (a median, or a sum of medians), against
// target; "–" without samples.
func ratio(name string, num dist, den float64, denN int, target float64) (benchkit.Ratio, string) {
	r, ok := benchkit.NewRatio(name, num.Median, num.N, den, denN, target)
	if !ok {
		return r, "–"
	}
	return r, r.String()
}

func sec(d time.Duration) float64 { return d.Seconds() }

// Figures of a sample, by name, for the tables and the JSON series.
var (
	rawDump     = func(x sample) float64 { return sec(x.dump) }
	rawRestore  = func(x sample) float64 { return sec(x.restore) }
	rawBoth     = func(x sample) float64 { return sec(x.dump + x.restore) }
	ssiFrozen   = func(x sample) float64 { return x.stats.FrozenMS / 1000 }
	ssiTotal    = func(x sample) float64 { return x.stats.TotalMS / 1000 }
	ssiPages    = func(x sample) float64 { return x.stats.PagesMS / 1000 }
	noFigure    = func(sample) float64 { return 0 }
	readyFigure = func(x sample) float64 { return sec(x.ready) }
)

// ratios are the targets for a move: frozen / raw dump (1.1) and
// total / (raw dump + raw restore) (1.3), of the medians.
func (s *sizeResult) ratios(m method) (frozen, total benchkit.Ratio, frozenS, totalS string) {
	dump, rst := s.of(mRaw, rawDump), s.of(mRaw, rawRestore)
	frozen, frozenS = ratio(fmt.Sprintf("%d MiB %s: frozen / raw dump", s.size, m), s.of(m, ssiFrozen), dump.Median, dump.N, 1.1)
	total, totalS = ratio(fmt.Sprintf("%d MiB %s: total / raw dump+restore", s.size, m), s.of(m, ssiTotal), dump.Median+rst.Median, min(dump.N, rst.N), 1.3)
	return frozen, total, frozenS, totalS
}

// WriteMarkdown writes the report docs/BENCHMARKS-migration.md quotes.
func (b *bench) WriteMarkdown(w io.Writer, runErr error) {
	r, o := &b.rep, b.o
	m := r.machine
	fmt.Fprintf(w, "# Live migration vs raw CRIU\n\n")
	fmt.Fprintf(w, "- command: `%s`\n", benchkit.Command("benchmigrate"))
	fmt.Fprintf(w, "- started %s, commit %s\n", m.Started.UTC().Format(time.RFC3339), m.Commit)
	fmt.Fprintf(w, "- machine: %s, %s, fs.pipe-max-size %s at start\n", m, r.python, r.pipeMaxSize)
	fmt.Fprintf(w, "- load average at start: %s; other local clusters' namespaces: %s\n", m.LoadAvg, listOr(m.OtherNetns, "none"))
	var ms []string
	for _, x := range o.methods {
		ms = append(ms, string(x))
	}
	fmt.Fprintf(w, "- %d warm-up + %d measured rounds per size; each round runs %s once, order rotating; figures are median (min–max) in seconds; ratios are of medians\n\n",
		o.warmup, o.runs, strings.Join(ms, ", "))

	fmt.Fprintf(w, "## Results\n\n")
	fmt.Fprintf(w, "Baseline (raw CRIU, dump to tmpfs then restore from it, no network):\n\n")
	base := benchkit.NewTable("size", "n", "raw dump s", "raw restore s", "raw dump+restore s")
	for _, s := range r.sizes {
		if s.skipped != "" {
			base.Add(fmt.Sprintf("%d MiB", s.size), "0", s.skipped)
			continue
		}
		dump := s.of(mRaw, rawDump)
		base.Add(fmt.Sprintf("%d MiB", s.size), strconv.Itoa(dump.N), secs(dump), secs(s.of(mRaw, rawRestore)), secs(s.of(mRaw, rawBoth)))
	}
	_ = base.Write(w)
	fmt.Fprintf(w, "\nMigrations (ratios: of the medians, against the raw medians of the same run):\n\n")
	moves := benchkit.NewTable("size", "method", "n", "frozen s", "total s", "of which pages s", "frozen / raw dump (target ≤ 1.1)", "total / raw dump+restore (target ≤ 1.3)")
	for _, s := range r.sizes {
		if s.skipped != "" {
			moves.Add(fmt.Sprintf("%d MiB", s.size), "", "0", s.skipped)
			continue
		}
		for _, m := range []method{mSSI, mSSIPost} {
			if !slices.Contains(o.methods, m) {
				continue
			}
			fr := s.of(m, ssiFrozen)
			pages := "–"
			if m == mSSIPost {
				pages = secs(s.of(m, ssiPages))
			}
			_, _, frS, totS := s.ratios(m)
			moves.Add(fmt.Sprintf("%d MiB", s.size), string(m), strconv.Itoa(fr.N), secs(fr), secs(s.of(m, ssiTotal)), pages, frS, totS)
		}
	}
	_ = moves.Write(w)
	r.writeBreakdowns(w)
	r.writeRuns(w)

	var notes []string
	for _, s := range r.sizes {
		for _, n := range s.notes {
			notes = append(notes, fmt.Sprintf("%d MiB: %s", s.size, n))
		}
	}
	notes = append(notes, r.notes...)
	if runErr != nil {
		notes = append(notes, fmt.Sprintf("the benchmark stopped early: %v", runErr))
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n## Notes\n\n")
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// writeRuns writes CRIU's own figures, the noise and every run.
func (r *report) writeRuns(w io.Writer) {
	fmt.Fprintf(w, "\n## CRIU's own figures for the raw runs (--display-stats, medians, s) and memory first touch\n\n")
	criu := benchkit.NewTable("size", "method", "dump wall", "CRIU frozen", "CRIU memory write", "restore wall", "CRIU restore", "job start → ready (touching N MiB)")
	for _, s := range r.sizes {
		for _, mm := range []method{mRaw, mRawKeep, mSSI, mSSIPost} {
			if s.of(mm, noFigure).N == 0 {
				continue
			}
			size := fmt.Sprintf("%d MiB", s.size)
			if mm.isSSI() {
				criu.Add(size, string(mm), "", "", "", "", "", med(s.of(mm, readyFigure)))
				continue
			}
			criu.Add(size, string(mm),
				med(s.of(mm, rawDump)),
				med(s.of(mm, func(x sample) float64 { return sec(x.criuFrozen) })),
				med(s.of(mm, func(x sample) float64 { return sec(x.criuMemWrite) })),
				med(s.of(mm, rawRestore)),
				med(s.of(mm, func(x sample) float64 { return sec(x.criuRestore) })),
				med(s.of(mm, readyFigure)))
		}
	}
	_ = criu.Write(w)

	fmt.Fprintf(w, "\n## Noise\n\n")
	noise := benchkit.NewTable("size", "took", "load avg start → end", "CPU busy (all CPUs)", "CPU steal", "free memory reported to the hypervisor meanwhile")
	for _, s := range r.sizes {
		if s.skipped != "" {
			continue
		}
		rep := "unknown"
		if s.noise.reportedMiB >= 0 {
			rep = fmt.Sprintf("%d MiB", s.noise.reportedMiB)
		}
		noise.Add(fmt.Sprintf("%d MiB", s.size), s.noise.took.Round(time.Second).String(), s.noise.loadStart+" → "+s.noise.loadEnd,
			fmt.Sprintf("%.0f%%", 100*s.noise.busy), fmt.Sprintf("%.1f%%", 100*s.noise.steal), rep)
	}
	_ = noise.Write(w)

	fmt.Fprintf(w, "\n## Every run (s)\n\n")
	every := benchkit.NewTable("size", "round", "method", "dump", "stream in-process", "transfer", "restore", "frozen", "pages", "total", "image MiB", "lazy MiB")
	f3 := func(x float64) string { return fmt.Sprintf("%.3f", x) }
	for _, s := range r.sizes {
		for _, x := range append(slices.Clone(s.warm), s.samples...) {
			size, round := fmt.Sprintf("%d MiB", s.size), strconv.Itoa(x.round)
			if x.round <= 0 {
				round = "warm-up"
			}
			if x.method.isSSI() {
				pages, lazy := "", ""
				if x.stats.PostCopy {
					pages, lazy = f3(x.stats.PagesMS/1000), strconv.FormatInt(x.stats.LazyBytes>>20, 10)
				}
				every.Add(size, round, string(x.method), f3(x.stats.DumpMS/1000), "", f3(x.stats.TransferMS/1000), f3(x.stats.RestoreMS/1000),
					f3(x.stats.FrozenMS/1000), pages, f3(x.stats.TotalMS/1000), fmt.Sprintf("%.1f", float64(x.image)/(1<<20)), lazy)
				continue
			}
			stream := ""
			if x.method == mRawKeep {
				stream = f3(x.stream.Seconds())
			}
			every.Add(size, round, string(x.method), f3(x.dump.Seconds()), stream, "", f3(x.restore.Seconds()), "", "",
				f3((x.dump + x.stream + x.restore).Seconds()), strconv.FormatInt(x.image>>20, 10), "")
		}
	}
	_ = every.Write(w)
}

// writeBreakdowns writes where the time of ssi and ssi-postcopy goes.
func (r *report) writeBreakdowns(w io.Writer) {
	fmt.Fprintf(w, "\n## Where ssi's time goes (medians, s)\n\n")
	fmt.Fprintf(w, "ssi: frozen = dump_ms + transfer_ms + restore_ms + commit and resume; total = frozen + claim and prepare before + cleanup after (kill of the stopped source copy). raw-keep: CRIU alone with a migration's memory footprint (original kept stopped, images copied once through ssi's stream codec in-process, restore while both exist), without network, HTTP or etcd.\n\n")
	t := benchkit.NewTable("size", "images MiB raw / ssi", "raw dump", "raw-keep dump", "ssi dump_ms", "raw-keep stream encode only", "raw-keep stream in-process", "ssi transfer_ms (MB/s)", "raw restore", "raw-keep restore", "ssi restore_ms", "ssi frozen − dump − transfer − restore", "raw-keep dump+stream+restore", "ssi frozen / that", "ssi total − frozen", "`ssi migrate` CLI wall")
	for _, s := range r.sizes {
		if s.skipped != "" || s.of(mSSI, noFigure).N == 0 {
			continue
		}
		ssi := func(f func(api.MigrateStats) float64) string {
			return med(s.of(mSSI, func(x sample) float64 { return f(x.stats) }))
		}
		rate := s.of(mSSI, func(x sample) float64 { return float64(x.stats.ImageBytes) / 1e6 / max(x.stats.TransferMS/1000, 1e-6) })
		keepSum := s.of(mRawKeep, func(x sample) float64 { return sec(x.dump + x.stream + x.restore) })
		keepRatio := "–"
		if frozen := s.of(mSSI, ssiFrozen); keepSum.N > 0 && frozen.N > 0 {
			keepRatio = fmt.Sprintf("%.2f×", frozen.Median/keepSum.Median)
		}
		t.Add(fmt.Sprintf("%d MiB", s.size),
			fmt.Sprintf("%.0f / %.0f", s.of(mRaw, func(x sample) float64 { return float64(x.image) / (1 << 20) }).Median, s.of(mSSI, func(x sample) float64 { return float64(x.image) / (1 << 20) }).Median),
			med(s.of(mRaw, rawDump)),
			med(s.of(mRawKeep, rawDump)),
			ssi(func(x api.MigrateStats) float64 { return x.DumpMS / 1000 }),
			med(s.of(mRawKeep, func(x sample) float64 { return sec(x.encode) })),
			med(s.of(mRawKeep, func(x sample) float64 { return sec(x.stream) })),
			fmt.Sprintf("%s (%.0f)", ssi(func(x api.MigrateStats) float64 { return x.TransferMS / 1000 }), rate.Median),
			med(s.of(mRaw, rawRestore)),
			med(s.of(mRawKeep, rawRestore)),
			ssi(func(x api.MigrateStats) float64 { return x.RestoreMS / 1000 }),
			ssi(func(x api.MigrateStats) float64 { return (x.FrozenMS - x.DumpMS - x.TransferMS - x.RestoreMS) / 1000 }),
			med(keepSum), keepRatio,
			ssi(func(x api.MigrateStats) float64 { return (x.TotalMS - x.FrozenMS) / 1000 }),
			med(s.of(mSSI, func(x sample) float64 { return sec(x.cli) })))
	}
	_ = t.Write(w)

	fmt.Fprintf(w, "\n## Where ssi-postcopy's time goes (medians, s)\n\n")
	fmt.Fprintf(w, "ssi-postcopy: frozen = dump_ms (everything but the memory; CRIU then serves the pages) + transfer_ms (those images) + restore_ms (with --lazy-pages: no memory restored) + commit and resume; pages = after the resume, until the target has all the memory (the source's page server exited); total = frozen + pages + claim and prepare before + the rest of cleanup. The pages rate is lazy_bytes / pages_ms.\n\n")
	t = benchkit.NewTable("size", "images MiB", "lazy MiB", "dump_ms", "transfer_ms", "restore_ms", "frozen − dump − transfer − restore", "frozen", "pages_ms (MB/s)", "total − frozen − pages", "total", "`ssi migrate` CLI wall")
	for _, s := range r.sizes {
		if s.skipped != "" || s.of(mSSIPost, noFigure).N == 0 {
			continue
		}
		pc := func(f func(api.MigrateStats) float64) dist {
			return s.of(mSSIPost, func(x sample) float64 { return f(x.stats) })
		}
		rate := pc(func(x api.MigrateStats) float64 { return float64(x.LazyBytes) / 1e6 / max(x.PagesMS/1000, 1e-6) })
		t.Add(fmt.Sprintf("%d MiB", s.size),
			fmt.Sprintf("%.1f", pc(func(x api.MigrateStats) float64 { return float64(x.ImageBytes) / (1 << 20) }).Median),
			fmt.Sprintf("%.0f", pc(func(x api.MigrateStats) float64 { return float64(x.LazyBytes) / (1 << 20) }).Median),
			med(pc(func(x api.MigrateStats) float64 { return x.DumpMS / 1000 })),
			med(pc(func(x api.MigrateStats) float64 { return x.TransferMS / 1000 })),
			med(pc(func(x api.MigrateStats) float64 { return x.RestoreMS / 1000 })),
			med(pc(func(x api.MigrateStats) float64 { return (x.FrozenMS - x.DumpMS - x.TransferMS - x.RestoreMS) / 1000 })),
			med(pc(func(x api.MigrateStats) float64 { return x.FrozenMS / 1000 })),
			fmt.Sprintf("%s (%.0f)", med(pc(func(x api.MigrateStats) float64 { return x.PagesMS / 1000 })), rate.Median),
			med(pc(func(x api.MigrateStats) float64 { return (x.TotalMS - x.FrozenMS - x.PagesMS) / 1000 })),
			med(pc(func(x api.MigrateStats) float64 { return x.TotalMS / 1000 })),
			med(s.of(mSSIPost, func(x sample) float64 { return sec(x.cli) })))
	}
	_ = t.Write(w)
}

// Result returns, per size, every method's main figures and the ratios
// against the targets.
func (b *bench) Result() benchkit.Result {
	r := &b.rep
	res := benchkit.Result{Machine: r.machine, Notes: slices.Clone(r.notes)}
	res.Notes = append(res.Notes, "python: "+r.python, "fs.pipe-max-size at start: "+r.pipeMaxSize)
	for _, s := range r.sizes {
		section := fmt.Sprintf("%d MiB", s.size)
		if s.skipped != "" {
			res.Notes = append(res.Notes, section+": "+s.skipped)
			continue
		}
		for _, n := range s.notes {
			res.Notes = append(res.Notes, section+": "+n)
		}
		add := func(name string, m method, f func(sample) float64) {
			if v := s.values(m, f); len(v) > 0 {
				res.Series = append(res.Series, benchkit.NewSeries(section, name, "s", v))
			}
		}
		for _, m := range []method{mRaw, mRawKeep} {
			add(string(m)+" dump", m, rawDump)
			add(string(m)+" restore", m, rawRestore)
		}
		add(string(mRawKeep)+" stream in-process", mRawKeep, func(x sample) float64 { return sec(x.stream) })
		for _, m := range []method{mSSI, mSSIPost} {
			add(string(m)+" frozen", m, ssiFrozen)
			add(string(m)+" total", m, ssiTotal)
			add(string(m)+" dump_ms", m, func(x sample) float64 { return x.stats.DumpMS / 1000 })
			add(string(m)+" transfer_ms", m, func(x sample) float64 { return x.stats.TransferMS / 1000 })
			add(string(m)+" restore_ms", m, func(x sample) float64 { return x.stats.RestoreMS / 1000 })
			add(string(m)+" CLI wall", m, func(x sample) float64 { return sec(x.cli) })
			if m == mSSIPost {
				add(string(m)+" pages_ms", m, ssiPages)
			}
			if s.of(m, noFigure).N == 0 {
				continue
			}
			frozen, total, frS, totS := s.ratios(m)
			if frS != "–" {
				res.Ratios = append(res.Ratios, frozen)
			}
			if totS != "–" {
				res.Ratios = append(res.Ratios, total)
			}
		}
	}
	return res
}

func listOr(xs []string, none string) string {
	if len(xs) == 0 {
		return none
	}
	return strings.Join(xs, ", ")
}

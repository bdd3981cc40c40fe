package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// report is what the run found.
type report struct {
	machine   benchkit.Machine
	loadAfter string
	samples   []sample
	// idleRSS: node2's and node3's agents (broker on, no etcd) before the
	// first round.
	idleRSS []nodeRSS
	rss     []rssSample
	notes   []string
}

type nodeRSS struct {
	node string
	rss  int64
}

type rssSample struct {
	broker bool
	rss    int64
}

// throughput reports whether the row is a throughput row.
func (r row) throughput() bool { return r.kind == coreTput || r.kind == jsTput }

func (s sample) msgsPerSec() float64 {
	if s.res.Seconds <= 0 {
		return 0
	}
	return float64(s.res.Messages) / s.res.Seconds
}

func (s sample) mbPerSec() float64 {
	if s.res.Seconds <= 0 {
		return 0
	}
	return float64(s.res.Bytes) / s.res.Seconds / 1e6
}

// of returns the samples of row r on peer p, in round order.
func (rep *report) of(r row, p peer) []sample {
	var out []sample
	for _, s := range rep.samples {
		if s.row == r && s.peer == p {
			out = append(out, s)
		}
	}
	return out
}

func values(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, 0, len(ss))
	for _, s := range ss {
		out = append(out, f(s))
	}
	return out
}

// Figures of a sample.
var (
	figMsgs = func(s sample) float64 { return s.msgsPerSec() }
	figMB   = func(s sample) float64 { return s.mbPerSec() }
	figP50  = func(s sample) float64 { return s.res.Latency.P50 }
	figP99  = func(s sample) float64 { return s.res.Latency.P99 }
)

func f1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }
func f2(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
func f3(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }

func mib(b int64) string { return f1(float64(b)/(1<<20)) + " MiB" }

// goal is issue 18's: ssi at least 0.8× bare.
const goal = 0.8

// ratio is ssi over bare for throughput (more is better), bare over ssi for
// latency, so that either reads "fraction of bare", goal >= 0.8.
func ratio(r row, ssi, bare float64) (float64, bool) {
	if r.throughput() {
		return ssi / bare, bare > 0
	}
	return bare / ssi, ssi > 0
}

func ratioStr(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	if v >= goal {
		return f2(v) + "× (met)"
	}
	return f2(v) + "× (**not met**)"
}

// WriteMarkdown writes the report.
func (b *bench) WriteMarkdown(w io.Writer, runErr error) {
	r, o := &b.rep, b.o
	fmt.Fprintf(w, "## Messages between jobs (%s)\n\n", r.machine.Started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- command: `%s`\n", benchkit.Command("benchmsg"))
	fmt.Fprintf(w, "- commit: %s; machine: %s\n", r.machine.Commit, r.machine)
	fmt.Fprintf(w, "- load average before: %s, after: %s; other namespaces: %v\n", r.machine.LoadAvg, r.loadAfter, r.machine.OtherNetns)
	fmt.Fprintf(w, "- %d rounds; publisher on node%d, subscriber on node%d; core rows at most %d messages (%s of payload), window %s; latency %d messages at %s/s; durable %d messages (%s), %d unacknowledged; durable latency %d at %s/s\n\n",
		o.runs, o.pubNode, o.subNode, o.coreN, sizeStr(o.coreBytes), sizeStr(o.windowBytes), o.latN, ftoa(o.latRate), o.jsN, sizeStr(o.jsBytes), o.jsWindow, o.jsLatN, ftoa(o.jsLatRate))
	if runErr != nil {
		fmt.Fprintf(w, "**The run did not complete: %v.** The figures below are those measured until then.\n\n", runErr)
	}
	t := benchkit.NewTable("row", "ssi:", "bare:", "bare TLS:", "ssi / bare (goal ≥ 0.8×):", "ssi / bare TLS:", "n:")
	for _, rw := range b.rows() {
		ss, bs, ts := r.of(rw, peerSSI), r.of(rw, peerBare), r.of(rw, peerBareTLS)
		if len(ss) == 0 && len(bs) == 0 {
			continue
		}
		n := fmt.Sprintf("%d, %d, %d", len(ss), len(bs), len(ts))
		figs := []struct {
			name   string
			fig    func(sample) float64
			format func(float64) string
		}{{"p50 ms", figP50, f3}, {"p99 ms", figP99, f3}}
		if rw.throughput() {
			figs = []struct {
				name   string
				fig    func(sample) float64
				format func(float64) string
			}{{"msgs/s", figMsgs, f1}, {"MB/s", figMB, f2}}
		}
		for _, f := range figs {
			sm, bm, tm := benchkit.Median(values(ss, f.fig)), benchkit.Median(values(bs, f.fig)), benchkit.Median(values(ts, f.fig))
			tCell, tRatio := "–", "–"
			if len(ts) > 0 {
				v, ok := ratio(rw, sm, tm)
				tCell, tRatio = f.format(tm), f2(v)+"×"
				if !ok {
					tRatio = "–"
				}
			}
			t.Add(rw.String()+": "+f.name, f.format(sm), f.format(bm), tCell, ratioStr(ratio(rw, sm, bm)), tRatio, n)
			if ds := r.of(rw, peerSSIDirect); len(ds) > 0 {
				dm := benchkit.Median(values(ds, f.fig))
				t.Add(rw.String()+": "+f.name+", "+string(peerSSIDirect), f.format(dm), f.format(bm), tCell, ratioStr(ratio(rw, dm, bm)), "", strconv.Itoa(len(ds)))
			}
		}
	}
	fmt.Fprintln(w, "Medians over the rounds (latency: each round's p50 and p99, then their medians; the ratios for latency are bare / ssi; n: rounds of ssi, bare, bare TLS):")
	fmt.Fprintln(w)
	_ = t.Write(w)
	fmt.Fprintln(w)

	all := benchkit.NewTable("round", "row", "peer", "messages:", "seconds:", "msgs/s:", "MB/s:", "p50 ms:", "p99 ms:", "max ms:")
	for _, s := range r.samples {
		all.Add(strconv.Itoa(s.round), s.row.String(), string(s.peer), strconv.Itoa(s.res.Messages), f3(s.res.Seconds),
			f1(s.msgsPerSec()), f2(s.mbPerSec()), f3(s.res.Latency.P50), f3(s.res.Latency.P99), f3(s.res.Latency.Max))
	}
	if all.Len() > 0 {
		fmt.Fprintln(w, "Every measurement (throughput rows: the subscriber's figures for core, the publisher's for durable; latency in throughput rows is under load):")
		fmt.Fprintln(w)
		_ = all.Write(w)
		fmt.Fprintln(w)
	}

	if len(r.idleRSS) > 0 || len(r.rss) > 0 {
		fmt.Fprintln(w, "Agent memory (VmRSS):")
		fmt.Fprintln(w)
		mt := benchkit.NewTable("agent", "VmRSS:", "n:")
		for _, on := range []bool{true, false} {
			var v []float64
			for _, s := range r.rss {
				if s.broker == on {
					v = append(v, float64(s.rss))
				}
			}
			if len(v) > 0 {
				st := benchkit.Summarize(v)
				mt.Add(fmt.Sprintf("one node, embedded etcd, broker %s, %s after Ready (median; min–max)", onOff(on), o.rssIdle),
					fmt.Sprintf("%s (%s–%s)", mib(int64(st.Median)), mib(int64(st.Min)), mib(int64(st.Max))), strconv.Itoa(st.N))
			}
		}
		for _, n := range r.idleRSS {
			mt.Add(n.node+" of the 3-node cluster, broker on, no etcd, 10 s after Ready", mib(n.rss), "1")
		}
		_ = mt.Write(w)
		fmt.Fprintln(w)
	}
	for _, n := range r.notes {
		fmt.Fprintf(w, "- note: %s\n", n)
	}
}

// Result returns the figures for -json.
func (b *bench) Result() benchkit.Result {
	r := &b.rep
	res := benchkit.Result{Machine: r.machine, Notes: r.notes}
	for _, rw := range b.rows() {
		for _, p := range b.peers() {
			ss := r.of(rw, p)
			if len(ss) == 0 {
				continue
			}
			sec := rw.String() + ", " + string(p)
			if rw.throughput() {
				res.Series = append(res.Series, benchkit.NewSeries(sec, "throughput", "msgs/s", values(ss, figMsgs)),
					benchkit.NewSeries(sec, "throughput", "MB/s", values(ss, figMB)))
			} else {
				res.Series = append(res.Series, benchkit.NewSeries(sec, "latency p50", "ms", values(ss, figP50)),
					benchkit.NewSeries(sec, "latency p99", "ms", values(ss, figP99)))
			}
		}
	}
	for _, on := range []bool{true, false} {
		var v []float64
		for _, s := range r.rss {
			if s.broker == on {
				v = append(v, float64(s.rss)/(1<<20))
			}
		}
		res.Series = append(res.Series, benchkit.NewSeries("agent memory", "VmRSS, broker "+onOff(on), "MiB", v))
	}
	return res
}

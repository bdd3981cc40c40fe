package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/joblog"
)

// baseline is measurement 0: requests on an empty table.
func (b *bench) baseline(ctx context.Context) error {
	_, err := b.interleaved(ctx, "0. Requests on an empty table (fresh cluster, no job ever started)", true, []variant{
		b.cli("`ssi ps -A`", "ps", "-A"),
		b.cli("`ssi nodes`", "nodes"),
		b.getVariant("/v1/healthz"),
		b.getVariant("/v1/nodes"),
		b.getVariant("/v1/procs"),
	})
	return err
}

// latency is measurement 1: `ssi run` latency and what it is made of.
func (b *bench) latency(ctx context.Context) error {
	node1, node2 := b.cl.Nodes[0].Name, b.cl.Nodes[1].Name
	ns2 := b.cl.Nodes[1].Namespace
	trueBin, err := exec.LookPath("true")
	if err != nil {
		return err
	}
	target := fmt.Sprintf("`ssi run --node %s -- true`", node2)
	base := "`sh -c true` (local)"
	sec, err := b.interleaved(ctx, "1. `ssi run` latency (whole CLI process, from the root namespace)", false, []variant{
		b.execVariant("`true` (local fork+exec)", 0, trueBin),
		b.execVariant(base, 0, "sh", "-c", "true"),
		b.execVariant(fmt.Sprintf("`ip netns exec %s true` (local, in node2's netns)", ns2), 0, "ip", "netns", "exec", ns2, "true"),
		b.execVariant("`ssi-shim` without arguments (start-up of a small Go binary; exits 2)", 2, b.shim),
		b.cli("`ssi --version` (CLI start-up, no network)", "--version"),
		b.cli("`ssi nodes` (CLI + one API call)", "nodes"),
		b.cli(fmt.Sprintf("`ssi run -d --node %s -- true` (spawn, no attach)", node2), "run", "-d", "--node", node2, "--", "true"),
		b.cli(fmt.Sprintf("`ssi run --node %s -- true` (endpoint's own node, no forwarding)", node1), "run", "--node", node1, "--", "true"),
		b.spawnVariant(node1),
		b.spawnVariant(node2),
		b.pausedSpawnVariant(node2, 50*time.Millisecond),
		b.attachedVariant(node2),
		b.cli(target, "run", "--node", node2, "--", "true"),
	})
	if err == nil {
		lo, hi := findRow(sec.rows, base), findRow(sec.rows, target)
		if lo != nil && hi != nil && lo.st.N > 0 && hi.st.N > 0 {
			if r, ok := benchkit.NewRatio(target+" / "+base, hi.st.Median.Seconds(), hi.st.N, lo.st.Median.Seconds(), lo.st.N, 0); ok {
				sec.ratio = &r
			}
			sec.notes = append(sec.notes, fmt.Sprintf("**%s: median %s**, %s more than `sh -c true` (%.0f×).",
				target, fmtDur(hi.st.Median), fmtDur(hi.st.Median-lo.st.Median), float64(hi.st.Median)/float64(lo.st.Median)))
		}
		if hi != nil && len(hi.durs) >= 20 {
			k := 10
			sec.notes = append(sec.notes, fmt.Sprintf("Every round adds ended records to the table (%d after this section); %s: median of the first %d runs %s, of the last %d %s.",
				b.tableSize(ctx), target, k, fmtDur(benchkit.Median(hi.durs[:k])), k, fmtDur(benchkit.Median(hi.durs[len(hi.durs)-k:]))))
		}
	}
	if it, ierr := b.initTrace(ctx); ierr == nil {
		sec.notes = append(sec.notes, it)
	} else {
		b.log.Warn("inittrace", "err", ierr)
	}
	return err
}

// apiRunAttached does what an attached `ssi run` does, in-process.
func (b *bench) apiRunAttached(ctx context.Context, node string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	resp, err := b.api.Run(ctx, api.RunRequest{Argv: []string{"true"}, Node: node, Workdir: b.wd})
	if err != nil {
		return err
	}
	body, err := b.api.Logs(ctx, resp.GPID, true, 0)
	if err != nil {
		return err
	}
	defer body.Close()
	jr := joblog.NewReader(body)
	for {
		rec, err := jr.Next()
		if err != nil {
			return fmt.Errorf("gpid %d: output stream: %w", resp.GPID, err)
		}
		switch rec.Kind {
		case joblog.Exit:
			var st api.ExitStatus
			if err := json.Unmarshal(rec.Data, &st); err != nil {
				return err
			}
			if st.Code != 0 {
				return fmt.Errorf("gpid %d exited %d %s", resp.GPID, st.Code, st.Error)
			}
			return nil
		case joblog.Error:
			return fmt.Errorf("gpid %d: agent: %s", resp.GPID, rec.Data)
		}
	}
}

// initTrace times the ssi binary's package initialisers (median of 11 runs).
func (b *bench) initTrace(ctx context.Context) (string, error) {
	type trace struct {
		total, end time.Duration // sum of init clocks; end of the last init
		top        map[string]time.Duration
	}
	var traces []trace
	for range 11 {
		cctx, cancel := context.WithTimeout(ctx, cmdTimeout)
		cmd := exec.CommandContext(cctx, b.ssi, "--version")
		cmd.Env = append(slices.Clone(b.env), "GODEBUG=inittrace=1")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		cancel()
		if err != nil {
			return "", err
		}
		t := trace{top: map[string]time.Duration{}}
		sc := bufio.NewScanner(&errb)
		for sc.Scan() {
			// init go.etcd.io/etcd/server/v3/storage/mvcc @8.1 ms, 0.79 ms clock, 21096 bytes, 245 allocs
			f := strings.Fields(sc.Text())
			if len(f) < 7 || f[0] != "init" || f[6] != "clock," {
				continue
			}
			ms, err := strconv.ParseFloat(f[4], 64)
			if err != nil {
				continue
			}
			d := time.Duration(ms * float64(time.Millisecond))
			t.total += d
			if at, err := strconv.ParseFloat(strings.TrimPrefix(f[2], "@"), 64); err == nil {
				t.end = max(t.end, time.Duration(at*float64(time.Millisecond))+d)
			}
			t.top[groupPkg(f[1])] += d
		}
		traces = append(traces, t)
	}
	slices.SortFunc(traces, func(a, b trace) int { return cmp.Compare(a.total, b.total) })
	med := traces[len(traces)/2]
	type pd struct {
		pkg string
		d   time.Duration
	}
	var top []pd
	for k, v := range med.top {
		top = append(top, pd{k, v})
	}
	slices.SortFunc(top, func(a, b pd) int { return cmp.Compare(b.d, a.d) })
	var parts []string
	for _, p := range top[:min(4, len(top))] {
		parts = append(parts, fmt.Sprintf("%s %s", p.pkg, fmtDur(p.d)))
	}
	size := "?"
	if fi, err := os.Stat(b.ssi); err == nil {
		size = fmtSize(int(fi.Size()))
	}
	return fmt.Sprintf("Package initialisers of the ssi binary (%s; GODEBUG=inittrace=1, `ssi --version`, median of %d runs): %s of init work in total, the last one ends %s after process start; largest: %s.",
		size, len(traces), fmtDur(med.total), fmtDur(med.end), strings.Join(parts, ", ")), nil
}

// groupPkg folds a package path into its module-ish prefix for the init summary.
func groupPkg(p string) string {
	for _, pre := range []string{"go.etcd.io/etcd/", "google.golang.org/grpc", "google.golang.org/protobuf", "github.com/prometheus/", "go.opentelemetry.io/", "go.uber.org/zap", "github.com/spf13/", "golang.org/x/net"} {
		if strings.HasPrefix(p, pre) {
			return strings.TrimSuffix(pre, "/") + "*"
		}
	}
	return p
}

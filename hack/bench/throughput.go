package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// throughput is measurement 2: spawn throughput, memory per job, and
// requests on the table it leaves behind (2b).
func (b *bench) throughput(ctx context.Context) error {
	sec := &section{title: fmt.Sprintf("2. Spawn throughput: %d × `ssi run -d -- sleep 3600` (random placement), %d concurrent CLI processes", b.o.jobs, b.o.concurrency)}
	b.rep.sections = append(b.rep.sections, sec)
	m0 := b.mark()
	var rates []float64
	for rep := 1; rep <= b.o.reps; rep++ {
		b.log.Info("measurement 2: spawn throughput", "rep", rep, "of", b.o.reps, "jobs", b.o.jobs, "concurrency", b.o.concurrency)
		before := b.sampleMem()
		table, _ := b.api.PS(ctx, "", true)
		sr := b.spawnMany(ctx, b.o.jobs, spawnLimit)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sr.tableBefore = len(table)
		// Memory: right after the last submission, the jobs are idle sleepers.
		after := b.sampleMem()
		after.availDrop = before.avail - after.avail
		if rep == b.o.reps && sr.ok > 0 {
			sec.mem = append(sec.mem, memRow{label: fmt.Sprintf("after %d jobs (repetition %d)", sr.ok, rep), jobs: sr.ok, m: after})
		}
		sr.perNode = b.perNode(ctx)
		t0 := time.Now()
		err := b.killAll(ctx)
		sr.drain = time.Since(t0)
		sec.spawns = append(sec.spawns, sr)
		if err != nil {
			return err
		}
		if sr.ok == 0 {
			return fmt.Errorf("no job could be started: %s", sr.firstErr)
		}
		rates = append(rates, sr.rate())
	}
	sec.cpu = m0.until(b.mark())
	slices.Sort(rates)
	sec.notes = append(sec.notes, fmt.Sprintf("**Median throughput over %d repetitions: %.1f jobs/s** (min %.1f, max %.1f).",
		len(rates), benchkit.Median(rates), rates[0], rates[len(rates)-1]))

	// The emptied table still holds every ended record (retention 1 h).
	table, err := b.api.PS(ctx, "", true)
	if err != nil {
		return err
	}
	_, err = b.interleaved(ctx, fmt.Sprintf("2b. Requests after measurement 2: 0 running jobs, %d ended records in the table", len(table)), true, []variant{
		b.cli("`ssi ps -A`", "ps", "-A"),
		b.cli("`ssi nodes`", "nodes"),
		b.getVariant("/v1/nodes"),
		b.getVariant("/v1/procs"),
		b.getVariant("/v1/procs?exited=1"),
	})
	return err
}

type spawnResult struct {
	requested, ok, failed int
	wall                  time.Duration // first submission start → last gpid returned
	perCall               []time.Duration
	stopped               string
	firstErr              string
	tableBefore           int
	drain                 time.Duration
	perNode               map[string]int
	// CPU seconds spent while submitting: by the CLI processes, by the agents
	// (node1's includes etcd), by the new jobs' shims and inits.
	cpuCLI, cpuAgents, cpuJobs float64
}

func (s spawnResult) rate() float64 {
	if s.wall <= 0 {
		return 0
	}
	return float64(s.ok) / s.wall.Seconds()
}

// spawnMany submits n detached sleep jobs with b.o.concurrency CLI processes.
// Submission stops early on the time limit or when memory runs low.
func (b *bench) spawnMany(ctx context.Context, n int, limit time.Duration) spawnResult {
	res := spawnResult{requested: n}
	var (
		next    atomic.Int64
		halt    atomic.Bool
		mu      sync.Mutex
		last    time.Time
		wg      sync.WaitGroup
		stopMsg atomic.Value
	)
	stopWith := func(msg string) {
		if halt.CompareAndSwap(false, true) {
			stopMsg.Store(msg)
		}
	}
	timer := time.AfterFunc(limit, func() { stopWith(fmt.Sprintf("time limit %s reached", limit)) })
	defer timer.Stop()
	guardDone := make(chan struct{})
	go func() { // memory guard
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-guardDone:
				return
			case <-t.C:
				if avail := memAvailable(); avail > 0 && avail < b.o.minFreeMiB<<20 {
					stopWith(fmt.Sprintf("MemAvailable fell to %d MiB (< -min-free-mib %d)", avail>>20, b.o.minFreeMiB))
				}
			}
		}
	}()
	m0 := b.mark()
	start := time.Now()
	for range b.o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !halt.Load() && ctx.Err() == nil {
				if next.Add(1) > int64(n) {
					return
				}
				out, d, err := benchkit.Exec(ctx, cmdTimeout, b.env, b.ssi, "run", "-d", "--", "sleep", "3600")
				end := time.Now()
				if err == nil {
					_, err = strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
				}
				mu.Lock()
				if err != nil {
					res.failed++
					if res.firstErr == "" {
						res.firstErr = err.Error()
					}
				} else {
					res.ok++
					res.perCall = append(res.perCall, d)
					if end.After(last) {
						last = end
					}
				}
				done := res.ok + res.failed
				mu.Unlock()
				if done%100 == 0 {
					b.log.Info("submitted", "jobs", done, "of", n)
				}
			}
		}()
	}
	wg.Wait()
	close(guardDone)
	m1 := b.mark()
	res.cpuCLI = m1.children - m0.children
	res.cpuAgents = m1.agentsOwn - m0.agentsOwn
	res.cpuJobs = m1.jobs - m0.jobs
	if !last.IsZero() {
		res.wall = last.Sub(start)
	}
	if m, ok := stopMsg.Load().(string); ok && res.ok+res.failed < n {
		res.stopped = m
	}
	if ctx.Err() != nil {
		res.stopped = "interrupted"
	}
	return res
}

// perNode counts running jobs per node.
func (b *bench) perNode(ctx context.Context) map[string]int {
	procs, err := b.api.PS(ctx, "", false)
	if err != nil {
		return nil
	}
	m := map[string]int{}
	for _, p := range procs {
		m[p.Node]++
	}
	return m
}

// killAll kills every running job with `ssi kill -s KILL` sent to the owning
// node's agent and waits until `ps -A` lists nothing.
func (b *bench) killAll(ctx context.Context) error {
	procs, err := b.api.PS(ctx, "", false)
	if err != nil {
		return err
	}
	byNode := map[string][]string{}
	for _, p := range procs {
		byNode[p.Node] = append(byNode[p.Node], strconv.FormatUint(p.GPID, 10))
	}
	addr := map[string]string{}
	for _, n := range b.cl.Nodes {
		addr[n.Name] = n.API()
	}
	b.log.Info("killing jobs", "jobs", len(procs))
	for node, gpids := range byNode {
		ep, ok := addr[node]
		if !ok {
			ep = b.cl.Endpoint()
		}
		for len(gpids) > 0 {
			chunk := gpids[:min(killChunk, len(gpids))]
			gpids = gpids[len(chunk):]
			args := append([]string{"--endpoint", ep, "kill", "-s", "KILL"}, chunk...)
			if _, _, err := benchkit.Exec(ctx, cmdTimeout, b.env, b.ssi, args...); err != nil {
				// A job that ended meanwhile makes kill exit 1; the drain below decides.
				b.log.Warn("kill", "node", node, "err", err)
			}
		}
	}
	deadline := time.Now().Add(drainLimit)
	for {
		left, err := b.api.PS(ctx, "", false)
		if err == nil && len(left) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d jobs still listed %s after kill (last error: %v)", len(left), drainLimit, err)
		}
		if err := benchkit.Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

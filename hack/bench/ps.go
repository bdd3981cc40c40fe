package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// psLatency is measurement 3: `ssi ps -A` with many running jobs, and
// other requests with that table (3b).
func (b *bench) psLatency(ctx context.Context) error {
	n := b.o.psJobs
	sec := &section{title: fmt.Sprintf("3. `ssi ps -A` with %d running jobs in the table", n), showSize: true}
	b.rep.sections = append(b.rep.sections, sec)
	idleCPU := b.agentCPU(ctx, 5*time.Second)
	before := b.sampleMem()
	// Will it fit? Estimate from the cost per job measured in measurement 2.
	perJob := int64(12 << 20)
	for _, s := range b.rep.sections {
		for _, m := range s.mem {
			if m.jobs > 0 && m.m.availDrop > 0 {
				perJob = m.m.availDrop / int64(m.jobs)
			}
		}
	}
	if room := before.avail - b.o.minFreeMiB<<20; room < int64(n)*perJob {
		fit := int(max(room, 0) / perJob)
		sec.notes = append(sec.notes, fmt.Sprintf("Memory: MemAvailable %d MiB, ~%.1f MiB per job: only %d of %d jobs fit above -min-free-mib %d; submitting %d.",
			before.avail>>20, float64(perJob)/(1<<20), fit, n, b.o.minFreeMiB, fit))
		n = fit
	}
	if n == 0 {
		return errors.New("not enough memory for the ps measurement")
	}
	b.log.Info("measurement 3: filling the table", "jobs", n)
	sr := b.spawnMany(ctx, n, 2*spawnLimit)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	sr.perNode = b.perNode(ctx)
	sec.spawns = append(sec.spawns, sr)
	running, err := b.waitStats(ctx, sr.ok)
	if err != nil {
		return err
	}
	after := b.sampleMem()
	after.availDrop = before.avail - after.avail
	sec.mem = append(sec.mem, memRow{label: fmt.Sprintf("with %d running jobs", running), jobs: running, m: after})
	busyCPU := b.agentCPU(ctx, 5*time.Second)
	sec.notes = append(sec.notes, fmt.Sprintf("Agents' CPU while idle (sum of %d agents, node1's includes the embedded etcd, 5 s sample): %.1f%% of one core with 0 jobs, %.1f%% with %d running jobs.",
		len(b.cl.Nodes), idleCPU, busyCPU, running))

	b.log.Info("measurement 3: ps latency", "running", running, "runs", b.o.runs)
	m0 := b.mark()
	sec.rows, err = measureInterleaved(ctx, []variant{
		b.cli("`ssi ps -A`", "ps", "-A"),
		b.cli("`ssi ps -A -o json`", "ps", "-A", "-o", "json"),
		b.getVariant("/v1/procs"),
	}, b.o.warmup, b.o.runs, latencyLimit)
	sec.cpu = m0.until(b.mark())
	if err != nil {
		return err
	}
	// Requests that do not list jobs, with the full table. The spawns add ended
	// records, so this comes after the ps rows.
	node2 := b.cl.Nodes[1].Name
	_, err = b.interleaved(ctx, fmt.Sprintf("3b. Other requests with %d running jobs in the table", running), true, []variant{
		b.cli("`ssi nodes`", "nodes"),
		b.getVariant("/v1/healthz"),
		b.getVariant("/v1/nodes"),
		b.spawnVariant(node2),
		b.cli(fmt.Sprintf("`ssi run --node %s -- true`", node2), "run", "--node", node2, "--", "true"),
	})
	return err
}

// waitStats waits until every running job has live stats in ps (the agents
// publish them every second) and returns the number of running jobs.
func (b *bench) waitStats(ctx context.Context, want int) (int, error) {
	deadline := time.Now().Add(readyLimit)
	for {
		procs, err := b.api.PS(ctx, "", false)
		withStats := 0
		for _, p := range procs {
			if p.Stats != nil {
				withStats++
			}
		}
		if err == nil && withStats >= len(procs) && len(procs) >= want {
			return len(procs), nil
		}
		if time.Now().After(deadline) {
			b.log.Warn("not every job has stats yet", "jobs", len(procs), "with_stats", withStats, "err", err)
			return len(procs), err
		}
		if err := benchkit.Sleep(ctx, 500*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

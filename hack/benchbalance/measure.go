package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Bounds and pace of the measurements.
const (
	calibrateIters = 2_000_000
	roundLimit     = 15 * time.Minute // one measurement
	idleLimit      = 2 * time.Minute  // jobs of an aborted measurement gone
	pollEvery      = 200 * time.Millisecond
)

// measureWorkload runs -runs rounds of workload w, each measuring the
// balancer off and on, in an order that alternates from round to round.
func (b *bench) measureWorkload(ctx context.Context, w string) error {
	iters := b.workload(w)
	modes := []bool{false, true}
	return benchkit.Plan{Runs: b.o.runs, Rotate: true}.Do(ctx, len(modes), func(ctx context.Context, r benchkit.Round, v int) error {
		on := modes[v]
		m, err := b.measure(ctx, iters, on)
		m.workload, m.round = w, r.N
		if err != nil {
			return fmt.Errorf("%s round %d, balancer %s: %w", w, r.N, onOff(on), err)
		}
		b.rep.runs = append(b.rep.runs, m)
		b.log.Info("measured", "workload", w, "round", r.N, "balancer", onOff(on), "makespan", m.makespan.Round(10*time.Millisecond), "moves", m.moved, "failed", m.failed)
		return nil
	})
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// workload returns the iterations of each job of a batch.
func (b *bench) workload(w string) []int {
	out := make([]int, b.o.jobs)
	for k := range out {
		out[k] = b.iters
		if w == "unequal" {
			out[k] = b.iters * 2 * (k + 1) / (b.o.jobs + 1)
		}
	}
	// Longest first would favour the balancer (MOSIX moves old jobs);
	// submission order is shortest first.
	return out
}

func (b *bench) setBalancer(ctx context.Context, on bool) error {
	req := api.BalanceRequest{Enabled: on}
	if b.o.residency != 0 {
		req.Residency = &b.o.residency
	}
	_, err := b.cl.API.SetBalance(ctx, req)
	return err
}

func (b *bench) argv(iters int) []string {
	return []string{"sh", "-c", "i=0; while [ $i -lt " + strconv.Itoa(iters) + " ]; do i=$((i+1)); done"}
}

// calibrate runs the job's loop here, outside the cluster, and scales the
// iterations so that a job needs -solo of CPU time. CPU time, not wall time:
// the machine is shared, and a wall-clock calibration would depend on what
// else ran at that moment.
func (b *bench) calibrate(ctx context.Context) error {
	argv := b.argv(calibrateIters)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if err := cmd.Run(); err != nil {
		return err
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if cpu <= 0 {
		return fmt.Errorf("the calibration loop used no CPU time")
	}
	b.iters = int(float64(calibrateIters) * float64(b.o.solo) / float64(cpu))
	b.rep.calibration = fmt.Sprintf("%d iterations used %s of CPU; an equal job is %d iterations (%s of CPU)", calibrateIters, cpu.Round(10*time.Millisecond), b.iters, b.o.solo)
	b.log.Info("calibrated", "iterations", b.iters, "solo", b.o.solo)
	return nil
}

// measurement is one batch's outcome.
type measurement struct {
	workload string
	round    int
	on       bool
	makespan time.Duration
	moved    int
	failed   int
	// back counts moves node2 -> node1.
	back  int
	start time.Time
	// work is the sum of the jobs' CPU times (from the iterations), longest
	// the longest job's.
	work, longest time.Duration
}

func (b *bench) measure(ctx context.Context, iters []int, on bool) (measurement, error) {
	if err := b.waitIdle(ctx); err != nil {
		return measurement{}, err
	}
	if err := b.setBalancer(ctx, on); err != nil {
		return measurement{}, err
	}
	_, since, err := b.cl.API.Events(ctx, 0, 0, 1)
	if err != nil {
		return measurement{}, err
	}
	m, err := b.batch(ctx, iters)
	m.on = on
	if err != nil {
		return m, err
	}
	evs, _, err := b.cl.API.Events(ctx, since, 0, 10000)
	if err != nil {
		return m, err
	}
	for _, ev := range evs {
		if ev.Kind == pidtable.EventMove || ev.Kind == pidtable.EventMoved || ev.Kind == pidtable.EventFailed {
			b.log.Info("event", "kind", ev.Kind, "gpid", ev.GPID, "from", ev.From, "to", ev.To, "reason", ev.Reason, "took", ev.Took, "frozen", ev.Frozen, "at", ev.Time.Sub(m.start).Round(10*time.Millisecond))
		}
		switch ev.Kind {
		case pidtable.EventMoved:
			m.moved++
			if ev.To == "node1" {
				m.back++
			}
		case pidtable.EventFailed:
			m.failed++
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("failed move of gpid %d %s -> %s: %s", ev.GPID, ev.From, ev.To, ev.Reason))
		}
	}
	for _, it := range iters {
		d := time.Duration(float64(b.o.solo) * float64(it) / float64(b.iters))
		if b.iters == 0 {
			d = 0
		}
		m.work += d
		m.longest = max(m.longest, d)
	}
	return m, nil
}

// batch submits one job per entry of iters to node1 and waits for all to end.
func (b *bench) batch(ctx context.Context, iters []int) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, roundLimit)
	defer cancel()
	t0 := time.Now()
	gpids := make([]uint64, 0, len(iters))
	for _, it := range iters {
		resp, err := b.cl.API.Run(ctx, api.RunRequest{Argv: b.argv(it), Node: "node1", Workdir: b.wd, WorkdirExplicit: true})
		if err != nil {
			return measurement{}, fmt.Errorf("submit: %w", err)
		}
		gpids = append(gpids, resp.GPID)
	}
	affinityChecked := false
	var m measurement
	for _, g := range gpids {
		for {
			wctx, wcancel := context.WithTimeout(ctx, time.Second)
			st, err := b.cl.API.Wait(wctx, g)
			wcancel()
			if err == nil {
				if st.State != pidtable.Exited || st.Code != 0 {
					return m, fmt.Errorf("gpid %d ended %s with code %d: %s", g, st.State, st.Code, st.Error)
				}
				break
			}
			if ctx.Err() != nil {
				return m, fmt.Errorf("wait for gpid %d: %w", g, ctx.Err())
			}
			if !affinityChecked {
				affinityChecked = b.checkAffinity(ctx, gpids)
			}
		}
	}
	var end time.Time
	for _, g := range gpids {
		p, err := b.cl.API.Proc(ctx, g)
		if err != nil {
			return m, err
		}
		if p.Ended.After(end) {
			end = p.Ended
		}
	}
	m.makespan, m.start = end.Sub(t0), t0
	return m, nil
}

// checkAffinity reports, once per benchmark, the CPUs a job moved to node2 may
// run on. It returns true once it has looked at one.
func (b *bench) checkAffinity(ctx context.Context, gpids []uint64) bool {
	if b.rep.affinity != "" {
		return true
	}
	for _, g := range gpids {
		p, err := b.cl.API.Proc(ctx, g)
		if err != nil || p.Node != "node2" || p.State != pidtable.Running || p.PID == 0 {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				b.rep.affinity = fmt.Sprintf("gpid %d, moved to node2 (--cpuset 1): Cpus_allowed_list %s", g, strings.TrimSpace(v))
				return true
			}
		}
	}
	return false
}

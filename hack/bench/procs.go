package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// cpuMark is a snapshot of CPU time counters, in seconds.
type cpuMark struct {
	busy, all float64 // machine-wide, summed over CPUs (/proc/stat)
	self      float64 // this process
	children  float64 // its reaped children: the CLI and baseline processes
	agentsOwn float64 // the live agents (node1's runs etcd)
	agentsKid float64 // their reaped children: ended shims (with inits and jobs)
	jobs      float64 // live shims and inits, with their reaped children
}

const clkTck = 100 // USER_HZ on Linux

func (b *bench) mark() cpuMark {
	var m cpuMark
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal guest guest_nice
		for i := 1; i < len(f) && i <= 8; i++ {
			v, _ := strconv.ParseFloat(f[i], 64)
			m.all += v / clkTck
			if i != 4 && i != 5 { // idle, iowait
				m.busy += v / clkTck
			}
		}
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		m.self = tv(ru.Utime) + tv(ru.Stime)
	}
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) == nil {
		m.children = tv(ru.Utime) + tv(ru.Stime)
	}
	if b.cl == nil {
		return m
	}
	for _, n := range b.cl.Nodes {
		own, kids := cpuTicks(n.Agent.PID)
		m.agentsOwn += float64(own) / clkTck
		m.agentsKid += float64(kids) / clkTck
	}
	shims, inits := b.jobProcs()
	for _, pid := range append(shims, inits...) {
		m.jobs += taskCPU(pid)
	}
	return m
}

// taskCPU returns the CPU time of a live process's threads in seconds, summed
// from /proc/PID/task/*/schedstat (nanoseconds). /proc/PID/stat rounds down to
// clock ticks (10 ms), which a shim's few milliseconds do not reach.
func taskCPU(pid int) float64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			ns += v
		}
	}
	return float64(ns) / 1e9
}

// cpuUse is what happened between two marks.
type cpuUse struct {
	wall                    float64 // seconds
	cpus                    int
	busy, ours, cli, agents float64 // CPU seconds
}

func (m0 cpuMark) until(m1 cpuMark) cpuUse {
	cpus := runtime.NumCPU()
	u := cpuUse{cpus: cpus, wall: (m1.all - m0.all) / float64(cpus), busy: m1.busy - m0.busy}
	u.cli = m1.children - m0.children
	u.agents = (m1.agentsOwn - m0.agentsOwn) + (m1.agentsKid - m0.agentsKid) + (m1.jobs - m0.jobs)
	u.ours = (m1.self - m0.self) + u.cli + u.agents
	return u
}

func (u cpuUse) String() string {
	if u.wall <= 0 {
		return ""
	}
	capacity := u.wall * float64(u.cpus)
	pct := func(x float64) string { return fmt.Sprintf("%.0f%%", 100*max(x, 0)/capacity) }
	return fmt.Sprintf("CPU over these %.1f s (%d CPUs = 100%%): machine busy %s; this benchmark %s (CLI and baseline processes %s, agents with etcd and jobs %s, harness %s); **everything else on the machine %s**.",
		u.wall, u.cpus, pct(u.busy), pct(u.ours), pct(u.cli), pct(u.agents), pct(u.ours-u.cli-u.agents), pct(u.busy-u.ours))
}

type memSample struct {
	shims, inits     int
	shimRSS, initRSS int64 // bytes, summed
	shimPSS, initPSS int64
	agentRSS         int64 // summed over agents
	avail            int64 // MemAvailable
	availDrop        int64 // MemAvailable before - after (set by the caller)
}

// jobProcs finds the cluster's ssi-shim processes: shims are children of the
// agents running our ssi-shim binary, inits children of those shims.
func (b *bench) jobProcs() (shims, inits []int) {
	agents := map[int]bool{}
	for _, n := range b.cl.Nodes {
		agents[n.Agent.PID] = true
	}
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := ppid(pid); pp > 0 {
			children[pp] = append(children[pp], pid)
		}
	}
	isShim := func(pid int) bool {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		return err == nil && exe == b.shim
	}
	for a := range agents {
		for _, sp := range children[a] {
			if !isShim(sp) {
				continue
			}
			shims = append(shims, sp)
			for _, ip := range children[sp] {
				if isShim(ip) {
					inits = append(inits, ip)
				}
			}
		}
	}
	return shims, inits
}

func (b *bench) sampleMem() memSample {
	s := memSample{avail: memAvailable()}
	if b.cl == nil {
		return s
	}
	for _, n := range b.cl.Nodes {
		rss, _ := smapsRollup(n.Agent.PID)
		s.agentRSS += rss
	}
	shims, inits := b.jobProcs()
	for _, pid := range shims {
		rss, pss := smapsRollup(pid)
		s.shims++
		s.shimRSS += rss
		s.shimPSS += pss
	}
	for _, pid := range inits {
		rss, pss := smapsRollup(pid)
		s.inits++
		s.initRSS += rss
		s.initPSS += pss
	}
	return s
}

// agentCPU returns the CPU use of all agents over d, in percent of one core.
func (b *bench) agentCPU(ctx context.Context, d time.Duration) float64 {
	ticks := func() (t int64) {
		for _, n := range b.cl.Nodes {
			own, _ := cpuTicks(n.Agent.PID)
			t += own
		}
		return t
	}
	t0, w0 := ticks(), time.Now()
	if benchkit.Sleep(ctx, d) != nil {
		return math.NaN()
	}
	return 100 * float64(ticks()-t0) / clkTck / time.Since(w0).Seconds()
}

func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:])) // [0] is field 3 (state)
}

func ppid(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// cpuTicks returns a process's own CPU time (utime+stime) and that of its
// reaped children (cutime+cstime), in clock ticks.
func cpuTicks(pid int) (own, kids int64) {
	f := statFields(pid)
	if len(f) < 15 {
		return 0, 0
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	return n(11) + n(12), n(13) + n(14) // fields 14-17
}

// smapsRollup returns a process's RSS and PSS in bytes.
func smapsRollup(pid int) (rss, pss int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			rss = v << 10
		case "Pss:":
			pss = v << 10
		}
	}
	return rss, pss
}

// memAvailable is MemAvailable in bytes.
func memAvailable() int64 { return benchkit.MemInfo("MemAvailable") }

package supervisor

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// sample is the previous sample of a job's figures: lastCPU and lastCPUAt
// for its CPU rate, lastSched and lastAt the run+wait time of each of its
// threads, for its demand.
type sample struct {
	lastCPU   time.Duration
	lastCPUAt time.Time
	lastSched map[int]time.Duration
	lastAt    time.Time
}

// ExpectedLoad is the load a new job of cpus requested CPUs counts for until
// it is measured: its request, one core at least.
func ExpectedLoad(cpus float64) float64 { return max(cpus, 1) }

// Sample measures the node's jobs: the job figures of the node's status.
// A job started from a placement less than newFor ago counts at no less
// than its ExpectedLoad, and its placement token is added to served, the
// tokens of the placements this node served (read before the sample).
//
// Two figures per job: CPU, what it used (cpuacct of its cgroup), and Demand,
// what it wanted: the time its threads spent running plus the time they spent
// runnable, waiting on a run queue, over the interval (the kernel's per-thread
// schedstat). On a node short of CPU the first is capped by the CPUs and says
// nothing of how many jobs compete; the second is not: 8 CPU-bound jobs on one
// CPU use 1 core and demand 8. Sampling the R state of threads instead would
// see a job that runs half the time as 0 or 1 at random; schedstat integrates
// over the whole interval; it stands in only on a job's first sample, when
// there is no interval yet. (cgroup v1 cpu.stat nr_throttled counts only quota
// throttling, not contention.)
func (s *Supervisor) Sample(newFor time.Duration, served []string) pidtable.NodeStatus {
	// The placements listed are exactly those counted here (agent/recent.go):
	//   - each job of the snapshot lists its own token, taken under the same
	//     lock, so a job that joined after the served tokens were read is not
	//     counted here and by its placer (counted twice, its node looked
	//     busier than it was and a burst landed 4/3/2: seen in CI);
	//   - served tokens are read before the snapshot: a placement is served
	//     only after its job joined the registry, so a served token's job is in the
	//     snapshot, or ended, or never started (counted nowhere, rightly).
	s.mu.Lock()
	jobs := make([]*Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	now := time.Now()
	st := pidtable.NodeStatus{Updated: now.UTC(), Jobs: len(jobs), Procs: make(map[uint64]pidtable.ProcStats, len(jobs))}
	for _, j := range jobs {
		ps := pidtable.ProcStats{Stat: "?"}
		if j.cgroup != nil {
			// Each figure is timed when it is read, not once for the node: on
			// a busy machine this loop can stall for a good part of a second,
			// and a rate over a shifted interval would be off by as much.
			if cpu, err := j.cgroup.CPUTime(); err == nil {
				at := time.Now()
				if !j.last.lastCPUAt.IsZero() {
					ps.CPU = 100 * float64(cpu-j.last.lastCPU) / float64(at.Sub(j.last.lastCPUAt))
				}
				j.last.lastCPU, j.last.lastCPUAt = cpu, at
			}
			// Figures are the job's own: ssi's init (PID 1 of the job) is left out.
			sched := map[int]time.Duration{}
			runnable := 0
			if pids, err := j.cgroup.Pids(); err == nil {
				for _, pid := range pids {
					if pid != j.state.Init.PID {
						ps.Procs++
						ps.RSS += rss(pid)
						runnable += threadDemand(pid, sched)
					}
				}
			}
			at := time.Now()
			// First sample (a job just started, or just restored here by a
			// migration): no interval yet, so the runnable threads stand in.
			ps.Demand = float64(runnable)
			if !j.last.lastAt.IsZero() {
				interval := at.Sub(j.last.lastAt)
				var busy time.Duration
				for tid, t := range sched {
					// A thread new since the last sample counts from its
					// start; none can want more than the whole interval.
					busy += min(max(t-j.last.lastSched[tid], 0), interval)
				}
				ps.Demand = float64(busy) / float64(interval)
			}
			j.last.lastSched, j.last.lastAt = sched, at
		}
		if s, err := shim.ProcStat(j.state.MainPID); err == nil {
			ps.Stat = s
		}
		st.Procs[j.gpid] = ps
		st.Load += ps.CPU / 100
		if !j.placed.IsZero() && now.Sub(j.placed) < newFor {
			// New: counts at least at its expected load, and its token is
			// listed with it (agent/recent.go).
			st.Expected += max(ExpectedLoad(j.cpus)-ps.CPU/100, 0)
			if j.token != "" && !slices.Contains(served, j.token) {
				served = append(served, j.token)
			}
		}
		st.Demand += ps.Demand
		st.ReservedCPUs += j.cpus
		st.ReservedMemory += j.memory
	}
	st.Placements = served
	return st
}

// threadDemand adds to out, for each thread of pid, the time it has run plus
// the time it has waited runnable since it started (/proc/PID/task/TID/schedstat:
// "run_ns wait_ns timeslices"), and returns how many of them are runnable now
// (state R). Threads that are gone are skipped.
func threadDemand(pid int, out map[int]time.Duration) (runnable int) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		run, err1 := strconv.ParseInt(f[0], 10, 64)
		wait, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out[tid] = time.Duration(run + wait)
		if st, err := os.ReadFile(dir + "/" + t.Name() + "/stat"); err == nil {
			// The state follows the command name, which ends at the last ')'.
			if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && st[i+2] == 'R' {
				runnable++
			}
		}
	}
	return runnable
}

var pageSize = int64(os.Getpagesize())

// rss returns the resident set size of pid in bytes (0 if it is gone).
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n * pageSize
}

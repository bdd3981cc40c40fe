package agent

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// statusInterval is how often the node publishes its load.
const statusInterval = time.Second

// statusLoop publishes the node's live status every second and replaces the
// etcd session if its lease was lost (e.g. etcd was unreachable for a TTL).
func (a *Agent) statusLoop(ctx context.Context) {
	t := time.NewTicker(statusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.session.Load().Done():
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("etcd lease lost; node is NotReady until a new one is granted")
			if _, err := a.newSession(ctx); err != nil {
				a.log.Error("renew etcd lease", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
		case <-t.C:
		}
		if err := a.publishStatus(ctx, a.measure()); err != nil && ctx.Err() == nil {
			a.log.Warn("publish status", "err", err)
		}
	}
}

// measure samples the node's jobs.
func (a *Agent) measure() pidtable.NodeStatus {
	a.mu.Lock()
	jobs := make([]*job, 0, len(a.jobs))
	for _, j := range a.jobs {
		jobs = append(jobs, j)
	}
	a.mu.Unlock()
	now := time.Now()
	st := pidtable.NodeStatus{Updated: now.UTC(), Jobs: len(jobs), Procs: make(map[uint64]pidtable.ProcStats, len(jobs))}
	for _, j := range jobs {
		ps := pidtable.ProcStats{Stat: "?"}
		if j.cgroup != nil {
			if cpu, err := j.cgroup.CPUTime(); err == nil {
				if !j.lastAt.IsZero() {
					ps.CPU = 100 * float64(cpu-j.lastCPU) / float64(now.Sub(j.lastAt))
				}
				j.lastCPU, j.lastAt = cpu, now
			}
			// Figures are the job's own: ssi's init (PID 1 of the job) is left out.
			if pids, err := j.cgroup.Pids(); err == nil {
				for _, pid := range pids {
					if pid != j.state.Init.PID {
						ps.Procs++
						ps.RSS += rss(pid)
					}
				}
			}
		}
		if s, err := shim.ProcStat(j.state.MainPID); err == nil {
			ps.Stat = s
		}
		st.Procs[j.gpid] = ps
		st.Load += ps.CPU / 100
		st.ReservedCPUs += j.cpus
		st.ReservedMemory += j.memory
	}
	return st
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

package clusterfs

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/api"
)

// procStatus renders a job's record as "Key:\tvalue" lines.
func procStatus(p api.ProcInfo) []byte {
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s:\t%v\n", k, v) }
	kv("Gpid", p.GPID)
	kv("State", p.State)
	kv("Node", p.Node)
	kv("NodeReady", p.NodeReady)
	kv("Epoch", p.Epoch)
	kv("Pid", p.PID)
	kv("User", p.User)
	kv("Uid", p.UID)
	kv("Gid", p.GID)
	kv("Command", strings.Join(p.Argv, " "))
	kv("Workdir", p.Workdir)
	if p.CPUs > 0 {
		kv("Cpus", p.CPUs)
	}
	if p.Memory > 0 {
		kv("Memory", p.Memory)
	}
	kv("Created", p.Created.Format(time.RFC3339))
	if !p.Started.IsZero() {
		kv("Started", p.Started.Format(time.RFC3339))
	}
	if !p.Ended.IsZero() {
		kv("Ended", p.Ended.Format(time.RFC3339))
	}
	if p.ExitCode != nil {
		kv("ExitCode", *p.ExitCode)
	}
	if p.Error != "" {
		kv("Error", p.Error)
	}
	if p.Migration != nil {
		kv("MigratingTo", p.Migration.Target)
		kv("MigrationPhase", p.Migration.Phase)
	}
	if p.Stats != nil {
		kv("Stat", p.Stats.Stat)
		kv("Cpu", fmt.Sprintf("%.1f", p.Stats.CPU))
		kv("Demand", fmt.Sprintf("%.2f", p.Stats.Demand))
		kv("Rss", p.Stats.RSS)
		kv("Procs", p.Stats.Procs)
	}
	return []byte(b.String())
}

// cmdline is argv NUL-terminated, as Linux's /proc/PID/cmdline.
func cmdline(p api.ProcInfo) []byte {
	var b []byte
	for _, a := range p.Argv {
		b = append(append(b, a...), 0)
	}
	return b
}

// nodeStatus renders a node as "Key:\tvalue" lines.
func nodeStatus(n api.NodeInfo) []byte {
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s:\t%v\n", k, v) }
	kv("Name", n.Name)
	kv("Addr", n.Addr)
	kv("Ready", n.Ready)
	kv("Cpus", n.CPUs)
	kv("Memory", n.Memory)
	kv("Load", fmt.Sprintf("%.2f", n.Load))
	kv("Demand", fmt.Sprintf("%.2f", n.Demand))
	kv("Jobs", n.Jobs)
	kv("ReservedCpus", n.ReservedCPUs)
	kv("ReservedMemory", n.ReservedMemory)
	kv("Version", n.Version)
	for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
		kv("Label", k+"="+n.Labels[k])
	}
	return []byte(b.String())
}

// nodeJobs lists the live jobs on node, one "gpid user state command" line each.
func nodeJobs(node string, gpids []uint64, procs map[uint64]api.ProcInfo) []byte {
	var b strings.Builder
	for _, g := range gpids {
		p := procs[g]
		if p.Node != node || p.State.Ended() {
			continue
		}
		fmt.Fprintf(&b, "%d\t%s\t%s\t%s\n", p.GPID, p.User, p.State, strings.Join(p.Argv, " "))
	}
	return []byte(b.String())
}

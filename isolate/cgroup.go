package isolate

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
)

// JobNamespaces are the namespaces a job's init is cloned into: a PID namespace
// (restore on another node can never collide with a host PID there), IPC, UTS,
// and a mount namespace, a copy of the node's in which init mounts a /proc of
// the job's PID namespace and a /dev/shm of its own (ssi-init's
// setup_mounts): programs reading /proc see their own PIDs, and CRIU's parasite
// finds a /proc of the job's PID namespace and never has to mount one in the
// job's working directory.
const JobNamespaces = syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNS

// cpuPeriod is the CFS period used for CPU limits (100 ms, the kernel default).
const cpuPeriod = 100000

// Limits are a job's resource limits; zero means unlimited.
type Limits struct {
	CPUs   float64
	Memory int64
	// CPUSet confines the job to these CPUs (a Linux CPU list, "0-1,3") and
	// MemNodes to these memory nodes; empty: the parent's. cgroup v1 needs both
	// set for a cpuset to take tasks: MemNodes defaults to the machine's.
	CPUSet   string
	MemNodes string
}

// CgroupPath returns the cgroup path of a job: parent/node/gpid.
func CgroupPath(parent, node string, gpid uint64) string {
	return fmt.Sprintf("%s/%s/%d", strings.TrimRight(parent, "/"), node, gpid)
}

// Cgroup is one job's cgroup.
type Cgroup struct {
	path string
	m    cgroups.Manager
}

func config(path string, l Limits) *cgroups.Cgroup {
	// Devices are not skipped: the v1 manager lists pids through the devices
	// hierarchy. With no device rules, Set leaves device access as inherited.
	r := &cgroups.Resources{}
	if l.CPUs > 0 {
		r.CpuPeriod = cpuPeriod
		r.CpuQuota = int64(l.CPUs * cpuPeriod)
	}
	if l.Memory > 0 {
		r.Memory = l.Memory
	}
	if l.CPUSet != "" {
		r.CpusetCpus, r.CpusetMems = l.CPUSet, l.MemNodes
		if r.CpusetMems == "" {
			r.CpusetMems = MemoryNodes()
		}
	}
	return &cgroups.Cgroup{Path: path, Resources: r}
}

// CreateCgroup creates the cgroup at path (in every hierarchy on v1) with limits l.
func CreateCgroup(path string, l Limits) (*Cgroup, error) {
	cfg := config(path, l)
	m, err := manager.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("isolate: cgroup %s: %w", path, err)
	}
	if err := m.Apply(-1); err != nil {
		return nil, fmt.Errorf("isolate: create cgroup %s: %w", path, err)
	}
	c := &Cgroup{path: path, m: m}
	if err := m.Set(cfg.Resources); err != nil {
		c.Destroy()
		return nil, fmt.Errorf("isolate: set limits on cgroup %s (cpus %g, memory %d, cpuset %q): %w", path, l.CPUs, l.Memory, l.CPUSet, err)
	}
	return c, nil
}

// OpenCgroup returns a handle on an existing cgroup without changing it.
func OpenCgroup(path string) (*Cgroup, error) {
	m, err := manager.New(config(path, Limits{}))
	if err != nil {
		return nil, fmt.Errorf("isolate: cgroup %s: %w", path, err)
	}
	return &Cgroup{path: path, m: m}, nil
}

// Path returns the cgroup's path below the hierarchy roots.
func (c *Cgroup) Path() string { return c.path }

// Exists reports whether the cgroup is there.
func (c *Cgroup) Exists() bool { return c.m.Exists() }

// Add moves pid into the cgroup.
func (c *Cgroup) Add(pid int) error {
	if err := c.m.Apply(pid); err != nil {
		return fmt.Errorf("isolate: add pid %d to cgroup %s: %w", pid, c.path, err)
	}
	return nil
}

// Pids lists the processes in the cgroup.
func (c *Cgroup) Pids() ([]int, error) {
	pids, err := c.m.GetAllPids()
	if err != nil {
		return nil, fmt.Errorf("isolate: list cgroup %s: %w", c.path, err)
	}
	return pids, nil
}

// CPUTime returns the CPU time consumed by the cgroup's processes.
func (c *Cgroup) CPUTime() (time.Duration, error) {
	if cgroups.IsCgroup2UnifiedMode() {
		b, err := os.ReadFile(filepath.Join(c.m.Path(""), "cpu.stat"))
		if err != nil {
			return 0, fmt.Errorf("isolate: read cpu.stat of %s: %w", c.path, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
				us, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("isolate: parse cpu.stat of %s: %w", c.path, err)
				}
				return time.Duration(us) * time.Microsecond, nil
			}
		}
		return 0, fmt.Errorf("isolate: no usage_usec in cpu.stat of %s", c.path)
	}
	b, err := os.ReadFile(filepath.Join(c.m.Path("cpuacct"), "cpuacct.usage"))
	if err != nil {
		return 0, fmt.Errorf("isolate: read cpuacct.usage of %s: %w", c.path, err)
	}
	ns, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("isolate: parse cpuacct.usage of %s: %w", c.path, err)
	}
	return time.Duration(ns), nil
}

// Signal sends sig to every process in the cgroup.
func (c *Cgroup) Signal(sig syscall.Signal) {
	pids, _ := c.Pids()
	for _, p := range pids {
		_ = syscall.Kill(p, sig)
	}
}

// Kill sends SIGKILL to every process in the cgroup.
func (c *Cgroup) Kill() { c.Signal(syscall.SIGKILL) }

// Destroy removes the cgroup, first killing what is left in it and waiting up to
// five seconds for those processes to be gone (rmdir fails while any remain). A
// cgroup already gone is not an error.
func (c *Cgroup) Destroy() error {
	if !c.m.Exists() {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := c.Pids()
		if err != nil || len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("isolate: remove cgroup %s: processes %v survive SIGKILL", c.path, pids)
		}
		c.Kill()
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.m.Destroy(); err != nil {
		return fmt.Errorf("isolate: remove cgroup %s: %w", c.path, err)
	}
	return nil
}

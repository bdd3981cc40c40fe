package benchkit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine is what a benchmark's figures depend on besides the code: the
// machine, its software and how busy it was. Every report and JSON result
// starts with it.
type Machine struct {
	Started     time.Time `json:"started"`
	CPUs        int       `json:"cpus"`
	CPUModel    string    `json:"cpu_model"`
	MemTotalMiB int64     `json:"mem_total_mib"`
	MemAvailMiB int64     `json:"mem_available_mib"` // at start
	Kernel      string    `json:"kernel"`
	CRIU        string    `json:"criu"` // "criu 4.2.1", or why unknown
	Go          string    `json:"go"`
	Commit      string    `json:"commit"`   // of the code measured (GitDescribe)
	LoadAvg     string    `json:"load_avg"` // 1, 5 and 15 min, at start
	// OtherNetns are the network namespaces on the machine that are not the
	// benchmark's own: other clusters, whose agents share the CPUs.
	OtherNetns []string `json:"other_netns"`
}

// ProbeMachine describes this machine now. criu is the CRIU binary whose
// version is reported; own is the benchmark's cluster name (its namespaces
// are NAME-*, not counted as others').
func ProbeMachine(ctx context.Context, criu, own string) Machine {
	m := Machine{
		Started: time.Now(), CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadAvg: LoadAvg(),
		MemTotalMiB: MemInfo("MemTotal") >> 20, MemAvailMiB: MemInfo("MemAvailable") >> 20,
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	m.CRIU = CRIUVersion(ctx, criu)
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), own+"-") {
			m.OtherNetns = append(m.OtherNetns, e.Name())
		}
	}
	return m
}

// String is the machine's line of a report: "2 CPUs (model), 24105 MiB RAM
// (23675 MiB available at start), kernel 6.1.0, criu 4.2.1, go1.26.8".
func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs (%s), %d MiB RAM (%d MiB available at start), kernel %s, %s, %s",
		m.CPUs, m.CPUModel, m.MemTotalMiB, m.MemAvailMiB, m.Kernel, m.CRIU, m.Go)
}

// CRIUVersion returns "criu X.Y" as `criu --version` says, or why not.
func CRIUVersion(ctx context.Context, criu string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, criu, "--version").Output()
	if err != nil {
		return fmt.Sprintf("criu unknown (%s --version: %v)", criu, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return "criu " + strings.TrimSpace(strings.TrimPrefix(line, "Version:"))
}

// LoadAvg returns the 1, 5 and 15 minute load averages ("?" if unknown).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// MemInfo returns a /proc/meminfo field ("MemAvailable") in bytes, 0 if
// unknown.
func MemInfo(key string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// GitDescribe names the commit of the tree at repo, noting uncommitted
// changes to tracked files.
func GitDescribe(repo string) string {
	out, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

// FindRepo returns the root of the ssi repository at or above dir (the
// working directory when dir is empty).
func FindRepo(dir string) (string, error) {
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return "", err
		}
	}
	for d := dir; ; d = filepath.Dir(d) {
		if raw, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(raw, []byte("module github.com/ssi-cluster/ssi\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no ssi repository (go.mod of github.com/ssi-cluster/ssi) at or above %s; use -repo", dir)
		}
	}
}

// Sleep waits d, or until ctx ends (then it returns ctx.Err()).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package agent

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/ssi-cluster/ssi/api"
)

// cpuFlags returns the CPU feature flags of this machine (the "flags" line of
// /proc/cpuinfo, first processor): what a job may have found in CPUID and be
// using. A job restored where one of them is missing may die of SIGILL.
func cpuFlags() ([]string, error) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return nil, fmt.Errorf("read CPU features: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "flags" {
			flags := strings.Fields(v)
			slices.Sort(flags)
			return slices.Compact(flags), nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read CPU features: %w", err)
	}
	return nil, nil // not x86 (no "flags" line): nothing to compare
}

// cpuInfo is this machine's CPU flags, read once (they do not change while
// the agent runs).
type cpuInfo struct {
	once sync.Once
	list []string
	err  error
}

func (c *cpuInfo) flags() ([]string, error) {
	c.once.Do(func() { c.list, c.err = cpuFlags() })
	return c.list, c.err
}

// missingCPUFlags returns the flags of src that dst lacks (both sorted).
func missingCPUFlags(src, dst []string) []string {
	var out []string
	for _, f := range src {
		if _, found := slices.BinarySearch(dst, f); !found {
			out = append(out, f)
		}
	}
	return out
}

// checkCPU refuses a job that ran on a CPU with features this node lacks.
func (a *Agent) checkCPU(src []string) error {
	if len(src) == 0 {
		return nil
	}
	here, err := a.cpu.flags()
	if err != nil {
		return err
	}
	if len(here) == 0 {
		return nil
	}
	if miss := missingCPUFlags(src, here); len(miss) > 0 {
		shown := miss
		if len(shown) > 12 {
			shown = shown[:12]
		}
		return api.Errorf(api.CodeConflict, "node %s's CPU lacks %d feature(s) the job's CPU had and it may use: %s; move it to a node with the same or a newer CPU",
			a.cfg.Name, len(miss), strings.Join(shown, " "))
	}
	return nil
}

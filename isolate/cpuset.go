package isolate

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// ErrCPUSet is wrapped by the errors of ParseCPUSet.
var ErrCPUSet = errors.New("isolate: bad CPU list")

// maxCPU bounds CPU numbers in a list, so "0-99999999" cannot allocate much.
const maxCPU = 8191

// ParseCPUList parses a Linux CPU list ("0", "0-3", "0,2,4-5") into sorted,
// distinct CPU numbers.
func ParseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrCPUSet)
	}
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > maxCPU {
			return nil, fmt.Errorf("%w %q: %q is not a CPU number", ErrCPUSet, s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b > maxCPU {
				return nil, fmt.Errorf("%w %q: %q is not a range of CPU numbers (want LOW-HIGH, LOW <= HIGH)", ErrCPUSet, s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	slices.Sort(cpus)
	return slices.Compact(cpus), nil
}

// FormatCPUList writes cpus (sorted, distinct) as a Linux CPU list.
func FormatCPUList(cpus []int) string {
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(cpus[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", cpus[i], cpus[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// OnlineCPUs returns the machine's online CPUs.
func OnlineCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, fmt.Errorf("isolate: online CPUs: %w", err)
	}
	return ParseCPUList(string(b))
}

// MemoryNodes returns the machine's memory nodes as a list for cpuset.mems
// ("0" on a machine without NUMA).
func MemoryNodes() string {
	if b, err := os.ReadFile("/sys/devices/system/node/online"); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s
		}
	}
	return "0"
}

// CheckCPUSet parses list and checks that every CPU in it is online; it returns
// the list in canonical form and its number of CPUs.
func CheckCPUSet(list string) (string, int, error) {
	cpus, err := ParseCPUList(list)
	if err != nil {
		return "", 0, err
	}
	online, err := OnlineCPUs()
	if err != nil {
		return "", 0, err
	}
	for _, c := range cpus {
		if !slices.Contains(online, c) {
			return "", 0, fmt.Errorf("%w %q: CPU %d is not online on this machine (online: %s)", ErrCPUSet, list, c, FormatCPUList(online))
		}
	}
	return FormatCPUList(cpus), len(cpus), nil
}

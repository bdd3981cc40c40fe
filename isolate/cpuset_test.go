package isolate

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"

	"github.com/ssi-cluster/ssi/internal/testenv"
)

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
	}{
		{"0", []int{0}},
		{"1", []int{1}},
		{"0-3", []int{0, 1, 2, 3}},
		{"4,0-1,1", []int{0, 1, 4}},
		{" 2 \n", []int{2}},
	} {
		got, err := ParseCPUList(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back, _ := ParseCPUList(FormatCPUList(got)); !slices.Equal(back, got) {
			t.Errorf("FormatCPUList(%v) = %q does not parse back", got, FormatCPUList(got))
		}
	}
	for _, bad := range []string{"", "x", "-1", "3-1", "0-", "1,,2", "0-99999", "one"} {
		if _, err := ParseCPUList(bad); !errors.Is(err, ErrCPUSet) {
			t.Errorf("ParseCPUList(%q): err %v, want ErrCPUSet", bad, err)
		}
	}
}

func TestCheckCPUSet(t *testing.T) {
	online, err := OnlineCPUs()
	if err != nil {
		testenv.Skip(t, "%v", err)
	}
	list, n, err := CheckCPUSet(FormatCPUList(online))
	if err != nil || n != len(online) {
		t.Errorf("CheckCPUSet(online %v) = %q, %d, %v", online, list, n, err)
	}
	if _, _, err := CheckCPUSet("8191"); !errors.Is(err, ErrCPUSet) {
		t.Errorf("CheckCPUSet(8191): %v, want ErrCPUSet (CPU not online)", err)
	}
}

// TestCgroupCPUSet: a job cgroup with a cpuset confines what runs in it to
// those CPUs (on v1 cpuset.mems must be set too, or no task may join).
func TestCgroupCPUSet(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to create cgroups")
	}
	online, err := OnlineCPUs()
	if err != nil {
		testenv.Skip(t, "%v", err)
	}
	last := FormatCPUList(online[len(online)-1:])
	path := fmt.Sprintf("/ssi-test-cpuset/%d", os.Getpid())
	c, err := CreateCgroup(path, Limits{CPUSet: last})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Destroy(); _ = mustOpen(t, "/ssi-test-cpuset").Destroy() })
	if !cgroups.IsCgroup2UnifiedMode() {
		assertFile(t, filepath.Join(c.m.Path("cpuset"), "cpuset.cpus"), last)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := c.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "Cpus_allowed_list:\t"+last+"\n") {
		t.Errorf("process in cpuset %s: status says %q", last, grepLine(string(b), "Cpus_allowed_list"))
	}
}

func grepLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

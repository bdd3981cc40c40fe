package isolate

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"

	"github.com/ssi-cluster/ssi/internal/testenv"
)

func TestCgroupLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to create cgroups")
	}
	path := fmt.Sprintf("/ssi-test/%d", os.Getpid())
	c, err := CreateCgroup(path, Limits{CPUs: 0.5, Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Destroy(); _ = (&Cgroup{path: "/ssi-test", m: mustOpen(t, "/ssi-test").m}).Destroy() })
	if cgroups.IsCgroup2UnifiedMode() {
		assertFile(t, filepath.Join(c.m.Path(""), "cpu.max"), "50000 100000")
		assertFile(t, filepath.Join(c.m.Path(""), "memory.max"), "67108864")
	} else {
		assertFile(t, filepath.Join(c.m.Path("cpu"), "cpu.cfs_quota_us"), "50000")
		assertFile(t, filepath.Join(c.m.Path("memory"), "memory.limit_in_bytes"), "67108864")
	}
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	if err := c.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	pids, err := c.Pids()
	if err != nil || !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("pids %v (err %v) lack %d", pids, err, cmd.Process.Pid)
	}
	time.Sleep(200 * time.Millisecond)
	if cpu, err := c.CPUTime(); err != nil || cpu <= 0 {
		t.Fatalf("cpu time %v, err %v", cpu, err)
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	if c.Exists() {
		t.Fatal("cgroup still exists after Destroy")
	}
}

func assertFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != want {
		t.Fatalf("%s = %q, want %q", path, got, want)
	}
}

func mustOpen(t *testing.T, p string) *Cgroup {
	c, err := OpenCgroup(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

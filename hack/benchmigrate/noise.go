package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// memAvailableMiB is MemAvailable in MiB.
func memAvailableMiB() int64 { return benchkit.MemInfo("MemAvailable") >> 20 }

// cpuTimes is the first line of /proc/stat: busy, steal and total jiffies.
type cpuTimes struct{ busy, steal, total uint64 }

func readCPU() cpuTimes {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	var t cpuTimes
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i >= 8 { // guest, guest_nice are already in user, nice
			break
		}
		t.total += n
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			t.steal += n
			t.busy += n
		default:
			t.busy += n
		}
	}
	return t
}

type noiseStart struct {
	cpu      cpuTimes
	load     string
	t        time.Time
	reported int64
}

type noise struct {
	loadStart, loadEnd string
	busy, steal        float64 // shares of all CPUs
	took               time.Duration
	reportedMiB        int64 // free memory handed back to the hypervisor meanwhile; -1: unknown
}

// reportedKiB is the free memory the guest kernel has reported to the
// hypervisor so far (virtio-balloon free page reporting), -1 if unknown. Memory
// handed back is slow to touch again: the hypervisor must fault it in.
func reportedKiB() int64 {
	raw, err := os.ReadFile("/sys/module/page_reporting/parameters/reported_kib")
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func sampleNoise() noiseStart {
	return noiseStart{cpu: readCPU(), load: benchkit.LoadAvg(), t: time.Now(), reported: reportedKiB()}
}

func (n noiseStart) since() noise {
	c := readCPU()
	out := noise{loadStart: n.load, loadEnd: benchkit.LoadAvg(), took: time.Since(n.t), reportedMiB: -1}
	if r := reportedKiB(); r >= 0 && n.reported >= 0 {
		out.reportedMiB = (r - n.reported) >> 10
	}
	if dt := c.total - n.cpu.total; dt > 0 {
		out.busy = float64(c.busy-n.cpu.busy) / float64(dt)
		out.steal = float64(c.steal-n.cpu.steal) / float64(dt)
	}
	return out
}

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// copySampleEvery is how often startCopySampler looks at every node: 50 Hz. A
// fault case lasts 1-3 s from the migrate command to a settled job, so 10 Hz
// would take only 10-30 samples of it; a sample costs a few reads in /proc
// and /sys.
const copySampleEvery = 20 * time.Millisecond

// copySampleGapLimit is the longest pause between two samples a sampler
// accepts: beyond it, it could have missed a second copy that ran meanwhile
// (a loaded machine stretches the 20 ms, not by a second).
const copySampleGapLimit = time.Second

// copyTimelineMax bounds the changes of holders a sampler logs.
const copyTimelineMax = 40

// jobCgroupRoot is the cgroup hierarchy where job cgroups and their
// cgroup.procs are read: the memory hierarchy on cgroup v1, the unified
// hierarchy on v2.
func jobCgroupRoot() string {
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err == nil {
		return "/sys/fs/cgroup/memory"
	}
	return "/sys/fs/cgroup"
}

// liveCopy lists the processes of the job cgroup dir that are live: neither
// stopped (T: a stopped source copy, a restored copy not yet resumed), nor
// held by a tracer (t: CRIU dumping), nor gone (Z, X), nor about to stop or
// die (see halting). An empty answer means no copy of the job runs on that
// node now.
func liveCopy(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil // no cgroup: no copy here
	}
	var live []string
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if state, ok := running(pid); ok {
			live = append(live, fmt.Sprintf("%d:%c", pid, state))
		}
	}
	return live
}

// pfExiting is the kernel's PF_EXITING task flag (include/linux/sched.h).
const pfExiting = 0x4

// Bits of SIGKILL and SIGSTOP in the pending-signal masks of /proc/PID/status.
const (
	sigkillBit = 1 << (9 - 1)
	sigstopBit = 1 << (19 - 1)
)

// running reports whether pid may still run the job's code, and its state.
// It may not when it is stopped (T), traced (t), gone (Z, X, no /proc entry),
// or halting: it has begun to exit (PF_EXITING), a SIGKILL or SIGSTOP is
// pending for it or its thread group, or one of its threads has stopped (a
// group stop under way). Neither signal can be blocked or caught, and a
// pending one is acted on before a thread returns to user space: a stopped
// copy being discarded (SIGKILL) runs only its exit, and a tree CRIU restored
// or dumped with --leave-stopped is sent SIGSTOP and detached thread by thread
// (compel_resume_task), so its threads show R until each gets a CPU to stop
// on, tens of ms on a loaded machine; a multi-threaded process (ssi-shim init
// is a Go program) may then show its leader R with the signal already taken
// by another thread, which has stopped.
//
// The reads are not one snapshot, so the leader's state is read before and
// after the pending signals and the threads, and the process counts as
// running only if all agree: a SIGKILL that wakes a stopped task (T, then R)
// shows in the first read, or as pending, or, once taken, as PF_EXITING in the
// last; a SIGSTOP is dequeued and its thread stopped under one lock, so it
// shows as pending or as a stopped thread after. A process being continued
// (SIGCONT) may be missed by one sample, not by the next.
func running(pid int) (state byte, ok bool) {
	if st, _, ok := procState(fmt.Sprintf("/proc/%d/stat", pid)); !ok || halted(st) {
		return 0, false
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false // gone
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, found := strings.Cut(line, ":")
		if !found || (k != "SigPnd" && k != "ShdPnd") {
			continue
		}
		if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&(sigkillBit|sigstopBit) != 0 {
			return 0, false
		}
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, false
	}
	for _, task := range tasks {
		if st, _, ok := procState(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name())); ok && halted(st) {
			return 0, false
		}
	}
	st, flags, ok := procState(fmt.Sprintf("/proc/%d/stat", pid))
	if !ok || halted(st) || flags&pfExiting != 0 {
		return 0, false
	}
	return st, true
}

// halted: a task in this state runs none of its code.
func halted(state byte) bool { return strings.IndexByte("TtZX", state) >= 0 }

// procState reads the state letter and flags of a process or thread from its
// stat file (/proc/PID/stat or /proc/PID/task/TID/stat).
func procState(path string) (state byte, flags uint64, ok bool) {
	st, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(st, ')')
	if i < 0 || i+2 >= len(st) {
		return 0, 0, false
	}
	// From the state on: "S ppid pgrp session tty_nr tpgid flags ...": flags
	// is field 9 of the stat, the 7th from the state.
	f := strings.Fields(string(st[i+2:]))
	if len(f) < 7 {
		return 0, 0, false
	}
	flags, err = strconv.ParseUint(f[6], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], flags, true
}

// describeHolders says, for a failure message, what the processes of a
// sample's holders are now: state, flags, pending signals, parent, command.
func describeHolders(hs []holder) string {
	var out []string
	for _, h := range hs {
		for _, l := range h.live {
			pid, _, _ := strings.Cut(l, ":")
			st, err := os.ReadFile("/proc/" + pid + "/stat")
			if err != nil {
				out = append(out, fmt.Sprintf("%s %s: gone", h.node, pid))
				continue
			}
			f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
			status, _ := os.ReadFile("/proc/" + pid + "/status")
			var keep []string
			for _, line := range strings.Split(string(status), "\n") {
				k, _, _ := strings.Cut(line, ":")
				switch k {
				case "State", "PPid", "SigPnd", "ShdPnd", "SigBlk", "SigIgn":
					keep = append(keep, strings.Join(strings.Fields(line), " "))
				}
			}
			cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			out = append(out, fmt.Sprintf("%s %s: stat state %s flags %s, %s, cmd %q", h.node, pid, f[0], f[6], strings.Join(keep, ", "), bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
		}
	}
	return strings.Join(out, "; ")
}

// copyPlace is where a node would hold a copy of a job: its job cgroup dir.
type copyPlace struct{ node, dir string }

// holder is a node that holds a live copy, with its live processes
// ("pid:state").
type holder struct {
	node string
	live []string
}

func (h holder) String() string { return fmt.Sprintf("%s %v", h.node, h.live) }

// liveHolders is one sample: the places that hold a live copy now.
func liveHolders(places []copyPlace) []holder {
	var out []holder
	for _, p := range places {
		if live := liveCopy(p.dir); len(live) > 0 {
			out = append(out, holder{p.node, live})
		}
	}
	return out
}

// startCopySampler checks "a job never runs twice" continuously, not once
// things settle: until stop is called it looks at gpid's cgroup on every node
// of the cluster every 20 ms and fails the test if, at one sample, more than
// one node holds a live copy (a process of the job that is not stopped). A
// second copy that ran for a while and was then killed is caught this way.
// stop ends the sampling, logs what it saw and returns the number of samples
// taken; it fails the test if sampling ever paused for longer than
// copySampleGapLimit, or if no sample ever saw a live copy (it is started on a
// running job: it would be looking in the wrong place). stop is also called
// when the test ends.
func startCopySampler(t *testing.T, c *testCluster, gpid uint64) (stop func() int) {
	t.Helper()
	root, g := jobCgroupRoot(), strconv.FormatUint(gpid, 10)
	var nodes []copyPlace
	for _, n := range c.Nodes {
		nodes = append(nodes, copyPlace{n.Name, filepath.Join(root, c.CgroupParent(), n.Name, g)})
	}
	quit, done := make(chan struct{}), make(chan struct{})
	// Written by the sampling goroutine only, read by stop after done closed.
	var (
		samples, doubles int
		maxGap           time.Duration
		liveOn           = map[string]int{} // samples with a live copy, by node
		none             int                // samples with no live copy anywhere
		// timeline: when the holders changed, the first copyTimelineMax times.
		timeline []string
		prev     = "-"
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(copySampleEvery)
		defer tick.Stop()
		last := time.Now()
		for {
			holders := liveHolders(nodes)
			var names []string
			for _, h := range holders {
				liveOn[h.node]++
				names = append(names, h.node)
			}
			if cur := strings.Join(names, "+"); cur != prev && len(timeline) < copyTimelineMax {
				if cur == "" {
					cur = "none"
				}
				timeline = append(timeline, time.Now().Format("05.000")+" "+cur)
				prev = strings.Join(names, "+")
			}
			now := time.Now()
			if samples > 0 {
				maxGap = max(maxGap, now.Sub(last))
			}
			samples, last = samples+1, now
			switch {
			case len(holders) == 0:
				none++
			case len(holders) > 1:
				doubles++
				if doubles <= 3 { // the first few say enough
					t.Errorf("gpid %d runs on %d nodes at once (sample %d, %s): %s; those processes now: %s",
						gpid, len(holders), samples, now.Format("15:04:05.000"), holders, describeHolders(holders))
				}
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop = func() int {
		once.Do(func() {
			close(quit)
			<-done
			t.Logf("copy sampler, gpid %d: %d samples (longest gap %s), live copy by node %v, none live in %d, two or more in %d; live copies over time (s.ms): %s",
				gpid, samples, maxGap.Round(time.Millisecond), liveOn, none, doubles, strings.Join(timeline, ", "))
			if none == samples {
				t.Errorf("copy sampler, gpid %d: no live copy in any of %d samples under %s: wrong place, or the job was not running", gpid, samples, filepath.Join(root, c.CgroupParent()))
			}
			if maxGap > copySampleGapLimit {
				t.Errorf("copy sampler, gpid %d: %s between two samples, more than %s: not continuous", gpid, maxGap.Round(time.Millisecond), copySampleGapLimit)
			}
		})
		return samples
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestCopySamplerSeesCopies checks the sampler's eyes on real cgroups and
// processes, without a cluster: two running copies are two holders; a
// stopped one (a source after its dump, a restored copy not yet resumed) is
// none, and so is a killed one.
func TestCopySamplerSeesCopies(t *testing.T) {
	need(t)
	base := filepath.Join(jobCgroupRoot(), fmt.Sprintf("ssit-sampler-%d", os.Getpid()))
	var places []copyPlace
	var procs []*exec.Cmd
	t.Cleanup(func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
		for _, pl := range places {
			_ = os.Remove(pl.dir)
		}
		_ = os.Remove(base)
	})
	for _, node := range []string{"nodeA", "nodeB"} {
		dir := filepath.Join(base, node)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		places = append(places, copyPlace{node, dir})
		p := exec.Command("sleep", "60")
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(p.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := func(what string, n int) {
		t.Helper()
		eventually(t, 5*time.Second, what, func() error {
			if h := liveHolders(places); len(h) != n {
				return fmt.Errorf("holders %v, want %d", h, n)
			}
			return nil
		})
	}
	want("two running copies", 2)
	if err := procs[1].Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	want("one copy stopped", 1)
	if h := liveHolders(places); h[0].node != "nodeA" {
		t.Fatalf("holder %v, want nodeA", h)
	}
	if err := procs[0].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	want("one stopped, one killed", 0)
}

//go:build soak

package e2e

// The soak suite's raw CRIU baseline (a copy of each program dumped and
// restored outside ssi) and its markdown report; the programs, their moves
// and checks are in soak_test.go.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawCycle is one criu dump and restore of a program's raw copy (wall clocks).
type rawCycle struct{ dump, restore time.Duration }

// rawDumpRestore starts a copy of the program outside ssi, the way
// hack/benchmigrate's raw method does, and dumps and restores it
// soakRawCycles times once it works (the restored copy working again before
// the next cycle); it returns the wall clock of each criu dump and restore.
func rawDumpRestore(t *testing.T, p soakProg, work string, argv []string) ([]rawCycle, error) {
	t.Helper()
	outPath := filepath.Join(work, "raw.out")
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = work, devnull, out, out
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}, p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// The copy alive now: pid; child of ours either way (started, or restored
	// with --restore-sibling). first: still cmd's process.
	first := true
	reap := func() {
		if first {
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
			}
			first = false
			return
		}
		for {
			if _, err := unix.Wait4(pid, nil, 0, nil); !errors.Is(err, unix.EINTR) {
				return
			}
		}
	}
	alive := true
	defer func() {
		if alive {
			_ = unix.Kill(pid, unix.SIGKILL)
			reap()
		}
	}()
	working := func(min int) error {
		deadline := time.Now().Add(soakProgress)
		for {
			b, _ := os.ReadFile(outPath)
			n := p.progress(t, work, string(b))
			if n >= min {
				return nil
			}
			if !pidAlive(pid) {
				return fmt.Errorf("the copy (pid %d) is gone at progress %d: %q", pid, n, tail(string(b), 300))
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the copy's progress is %d after %s, want %d", n, soakProgress, min)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := working(p.minStart); err != nil {
		return nil, err
	}
	base := filepath.Join("/dev/shm", fmt.Sprintf("ssi-soak-%d-%s", os.Getpid(), p.name))
	defer os.RemoveAll(base)
	var cycles []rawCycle
	for i := range soakRawCycles {
		img := filepath.Join(base, strconv.Itoa(i))
		if err := os.MkdirAll(img, 0o700); err != nil {
			return cycles, err
		}
		var cy rawCycle
		if cy.dump, err = runCRIU(img, "dump.log", "dump", "-t", strconv.Itoa(pid), "-D", img, "-o", "dump.log", "-v4", "--file-locks"); err != nil {
			return cycles, err
		}
		reap() // CRIU killed the dumped copy
		alive = false
		pidfile := filepath.Join(base, fmt.Sprintf("restored-%d.pid", i))
		cy.restore, err = runCRIU(img, "restore.log", "restore", "-D", img, "-o", "restore.log", "-v4", "--file-locks", "-d", "--restore-sibling", "--pidfile", pidfile)
		if b, rerr := os.ReadFile(pidfile); rerr == nil {
			if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n > 0 {
				pid, alive = n, true
			}
		}
		if err != nil {
			return cycles, err
		}
		if !alive {
			return cycles, fmt.Errorf("criu restore wrote no pid to %s", pidfile)
		}
		cycles = append(cycles, cy)
		b, _ := os.ReadFile(outPath)
		if err := working(p.progress(t, work, string(b)) + p.step); err != nil {
			return cycles, fmt.Errorf("after raw restore %d: %w", i+1, err)
		}
		_ = os.RemoveAll(img)
	}
	return cycles, nil
}

// runCRIU runs criu and returns its wall clock.
func runCRIU(dir, log string, args ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, soakCRIU, args...)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		var errs []string
		if b, rerr := os.ReadFile(filepath.Join(dir, log)); rerr == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "Error") && !strings.Contains(l, "RLIMIT_NOFILE") {
					errs = append(errs, strings.TrimSpace(l))
				}
			}
		}
		return d, fmt.Errorf("criu %s: %v: %s; log: %s", args[0], err, strings.TrimSpace(string(out)), strings.Join(errs, " | "))
	}
	return d, nil
}
func rawTotals(cs []rawCycle) []time.Duration {
	var out []time.Duration
	for _, c := range cs {
		out = append(out, c.dump+c.restore)
	}
	return out
}

func medianDur(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// writeSoakReport writes the results as markdown to SOAK_REPORT (default
// /tmp/ssi-soak-report.md) and into the test log.
func writeSoakReport(t *testing.T, results []*soakResult, took time.Duration) {
	var b strings.Builder
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&b, "Run %s on %s, %d programs, %s; load average at the end: %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), host, len(results), took.Round(time.Second), strings.Join(strings.Fields(string(load))[:3], " "))
	b.WriteString("| program | ssi migrate: ok / tried | frozen median / max | raw dump+restore median (dump + restore) | bound (2x raw) | balancer on: moves ok / tries | frozen of balancer moves | result |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		var mig, bal []time.Duration
		migOK, migN, balOK, balN := 0, 0, 0, 0
		for _, m := range r.moves {
			if m.how == "balancer" {
				balN++
				if m.outcome == "succeeded" {
					balOK++
					bal = append(bal, m.frozen)
				}
				continue
			}
			migN++
			if m.outcome == "succeeded" {
				migOK++
				mig = append(mig, m.frozen)
			}
		}
		raw := "failed"
		bound := "-"
		if len(r.raw) > 0 {
			var d, rs []time.Duration
			for _, c := range r.raw {
				d, rs = append(d, c.dump), append(rs, c.restore)
			}
			raw = fmt.Sprintf("%s (%s + %s), n=%d", ms(medianDur(rawTotals(r.raw))), ms(medianDur(d)), ms(medianDur(rs)), len(r.raw))
			bound = ms(2 * medianDur(rawTotals(r.raw)))
		}
		balCol := fmt.Sprintf("%d / %d tries (%d moves seen)", balOK, r.balTries, balN)
		fmt.Fprintf(&b, "| %s | %d / %d | %s / %s | %s | %s | %s | %s | %s |\n", r.name, migOK, migN, ms(medianDur(mig)), ms(maxDur(mig)), raw, bound, balCol, list(bal), r.check)
	}
	b.WriteString("\nEvery move:\n\n")
	for _, r := range results {
		fmt.Fprintf(&b, "- %s:", r.name)
		for i, m := range r.moves {
			fmt.Fprintf(&b, " %d. %s %s->%s %s", i+1, m.how, m.from, m.to, m.outcome)
			if m.outcome == "succeeded" {
				fmt.Fprintf(&b, " frozen %s", ms(m.frozen))
				if m.how != "balancer" {
					fmt.Fprintf(&b, " [images %.1f MB, dump %s, transfer %s, restore %s", float64(m.images)/1e6, ms(m.dump), ms(m.transfer), ms(m.restore))
					if m.postCopy {
						b.WriteString(", post-copy")
					}
					b.WriteString("]")
				}
			}
			if m.msg != "" {
				fmt.Fprintf(&b, " (%s)", m.msg)
			}
			b.WriteString(";")
		}
		if r.rawErr != "" {
			fmt.Fprintf(&b, " raw baseline: %s;", r.rawErr)
		}
		b.WriteString("\n")
		for _, f := range r.failures {
			fmt.Fprintf(&b, "  - FAILED: %s\n", f)
		}
	}
	path := os.Getenv("SOAK_REPORT")
	if path == "" {
		path = "/tmp/ssi-soak-report.md"
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Errorf("write the report: %v", err)
	}
	t.Logf("report (%s):\n%s", path, b.String())
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func maxDur(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds)
}

func list(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	var s []string
	for _, d := range ds {
		s = append(s, ms(d))
	}
	return strings.Join(s, ", ")
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/migrate"
)

// ssiCLI runs the ssi CLI against node1's agent and returns its stdout.
func (b *bench) ssiCLI(ctx context.Context, timeout time.Duration, args ...string) ([]byte, time.Duration, error) {
	return benchkit.Exec(ctx, timeout, b.cl.Env, b.bins.SSI, args...)
}

type psEntry struct {
	GPID    uint64 `json:"gpid"`
	Node    string `json:"node"`
	State   string `json:"state"`
	InitPID int    `json:"init_pid"`
}

func (b *bench) ps(ctx context.Context) ([]psEntry, error) {
	out, _, err := b.ssiCLI(ctx, cliTimeout, "ps", "-A", "-o", "json")
	if err != nil {
		return nil, err
	}
	var ps []psEntry
	if err := json.Unmarshal(out, &ps); err != nil {
		return nil, fmt.Errorf("ssi ps -A -o json: %w", err)
	}
	return ps, nil
}

func (b *bench) logs(ctx context.Context, gpid string) ([]byte, error) {
	out, _, err := b.ssiCLI(ctx, cliTimeout, "logs", gpid)
	return out, err
}

// ssiRun starts a fresh job on node1, waits for it to be ready and migrates it
// to node2, post-copy if postcopy.
func (b *bench) ssiRun(ctx context.Context, size int, postcopy bool) (s sample, err error) {
	t0 := time.Now()
	out, _, err := b.ssiCLI(ctx, cliTimeout, "run", "-d", "--node", "node1", "-w", b.wd, "--", b.o.python, "-c", jobProgram, strconv.Itoa(size))
	if err != nil {
		return s, err
	}
	gpid := strings.TrimSpace(string(out))
	if _, err := strconv.ParseUint(gpid, 10, 64); err != nil {
		return s, fmt.Errorf("ssi run -d printed %q, not a gpid", out)
	}
	defer func() {
		if kerr := b.killJob(context.WithoutCancel(ctx), gpid); kerr != nil && err == nil {
			err = kerr
		}
	}()
	deadline := time.Now().Add(readyTimeout(size))
	for {
		l, err := b.logs(ctx, gpid)
		if err != nil {
			return s, err
		}
		if bytes.HasPrefix(l, []byte("ready\n")) {
			break
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("gpid %s not ready after %s: %q", gpid, readyTimeout(size), l)
		}
		if err := benchkit.Sleep(ctx, pollEvery); err != nil {
			return s, err
		}
	}
	s.ready = time.Since(t0)
	if err := benchkit.Sleep(ctx, b.o.settle); err != nil {
		return s, err
	}

	args := []string{"migrate", "-o", "json", gpid, "node2"}
	if postcopy {
		args = []string{"migrate", "--postcopy", "-o", "json", gpid, "node2"}
	}
	out, d, err := b.ssiCLI(ctx, migrateTimeout, args...)
	s.cli = d
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(out, &s.stats); err != nil {
		return s, fmt.Errorf("ssi %s printed %q: %w", strings.Join(args[:len(args)-2], " "), out, err)
	}
	s.image = s.stats.ImageBytes
	switch {
	case s.stats.StreamLost:
		return s, fmt.Errorf("ssi migrate lost its progress stream: no figures (%s)", bytes.TrimSpace(out))
	case s.stats.PostCopy != postcopy:
		return s, fmt.Errorf("ssi %s: stats say post_copy=%v", strings.Join(args[:len(args)-2], " "), s.stats.PostCopy)
	case postcopy && s.stats.LazyBytes < int64(size)<<20:
		// The job wrote every page of its N MiB: its RSS cannot be smaller.
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("gpid %s (%d MiB): lazy_bytes %d < the job's %d MiB", gpid, size, s.stats.LazyBytes, size))
	}

	// The move happened: the record names node2, the job runs and its output
	// arrives, and no images are left behind.
	ps, err := b.ps(ctx)
	if err != nil {
		return s, err
	}
	found := false
	for _, p := range ps {
		if strconv.FormatUint(p.GPID, 10) == gpid {
			found = true
			if p.Node != "node2" || p.State != "running" {
				return s, fmt.Errorf("after migrate gpid %s is %s on %s", gpid, p.State, p.Node)
			}
		}
	}
	if !found {
		return s, fmt.Errorf("after migrate gpid %s is not listed by ssi ps -A", gpid)
	}
	l0, err := b.logs(ctx, gpid)
	if err != nil {
		return s, err
	}
	grown := time.Now().Add(5 * time.Second)
	for {
		l, err := b.logs(ctx, gpid)
		if err != nil {
			return s, err
		}
		if len(l) > len(l0) {
			break
		}
		if time.Now().After(grown) {
			return s, fmt.Errorf("gpid %s printed nothing for 5 s after the migration", gpid)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return s, err
		}
	}
	if postcopy {
		// The page server exits once the target has every page, the lazy-pages
		// daemon right after; neither may linger.
		dirs := b.imageDirs(gpid)
		var left []string
		for deadline := time.Now().Add(3 * time.Second); ; {
			if left = procsUsing(dirs); len(left) == 0 || time.Now().After(deadline) {
				break
			}
			if err := benchkit.Sleep(ctx, 100*time.Millisecond); err != nil {
				return s, err
			}
		}
		if len(left) > 0 {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("gpid %s: 3 s after `ssi migrate --postcopy` returned, processes still used its image directories: %s", gpid, strings.Join(left, "; ")))
		}
	}
	for _, p := range b.imageDirs(gpid) {
		if _, err := os.Stat(p); err == nil {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("images of gpid %s left in %s after the migration returned", gpid, p))
			_ = os.RemoveAll(p)
		}
	}
	return s, nil
}

// procsUsing lists the processes (PID and command line) with one of dirs, or a
// path under it, as an argument.
func procsUsing(dirs []string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, d := range dirs {
			if bytes.Contains(raw, []byte(d+"\x00")) || bytes.Contains(raw, []byte(d+"/")) {
				out = append(out, e.Name()+" "+strings.TrimSpace(string(bytes.ReplaceAll(raw, []byte{0}, []byte{' '}))))
				break
			}
		}
	}
	return out
}

// imageDirs lists where the agents keep gpid's images in flight.
func (b *bench) imageDirs(gpid string) []string {
	var out []string
	for _, n := range b.cl.Nodes {
		for _, kind := range []string{"out", "in"} {
			out = append(out, filepath.Join(migrate.ImagesRoot(n.DataDir), kind+"-"+gpid))
		}
	}
	return out
}

// killJob kills an ssi job and waits until ssi ps -A no longer lists it.
func (b *bench) killJob(ctx context.Context, gpid string) error {
	if _, _, err := b.ssiCLI(ctx, cliTimeout, "kill", "-s", "KILL", gpid); err != nil {
		b.log.Warn("kill", "gpid", gpid, "err", err)
	}
	deadline := time.Now().Add(goneLimit)
	for {
		ps, err := b.ps(ctx)
		listed := false
		for _, p := range ps {
			if strconv.FormatUint(p.GPID, 10) == gpid {
				listed = true
			}
		}
		if err == nil && !listed {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gpid %s still listed %s after ssi kill -s KILL (last error: %v)", gpid, goneLimit, err)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

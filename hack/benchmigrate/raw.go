package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/checkpoint/criulog"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/migrate"
)

// rawRun starts the job outside ssi, dumps it with CRIU to /dev/shm and
// restores it from there. With keep, the original is left stopped by the dump,
// the images are copied through ssi's stream codec, and the restore reads the
// copy while the original and the first images still exist.
func (b *bench) rawRun(ctx context.Context, size int, keep bool) (s sample, err error) {
	dir := b.shmDir("raw")
	img := filepath.Join(dir, "img")
	if err := os.MkdirAll(img, 0o700); err != nil {
		return s, err
	}
	defer os.RemoveAll(dir)

	out, err := os.OpenFile(filepath.Join(dir, "out"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return s, err
	}
	defer out.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return s, err
	}
	defer devnull.Close()
	cmd := exec.Command(b.o.python, "-c", jobProgram, strconv.Itoa(size), "quiet")
	cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = b.wd, devnull, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return s, fmt.Errorf("start job: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	killOrig := func() {
		_ = unix.Kill(pid, unix.SIGKILL)
		select {
		case <-exited:
		case <-time.After(goneLimit):
		}
	}
	// Every raw job dies with its run, however the run ends (error, Ctrl-C).
	origGone := false
	defer func() {
		if !origGone {
			killOrig()
		}
	}()

	// Ready: "ready" in its output file.
	deadline := time.Now().Add(readyTimeout(size))
	for {
		raw, _ := os.ReadFile(filepath.Join(dir, "out"))
		if bytes.HasPrefix(raw, []byte("ready\n")) {
			break
		}
		select {
		case err := <-exited:
			origGone = true
			return s, fmt.Errorf("job exited before ready (%v): %q", err, raw)
		default:
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("job not ready after %s", readyTimeout(size))
		}
		if err := benchkit.Sleep(ctx, 10*time.Millisecond); err != nil {
			return s, err
		}
	}
	s.ready = time.Since(t0)
	if err := benchkit.Sleep(ctx, b.o.settle); err != nil {
		return s, err
	}
	if err := checkAlive(pid); err != nil {
		return s, fmt.Errorf("before dump: %w", err)
	}

	args := []string{"dump", "-t", strconv.Itoa(pid), "-D", img, "-o", "dump.log", "-v4", "--file-locks", "--display-stats"}
	if keep {
		args = append(args, "--leave-stopped")
	}
	dumpOut, d, err := b.criu(ctx, img, "dump.log", args...)
	if err != nil {
		return s, err
	}
	s.dump = d
	s.criuFrozen = statLine(dumpOut, "Frozen time:")
	s.criuMemWrite = statLine(dumpOut, "Memory write time:")
	s.image = dirSize(img)
	if !keep {
		// CRIU killed the job: wait until it is gone (reaped), so its PID and
		// memory are free for the restore, as after `kill -9` and wait.
		select {
		case <-exited:
			origGone = true
		case <-time.After(goneLimit):
			return s, fmt.Errorf("dumped job %d still there after %s", pid, goneLimit)
		}
	}

	from := img
	if keep {
		// ssi's transfer without the network: the images through ssi's stream
		// codec into a second directory, read on one side and written on the
		// other by two goroutines, as the two agents do.
		from = filepath.Join(dir, "img2")
		if s.encode, s.stream, err = streamCodec(ctx, img, from); err != nil {
			return s, fmt.Errorf("image stream: %w", err)
		}
	}
	pidfile := filepath.Join(dir, "restored.pid")
	rstOut, d, err := b.criu(ctx, from, "restore.log", "restore", "-D", from, "-o", "restore.log", "-v4", "--file-locks", "--display-stats",
		"-d", "--restore-sibling", "--pidfile", pidfile)
	s.restore = d
	rpid := 0
	if raw, rerr := os.ReadFile(pidfile); rerr == nil {
		rpid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
	}
	if rpid > 0 {
		// --restore-sibling: the restored job is our child; reap it after the kill.
		killRestored := func() {
			_ = unix.Kill(rpid, unix.SIGKILL)
			for {
				if _, werr := unix.Wait4(rpid, nil, 0, nil); !errors.Is(werr, unix.EINTR) {
					break
				}
			}
		}
		defer killRestored()
	}
	if err != nil {
		return s, err
	}
	if rpid <= 0 {
		return s, fmt.Errorf("criu restore wrote no pid to %s", pidfile)
	}
	s.criuRestore = statLine(rstOut, "Restore time:")
	if err := benchkit.Sleep(ctx, aliveCheck); err != nil {
		return s, err
	}
	if err := checkAlive(rpid); err != nil {
		return s, fmt.Errorf("restored job, %s later: %w (log %s)", aliveCheck, err, filepath.Join(from, "restore.log"))
	}
	return s, nil
}

// streamCodec times ssi's image stream (package migrate: tar with a SHA-256 of
// every file, checked by the reader) over the images in src without a network:
// written to io.Discard (encode), then written through an in-process pipe and
// read back into the new directory dst (both).
func streamCodec(ctx context.Context, src, dst string) (encode, both time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	t := time.Now()
	if _, err := migrate.WriteStream(io.Discard, migrate.Source{Prefix: "images", Dir: src}); err != nil {
		return 0, 0, err
	}
	encode = time.Since(t)
	if err := os.Mkdir(dst, 0o700); err != nil {
		return encode, 0, err
	}
	pr, pw := io.Pipe()
	t = time.Now()
	go func() {
		_, err := migrate.WriteStream(pw, migrate.Source{Prefix: "images", Dir: src})
		pw.CloseWithError(err)
	}()
	_, err = migrate.ReadStream(pr, map[string]string{"images": dst}, 1<<40)
	both = time.Since(t)
	pr.Close()
	return encode, both, err
}

// criu runs one CRIU command and returns its output and wall time: from just
// before fork+exec until wait returns.
func (b *bench) criu(ctx context.Context, dir, log string, args ...string) ([]byte, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, criuTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, b.o.criu, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t := time.Now()
	err := cmd.Run()
	d := time.Since(t)
	if err != nil {
		return out.Bytes(), d, fmt.Errorf("criu %s: %w: %s; log: %s", args[0], err, bytes.TrimSpace(out.Bytes()), strings.Join(criuErrors(filepath.Join(dir, log)), " | "))
	}
	return out.Bytes(), d, nil
}

// criuErrors returns the first Error lines of a CRIU log (package criulog:
// minus the harmless ones).
func criuErrors(path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	return criulog.ErrorLines(raw, 5)
}

// statLine parses "<key> N us" from CRIU's --display-stats output.
func statLine(out []byte, key string) time.Duration {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				if us, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return time.Duration(us) * time.Microsecond
				}
			}
		}
	}
	return 0
}

// checkAlive fails unless pid exists and is not a zombie.
func checkAlive(pid int) error {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return fmt.Errorf("pid %d is gone", pid)
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 || i+2 >= len(raw) {
		return fmt.Errorf("pid %d: unreadable stat", pid)
	}
	if st := raw[i+2]; st == 'Z' || st == 'X' {
		return fmt.Errorf("pid %d has exited (state %c)", pid, st)
	}
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

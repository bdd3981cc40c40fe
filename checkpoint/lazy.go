package checkpoint

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ssi-cluster/ssi/checkpoint/criulog"
	"github.com/ssi-cluster/ssi/checkpoint/criutls"
)

// Post-copy ("lazy") migration: the dump writes everything but the memory, and
// its process stays up as a page server; the restore on the target runs the job
// at once, and a lazy-pages daemon there fetches its memory from that page
// server (on page faults, and in the background) until it has all of it. The
// source tree stays stopped until then.
//
// CRIU needs pipes of 4 MiB for this (fs.pipe-max-size), more than the kernel's
// default 1 MiB; EnsurePipeMaxSize raises the limit.

// LazyPipeMaxSize is the fs.pipe-max-size that lazy dumps need.
const LazyPipeMaxSize = 4 << 20

// EnsurePipeMaxSize raises fs.pipe-max-size to LazyPipeMaxSize if it is lower
// (a machine-wide sysctl; root only) and reports the value it found.
func EnsurePipeMaxSize() (was int, err error) {
	const path = "/proc/sys/fs/pipe-max-size"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: read %s: %w", path, err)
	}
	was, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("checkpoint: %s holds %q: %w", path, b, err)
	}
	if was >= LazyPipeMaxSize {
		return was, nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(LazyPipeMaxSize)), 0o644); err != nil {
		return was, fmt.Errorf("checkpoint: post-copy needs fs.pipe-max-size >= %d (it is %d): %w", LazyPipeMaxSize, was, err)
	}
	return was, nil
}

// LazyDumpOpts says what to dump lazily and where to serve its pages.
type LazyDumpOpts struct {
	CRIUPath  string
	PID       int
	ImagesDir string
	// Address is where the page server listens (an address of this node that
	// the target can reach); Port 0 picks a free one.
	Address string
	Port    int
	// TLS, when set, makes the page server speak TLS and admit only a
	// client whose certificate TLS.CACert signed (criutls).
	TLS *criutls.Files
	Flags
}

// LazyDump is a lazy dump in progress: the images (but the memory) are
// written and the tree is stopped; the CRIU process serves the memory until a
// lazy-pages daemon has fetched all of it.
type LazyDump struct {
	// Addr is host:port of the page server.
	Addr    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	mu      sync.Mutex
	err     error
}

// StartLazyDump dumps the tree rooted at o.PID with --lazy-pages, leaving it
// stopped, and returns once the images are written and the page server is up.
func StartLazyDump(ctx context.Context, o LazyDumpOpts) (*LazyDump, error) {
	if o.PID <= 0 {
		return nil, fmt.Errorf("checkpoint: lazy dump: bad pid %d", o.PID)
	}
	if o.CRIUPath == "" {
		o.CRIUPath = DefaultCRIUPath
	}
	port := o.Port
	if port == 0 {
		l, err := net.Listen("tcp", net.JoinHostPort(o.Address, "0"))
		if err != nil {
			return nil, fmt.Errorf("checkpoint: lazy dump: find a free port on %s: %w", o.Address, err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: lazy dump: status pipe: %w", err)
	}
	defer statusR.Close()
	args := []string{"dump", "-t", strconv.Itoa(o.PID), "-D", o.ImagesDir, "-o", DefaultDumpLog, "-v4",
		"--leave-stopped", "--lazy-pages", "--address", o.Address, "--port", strconv.Itoa(port), "--status-fd", "3"}
	if o.TLS != nil {
		args = append(args, o.TLS.ServerArgs()...)
	}
	if o.FileLocks {
		args = append(args, "--file-locks")
	}
	if o.TCPEstablished {
		args = append(args, "--tcp-established")
	}
	if o.TCPClose {
		args = append(args, "--tcp-close")
	}
	if o.LinkRemap {
		args = append(args, "--link-remap")
	}
	if o.Flags.NodeMounts {
		args = append(args, "--external", "mnt[]")
	}
	if o.Flags.IgnoreCgroups {
		args = append(args, "--manage-cgroups=ignore")
	}
	if o.Flags.GhostLimit > 0 {
		args = append(args, "--ghost-limit", strconv.FormatUint(uint64(o.Flags.GhostLimit), 10))
	}
	cmd := exec.Command(o.CRIUPath, args...)
	cmd.ExtraFiles = []*os.File{statusW}
	if err := cmd.Start(); err != nil {
		statusW.Close()
		return nil, fmt.Errorf("checkpoint: start %s: %w", o.CRIUPath, err)
	}
	statusW.Close()
	d := &LazyDump{Addr: net.JoinHostPort(o.Address, strconv.Itoa(port)), cmd: cmd, logPath: filepath.Join(o.ImagesDir, DefaultDumpLog), done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.err = err
		d.mu.Unlock()
		close(d.done)
	}()
	// One byte on the status fd: images written, page server listening. EOF
	// first: CRIU failed.
	ready := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := statusR.Read(b[:])
		ready <- err
	}()
	select {
	case err := <-ready:
		if err == nil {
			return d, nil
		}
		<-d.done
		return nil, d.failure(err)
	case <-ctx.Done():
		d.Kill()
		return nil, &CRIUError{Op: "dump", LogPath: d.logPath, Err: ctx.Err()}
	}
}

// failure describes a failed lazy dump, quoting CRIU's log.
func (d *LazyDump) failure(cause error) error {
	d.mu.Lock()
	if d.err != nil {
		cause = d.err
	}
	d.mu.Unlock()
	e := &CRIUError{Op: "dump", LogPath: d.logPath, Err: cause}
	if b, err := os.ReadFile(d.logPath); err == nil {
		e.Lines = criulog.ErrorLines(b, maxQuotedLines)
	}
	return e
}

// Wait blocks until every page was fetched (the CRIU process exited), or ctx
// ends. After a successful Wait the tree is still there, stopped.
func (d *LazyDump) Wait(ctx context.Context) error {
	select {
	case <-d.done:
	case <-ctx.Done():
		return fmt.Errorf("checkpoint: lazy dump still serving pages: %w", ctx.Err())
	}
	d.mu.Lock()
	err := d.err
	d.mu.Unlock()
	if err != nil {
		return d.failure(err)
	}
	return nil
}

// Kill stops serving pages (a target still fetching them loses the job) and
// waits for the CRIU process to go.
func (d *LazyDump) Kill() {
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
	}
}

// PID is the CRIU process's PID.
func (d *LazyDump) PID() int { return d.cmd.Process.Pid }

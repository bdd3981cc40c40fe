package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/joblog"
)

// readyFD is the fd on which the agent waits for the shim's start report.
const readyFD = 3

// syncFD is init's end of the socket pair it shares with the shim until the job runs.
const syncFD = 3

// readyMsg is the shim's one-line report to the agent that launched it.
type readyMsg struct {
	State *State `json:"state,omitempty"`
	Error string `json:"error,omitempty"`
}

// RunShim is `ssi-shim shim <jobdir>`: it starts the job described by
// jobdir/spec.json and supervises it until it ends. exe is the ssi-shim binary
// (re-executed as init). It returns the shim's own exit code; the job's goes to
// exit.json.
func RunShim(dir, exe string, log *slog.Logger) int {
	return supervise(dir, log, func(spec Spec, cg *isolate.Cgroup, copyOut func(stdout, stderr *os.File)) (*running, error) {
		init, err := startInit(exe, spec)
		if err != nil {
			return nil, err
		}
		if err := cg.Add(init.cmd.Process.Pid); err != nil {
			_ = init.cmd.Process.Kill()
			_ = init.cmd.Wait()
			return nil, err
		}
		copyOut(init.stdout, init.stderr)
		job := &running{pid: init.cmd.Process.Pid, wait: func() int { return waitStatusCode(init.cmd.Wait()) }}
		if init.stdin != nil {
			if job.stdin, err = newStdinPump(log, dir, init.stdin, StdinState{}); err == nil {
				job.stdin.tty = spec.TTY != nil
			} else {
				init.stdin.Close() // the job reads end of file
				log.Error("job stdin", "err", err)
			}
			job.stdinKey = init.stdinKey
		}
		job.mainPID = init.release()
		return job, nil
	})
}

// RunRestore is `ssi-shim restore <jobdir>`: it restores the job checkpointed in
// the images named by jobdir/restore.json, with the job's stdout and stderr
// re-plumbed to new pipes of its own, and then supervises it like RunShim. The
// restored init is this process's child (CRIU's restore-sibling).
func RunRestore(dir string, log *slog.Logger) int {
	return supervise(dir, log, func(spec Spec, cg *isolate.Cgroup, copyOut func(stdout, stderr *os.File)) (*running, error) {
		var rs RestoreSpec
		if err := ReadJSON(dir, RestoreFile, &rs); err != nil {
			return nil, err
		}
		in, err := restoredStdin(log, dir, rs)
		if err != nil {
			return nil, err
		}
		outR, outW, errR, errW, err := outputPipes()
		if err != nil {
			in.discard()
			return nil, err
		}
		// Readers first: the restored job runs (and may write) as soon as CRIU is done.
		copyOut(outR, errR)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		t := time.Now()
		pid, err := criuRestore(ctx, rs, spec.Cgroup, outW, errW, in.r)
		criuMS := float64(time.Since(t).Microseconds()) / 1000
		outW.Close()
		errW.Close()
		if err != nil {
			in.discard()
			return nil, err
		}
		return &running{pid: pid, mainPID: childOf(pid), stdin: in.start(), stdinKey: in.key, criuMS: criuMS, wait: func() int {
			for {
				var ws unix.WaitStatus
				if _, err := unix.Wait4(pid, &ws, 0, nil); errors.Is(err, unix.EINTR) {
					continue
				} else if err != nil {
					return 255
				}
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}}, nil
	})
}

// running is a job's init, started or restored.
type running struct {
	pid, mainPID int
	wait         func() int // blocks until init is gone; returns the exit code
	// stdin feeds the job's stdin pipe (nil: the job's stdin is not ours),
	// whose CRIU key is stdinKey.
	stdin    *stdinPump
	stdinKey string
	// criuMS: how long a restore's `criu restore` took.
	criuMS float64
}

// supervise runs the part of a shim common to both modes: set up, let launch
// start the job, keep its output, wait for it, clean up, record the exit.
func supervise(dir string, log *slog.Logger, launch func(Spec, *isolate.Cgroup, func(stdout, stderr *os.File)) (*running, error)) int {
	// The shim must survive its agent and any terminal: a closed report pipe or a
	// hangup must not kill it.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	// Whatever started the agent may have leaked fds into it and so into us: none
	// of them may reach the job, whose every fd CRIU would have to dump.
	_ = unix.CloseRange(readyFD+1, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	ready := os.NewFile(readyFD, "ready")
	report := func(m readyMsg) {
		if ready == nil {
			return
		}
		b, _ := json.Marshal(m)
		_, _ = ready.Write(append(b, '\n'))
		_ = ready.Close()
		ready = nil
	}
	var cg *isolate.Cgroup
	fail := func(err error) int {
		log.Error("shim failed", "dir", dir, "err", err)
		if cg != nil {
			_ = cg.Destroy()
		}
		report(readyMsg{Error: err.Error()})
		return 1
	}

	var spec Spec
	if err := ReadJSON(dir, SpecFile, &spec); err != nil {
		return fail(err)
	}
	log = log.With("gpid", spec.GPID)
	logf, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fail(fmt.Errorf("shim: open job log: %w", err))
	}
	defer logf.Close()
	out := joblog.NewWriter(logf)
	if cg, err = isolate.OpenCgroup(spec.Cgroup); err != nil {
		return fail(err)
	}
	var copiers sync.WaitGroup
	var pipes []*os.File
	copyOut := func(stdout, stderr *os.File) {
		for _, s := range []struct {
			r *os.File
			k joblog.Kind
		}{{stdout, joblog.Stdout}, {stderr, joblog.Stderr}} {
			if s.r == nil {
				continue // a terminal has one output stream
			}
			pipes = append(pipes, s.r)
			copiers.Add(1)
			go func() {
				defer copiers.Done()
				// A terminal's master reads EIO once the job's side is closed.
				if _, err := io.Copy(out.StreamWriter(s.k), s.r); err != nil && !errors.Is(err, syscall.EIO) {
					log.Error("copy job output", "stream", s.k, "err", err)
				}
				s.r.Close()
			}()
		}
	}
	job, err := launch(spec, cg, copyOut)
	if err != nil {
		for _, p := range pipes {
			p.Close()
		}
		return fail(err)
	}
	st := State{MainPID: job.mainPID, CRIUMS: job.criuMS}
	if job.stdin != nil {
		stop := serveStdin(log, dir, job.stdin)
		defer stop()
		st.StdinKey = job.stdinKey
	}
	st.Shim, _ = Identify(os.Getpid())
	if st.Init, err = Identify(job.pid); err != nil {
		st.Init = ProcID{PID: job.pid} // exited already; Start unknown
	}
	if err := WriteJSON(dir, StateFile, st); err != nil {
		log.Error("write state", "err", err)
	}
	report(readyMsg{State: &st})
	log.Info("job running", "init_pid", st.Init.PID, "pid", st.MainPID)
	ended := make(chan struct{})
	if spec.Fence {
		go watchFence(dir, job.pid, log, ended)
	}

	exit := Exit{Code: job.wait()}
	close(ended)
	// Init's exit killed everything else in the PID namespace, so the pipes close
	// promptly; the bound only guards against a writer outside the namespace.
	drained := make(chan struct{})
	go func() { copiers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		exit.Error = "job output still open 10s after the job exited; output may be cut"
		for _, p := range pipes {
			p.Close()
		}
	}
	if _, err := os.Stat(filepath.Join(dir, MovedFile)); err == nil {
		// The job migrated away and this was its stopped source copy: the job did
		// not end, so there is no exit to report. The cgroup is the agent's to remove.
		log.Info("source copy of a migrated job is gone")
		return 0
	}
	if err := cg.Destroy(); err != nil {
		log.Error("remove cgroup", "err", err)
		exit.Error = strings.TrimSpace(exit.Error + " " + err.Error())
	}
	exit.Time = time.Now().UTC()
	if err := WriteJSON(dir, ExitFile, exit); err != nil {
		log.Error("write exit status", "err", err)
		return 1
	}
	log.Info("job exited", "code", exit.Code)
	return 0
}

// waitStatusCode turns cmd.Wait's result into a shell-style exit code.
func waitStatusCode(err error) int {
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if !errors.As(err, &ee) {
		return 255
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		return 255
	case ws.Signaled():
		return 128 + int(ws.Signal())
	default:
		return ws.ExitStatus()
	}
}

type initProc struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File
	sync           *os.File
	// stdin is the write end of the job's stdin pipe (nil: /dev/null),
	// stdinKey its CRIU key.
	stdin    *os.File
	stdinKey string
}

// startInit clones `ssi init` into the job's namespaces, held before running
// anything until release.
//
// init itself stays root; it starts the command as the job's user (uid, gid,
// groups). It sets up the job's mount namespace first (its own /proc and
// /dev/shm: ssi-init's setup_mounts, RunInit's setupMounts), which takes
// CAP_SYS_ADMIN, and that /proc, of the job's PID namespace, is what lets
// CRIU's parasite dump the job without mounting one of its own (cr-dump:
// parasite_get_proc_fd) in the job's working directory, which a task of
// another user could not. init is ssi's own small program; the job's
// processes cannot signal or trace it (another uid, not dumpable).
func startInit(exe string, spec Spec) (*initProc, error) {
	child, ip, err := jobStdio(spec)
	if err != nil {
		return nil, err
	}
	defer closeFiles(child[:]...) // init's ends: its own once it started
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		ip.close()
		return nil, fmt.Errorf("shim: sync socket: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "sync"), os.NewFile(uintptr(pair[1]), "sync-init")
	defer theirs.Close()
	groups := make([]string, len(spec.Groups))
	for i, g := range spec.Groups {
		groups[i] = strconv.Itoa(g)
	}
	path, args := initProgram(exe)
	args = append(args, "--node", spec.Node, "--gpid", strconv.FormatUint(spec.GPID, 10),
		"--uid", strconv.Itoa(spec.UID), "--gid", strconv.Itoa(spec.GID), "--groups", strings.Join(groups, ","))
	if spec.TTY != nil {
		args = append(args, "--tty")
	}
	cmd := &exec.Cmd{
		Path:       path,
		Args:       append(append(args, "--"), spec.Argv...),
		Env:        spec.Env,
		Dir:        spec.Workdir,
		Stdin:      child[0],
		Stdout:     child[1],
		Stderr:     child[2],
		ExtraFiles: []*os.File{theirs},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: isolate.JobNamespaces,
			Setsid:     true,
		},
	}
	if err := cmd.Start(); err != nil {
		ip.close()
		mine.Close()
		return nil, fmt.Errorf("shim: start job init in %s: %w", spec.Workdir, err)
	}
	ip.cmd, ip.sync = cmd, mine
	return ip, nil
}

// InitBinary is the job's init, beside ssi-shim: a small C program
// (cmd/ssi-init), one thread and a few pages for CRIU to dump and restore at
// every move.
const InitBinary = "ssi-init"

// initProgram returns the program and first arguments of a job's init:
// ssi-init beside shimExe, or, where it is missing (a node installed without
// it), ssi-shim's own Go init (RunInit), which behaves the same but costs
// every dump ~14 ms and every job ~0.8 MiB more.
func initProgram(shimExe string) (string, []string) {
	p := filepath.Join(filepath.Dir(shimExe), InitBinary)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p, []string{InitBinary}
	}
	return shimExe, []string{"ssi-shim", "init"}
}

// jobStdio makes fds 0-2 of a job's init (child) and the shim's ends of them
// (in ip): a terminal (spec.TTY); or a stdin pipe (spec.Stdin) or /dev/null,
// and pipes for stdout and stderr.
func jobStdio(spec Spec) (child [3]*os.File, ip *initProc, err error) {
	ip = &initProc{}
	if spec.TTY != nil {
		master, slave, err := openPTY(*spec.TTY, spec.UID, spec.GID)
		if err != nil {
			return child, nil, err
		}
		// The pump writes through a handle of its own, which it may close
		// (end of input) while the output is still read from the master.
		in, err := dupFile(master)
		if err != nil {
			closeFiles(master, slave)
			return child, nil, err
		}
		ip.stdout, ip.stdin = master, in
		return [3]*os.File{slave, slave, slave}, ip, nil
	}
	if spec.Stdin {
		if child[0], ip.stdin, ip.stdinKey, err = stdinPipe(); err != nil {
			return child, nil, err
		}
	} else if child[0], err = os.Open(os.DevNull); err != nil {
		return child, nil, fmt.Errorf("shim: open %s: %w", os.DevNull, err)
	}
	if ip.stdout, child[1], ip.stderr, child[2], err = outputPipes(); err != nil {
		closeFiles(child[0], ip.stdin)
		return child, nil, err
	}
	return child, ip, nil
}

// close closes the shim's ends of a job that did not start.
func (p *initProc) close() { closeFiles(p.stdout, p.stderr, p.stdin) }

// closeFiles closes the files that are not nil (one may be given twice).
func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// release lets init run the command and returns the command's host PID (0 when
// it could not be started).
func (p *initProc) release() int {
	defer p.sync.Close()
	if _, err := p.sync.Write([]byte{'g'}); err != nil {
		return 0
	}
	var b [1]byte
	if n, _ := p.sync.Read(b[:]); n != 1 {
		return 0 // init exited: the command was not found or could not start
	}
	return childOf(p.cmd.Process.Pid)
}

// childOf returns the first child of pid (0 if none). A child is listed under
// the thread that forked it, so every thread is looked at.
func childOf(pid int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		kids, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(kids)); len(f) > 0 {
			child, _ := strconv.Atoi(f[0])
			return child
		}
	}
	return 0
}

// outputPipes makes the job's stdout and stderr pipes.
func outputPipes() (outR, outW, errR, errW *os.File, err error) {
	if outR, outW, err = os.Pipe(); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("shim: stdout pipe: %w", err)
	}
	if errR, errW, err = os.Pipe(); err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, nil, nil, fmt.Errorf("shim: stderr pipe: %w", err)
	}
	return outR, outW, errR, errW, nil
}

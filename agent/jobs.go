package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// basePath is the PATH jobs get unless the request sets one.
const basePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// A job's environment is what the user passed (--env) over ssi's own: PATH
// (basePath), HOME, USER, LOGNAME of the job's user, SSI_GPID, and goDebug;
// nothing of the agent's own environment.
//
// goDebug keeps Go (>= 1.25) jobs migratable: by default their runtime keeps
// their cgroup's CPU limit files open, which ties a restore to the source
// cgroup's path. A job's own --env GODEBUG=... replaces it.
const goDebug = "GODEBUG=containermaxprocs=0,updatemaxprocs=0"

// job is a job this agent supervises.
type job struct {
	gpid   uint64
	dir    string
	state  shim.State
	cgroup *isolate.Cgroup
	cpus   float64
	memory int64
	// placed is when this node started the job from a placement (a run, a
	// restore from a checkpoint); zero for jobs adopted after a restart or
	// migrated in. See recent.go.
	placed time.Time
	// token is the placement token this node served the job under (empty
	// when none): the node lists it with the job in the same figures.
	token string
	// arrivedFrom is the node a migration brought the job from (empty for a
	// job started or adopted here): its late resume call is admitted.
	arrivedFrom string
	// lastCPU and lastCPUAt are the previous CPU sample, for the CPU rate;
	// lastSched and lastAt the previous run+wait time of each of the job's
	// threads, for its demand.
	lastCPU   time.Duration
	lastCPUAt time.Time
	lastSched map[int]time.Duration
	lastAt    time.Time
	// busy says what holds the job frozen or about to be (a migration, a
	// checkpoint), guarded by Agent.mu; signals are held off meanwhile.
	busy string
	done chan struct{}
}

// markBusy reserves a running job of this node for a migration or a
// checkpoint (what says which, for the messages of refused signals).
func (a *Agent) markBusy(gpid uint64, what string) (*job, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	j := a.jobs[gpid]
	switch {
	case j == nil || !j.state.Init.Alive():
		return nil, api.Errorf(api.CodeConflict, "gpid %d is not running on %s", gpid, a.cfg.Name)
	case j.busy != "":
		return nil, api.Errorf(api.CodeConflict, "gpid %d is already %s; retry when that is done", gpid, j.busy)
	}
	j.busy = what
	return j, nil
}

// clearBusy ends what markBusy reserved, and the migration out, if any.
func (a *Agent) clearBusy(j *job) {
	if j == nil {
		return
	}
	a.mu.Lock()
	j.busy = ""
	delete(a.outgoing, j.gpid)
	a.mu.Unlock()
}

func (a *Agent) jobDir(gpid uint64) string {
	return filepath.Join(a.jobsDir, strconv.FormatUint(gpid, 10))
}

// spawn starts req on this node, placed under token (recent.go), and returns
// its gpid.
func (a *Agent) spawn(ctx context.Context, req api.RunRequest, who caller, token string) (api.RunResponse, error) {
	if err := validateRun(req); err != nil {
		return api.RunResponse{}, err
	}
	name := req.User
	if name == "" {
		name = who.user
	}
	if name != who.user && !who.admin {
		return api.RunResponse{}, api.Errorf(api.CodeForbidden, "--user %s: only admins may run jobs as another user (you are %s)", name, who)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return api.RunResponse{}, api.Errorf(api.CodeBadRequest, "user %q does not exist on node %s: an ssi user runs as the unix account of the same name on every node; create it there (useradd %s): %v", name, a.cfg.Name, name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if (uid == 0 || gid == 0) && !who.admin {
		return api.RunResponse{}, api.Errorf(api.CodeForbidden, "user %s maps to a uid or gid 0 account on node %s: only admins may run jobs as root", name, a.cfg.Name)
	}
	var groups []int
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil {
				groups = append(groups, n)
			}
		}
	}
	workdir, err := a.workdir(req, u.HomeDir)
	if err != nil {
		return api.RunResponse{}, err
	}
	env := append([]string{basePath, "HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username, goDebug}, req.Env...)

	p, err := a.store.Create(ctx, pidtable.Proc{
		Node: a.cfg.Name, User: u.Username, UID: uid, GID: gid, Argv: req.Argv,
		Workdir: workdir, CPUs: req.CPUs, Memory: req.Memory, Pinned: req.Pin,
		Constraints: req.Constraints, TTY: req.TTY != nil,
		Service: req.Service, ServiceHash: req.ServiceHash,
	})
	if err != nil {
		if errors.Is(err, pidtable.ErrNodeNotReady) {
			return api.RunResponse{}, api.Errorf(api.CodeNotReady, "node %s lost its etcd lease; retry in a few seconds", a.cfg.Name)
		}
		return api.RunResponse{}, fmt.Errorf("allocate gpid: %w", err)
	}
	log := a.log.With("gpid", p.GPID)
	dir := a.jobDir(p.GPID)
	cgPath := isolate.CgroupPath(a.cfg.CgroupParent, a.cfg.Name, p.GPID)
	// undo removes everything this spawn created, so a failed start leaves no
	// record, directory or cgroup behind.
	undo := func(cause error) error {
		if cg, err := isolate.OpenCgroup(cgPath); err == nil {
			_ = cg.Destroy()
		}
		_ = os.RemoveAll(dir)
		if err := a.store.Delete(context.WithoutCancel(ctx), p.GPID, a.cfg.Name); err != nil {
			log.Error("remove record of failed job", "err", err)
		}
		log.Warn("job failed to start", "err", cause)
		return cause
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return api.RunResponse{}, undo(fmt.Errorf("create job dir: %w", err))
	}
	// ssi's own variables come first: the C library's getenv takes the first.
	env = append([]string{"SSI_GPID=" + strconv.FormatUint(p.GPID, 10)}, env...)
	spec := shim.Spec{GPID: p.GPID, Node: a.cfg.Name, Argv: req.Argv, Env: env, Workdir: workdir, UID: uid, GID: gid, Groups: groups, Cgroup: cgPath, Stdin: req.Stdin || req.TTY != nil, TTY: req.TTY}
	if err := shim.WriteJSON(dir, shim.SpecFile, spec); err != nil {
		return api.RunResponse{}, undo(err)
	}
	cg, err := isolate.CreateCgroup(cgPath, a.limits(req.CPUs, req.Memory))
	if err != nil {
		return api.RunResponse{}, undo(err)
	}
	cmd, st, err := shim.Launch(ctx, a.cfg.ShimExe, dir, shim.ModeStart)
	if err != nil {
		if cmd != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if errors.Is(err, shim.ErrStart) {
			return api.RunResponse{}, undo(api.Errorf(api.CodeBadRequest, "node %s could not start the job: %v", a.cfg.Name, err))
		}
		return api.RunResponse{}, undo(err)
	}
	j := &job{gpid: p.GPID, dir: dir, state: st, cgroup: cg, cpus: req.CPUs, memory: req.Memory, placed: time.Now(), token: token, done: make(chan struct{})}
	a.mu.Lock()
	a.jobs[p.GPID] = j
	a.mu.Unlock()
	if _, _, err := a.store.Transition(ctx, p.GPID, pidtable.Start, a.cfg.Name, func(p *pidtable.Proc) error {
		now := time.Now().UTC()
		p.State, p.PID, p.InitPID, p.Started, p.Arrived = pidtable.Running, st.MainPID, st.Init.PID, now, now
		return nil
	}); err != nil {
		log.Error("record job as running", "err", err)
	}
	go a.watch(j, cmd)
	log.Info("job started", "pid", st.MainPID, "argv", req.Argv, "user", u.Username)
	return api.RunResponse{GPID: p.GPID, Node: a.cfg.Name, Workdir: workdir}, nil
}

// Limits of a run request: argv and env are stored in the job's record and
// spec, so they are bounded well below etcd's request limit (1.5 MiB).
const (
	maxArgs     = 4096
	maxArgBytes = 256 << 10
)

// limits are the cgroup limits of a job of this node that requested cpus and
// memory: the request, and the node's cpuset.
func (a *Agent) limits(cpus float64, memory int64) isolate.Limits {
	return isolate.Limits{CPUs: cpus, Memory: memory, CPUSet: a.cfg.CPUSet}
}

// validateRun checks what can be checked without the node.
func validateRun(req api.RunRequest) error {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return api.Errorf(api.CodeBadRequest, "no command given")
	}
	if len(req.Argv)+len(req.Env) > maxArgs {
		return api.Errorf(api.CodeBadRequest, "%d arguments and environment entries: at most %d", len(req.Argv)+len(req.Env), maxArgs)
	}
	size := 0
	for _, s := range append(req.Argv[:len(req.Argv):len(req.Argv)], req.Env...) {
		size += len(s) + 1
		if strings.IndexByte(s, 0) >= 0 {
			return api.Errorf(api.CodeBadRequest, "argument or environment entry %.40q contains a NUL byte", s)
		}
	}
	if size > maxArgBytes {
		return api.Errorf(api.CodeBadRequest, "argv and env are %d bytes: at most %d (the kernel's ARG_MAX is not the limit: the job's record must fit in etcd)", size, maxArgBytes)
	}
	for _, e := range req.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return api.Errorf(api.CodeBadRequest, "--env %q: want KEY=VALUE", e)
		}
	}
	if req.CPUs < 0 || req.Memory < 0 {
		return api.Errorf(api.CodeBadRequest, "--cpus and --memory must not be negative")
	}
	if req.Memory > 0 && req.Memory < 4<<20 {
		return api.Errorf(api.CodeBadRequest, "--memory %d bytes: at least 4 MiB is needed to start a job", req.Memory)
	}
	return nil
}

func (a *Agent) workdir(req api.RunRequest, home string) (string, error) {
	isDir := func(p string) bool { fi, err := os.Stat(p); return err == nil && fi.IsDir() }
	if req.WorkdirExplicit {
		if !filepath.IsAbs(req.Workdir) {
			return "", api.Errorf(api.CodeBadRequest, "--workdir %q: must be an absolute path", req.Workdir)
		}
		if !isDir(req.Workdir) {
			return "", api.Errorf(api.CodeBadRequest, "--workdir %s: no such directory on node %s", req.Workdir, a.cfg.Name)
		}
		return req.Workdir, nil
	}
	for _, d := range []string{req.Workdir, home} {
		if d != "" && filepath.IsAbs(d) && isDir(d) {
			return d, nil
		}
	}
	return "/", nil
}

// watch waits for j's shim to exit, then records how the job ended.
func (a *Agent) watch(j *job, cmd *exec.Cmd) {
	err := waitExit(j.state.Shim)
	if cmd != nil {
		_ = cmd.Wait()
	}
	if err != nil {
		a.log.Error("wait for shim", "gpid", j.gpid, "err", err)
	}
	a.finish(context.Background(), j)
}

// errNotOwner stops finish from recording an end for a job another node owns.
var errNotOwner = errors.New("agent: job owned by another node")

// finish records the end of j in etcd, retrying while etcd is unreachable. A
// job that migrated away, or an uncommitted migration copy, ends only locally.
// A job that ends while it is being migrated or checkpointed ends here too
// (the End transition clears the migration): the migration then finds its
// record gone and reports the end instead of resuming anything.
func (a *Agent) finish(ctx context.Context, j *job) {
	var ex shim.Exit
	err := shim.ReadJSON(j.dir, shim.ExitFile, &ex)
	a.mu.Lock()
	dumping := j.busy != ""
	a.mu.Unlock()
	tr := pidtable.End
	update := func(p *pidtable.Proc) error {
		if p.Node != a.cfg.Name {
			return fmt.Errorf("%w: gpid %d is owned by %s", errNotOwner, p.GPID, p.Node)
		}
		switch {
		case err == nil && dumping && initCrashedInAbortedDump(ex.Code, j.dir):
			p.State, p.Error = pidtable.Lost, "the job ended while CRIU was dumping it (for a migration or a checkpoint), and the aborted dump left the job's init crashed (a SIGTRAP in CRIU's parasite code, exit 2): the job's own exit status is unknown"
		case err != nil && p.State == pidtable.Starting && p.RestoredFrom != "":
			p.State, p.Error = pidtable.Lost, "the restore of checkpoint "+p.RestoredFrom+" was interrupted (its agent stopped); restore it again: ssi restore "+p.RestoredFrom
		case err != nil:
			p.State, p.Error = pidtable.Lost, "the job's shim exited without an exit status (see "+filepath.Join(j.dir, shim.ShimLog)+")"
		default:
			code := ex.Code
			p.State, p.ExitCode, p.Error = pidtable.Exited, &code, ex.Error
		}
		p.Ended = time.Now().UTC()
		return nil
	}
	var moved migrate.MovedMark
	if shim.ReadJSON(j.dir, shim.MovedFile, &moved) == nil {
		// The job did not end: it migrated away, or was a copy that was never
		// committed, or was stopped into a checkpoint.
		tr = pidtable.CheckpointStop
		update = func(p *pidtable.Proc) error {
			if moved.Checkpoint == "" || p.Node != a.cfg.Name || p.State != pidtable.Checkpointing || p.Checkpoint != moved.Checkpoint {
				return errNotOwner
			}
			p.State, p.PID, p.InitPID, p.Ended = pidtable.Checkpointed, 0, 0, time.Now().UTC()
			return nil
		}
	}
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		_, _, uerr := a.store.Transition(ctx, j.gpid, tr, a.cfg.Name, update)
		if uerr == nil || errors.Is(uerr, pidtable.ErrNotFound) || errors.Is(uerr, errNotOwner) {
			break
		}
		if errors.Is(uerr, pidtable.ErrIllegalTransition) {
			// Ended already (the healer, say), or no longer ours: nothing to record.
			a.log.Warn("job end not recorded: its record does not allow it", "gpid", j.gpid, "err", uerr)
			break
		}
		a.log.Warn("record job end", "gpid", j.gpid, "err", uerr)
		time.Sleep(backoff)
	}
	a.mu.Lock()
	delete(a.jobs, j.gpid)
	a.mu.Unlock()
	close(j.done)
	if moved.Time.IsZero() {
		a.log.Info("job ended", "gpid", j.gpid, "code", ex.Code, "lost", err != nil)
	} else {
		a.log.Info("the job's copy here is gone; the job goes on elsewhere or in a checkpoint", "gpid", j.gpid, "checkpoint", moved.Checkpoint, "hand_over", moved.HandOver)
	}
}

// initCrashedInAbortedDump recognises a known CRIU defect: a task of the job
// dies while CRIU is dumping the tree, the dump aborts, and CRIU leaves the
// job's init, which it had infected, running its parasite code; the
// parasite's trap reaches init with no tracer, and the Go runtime in init
// dies of it (exit status 2, "SIGTRAP: trace trap" on the job's stderr),
// taking the job's own status with its PID namespace. Such an end is
// recorded lost, with the reason, not as the job's exit 2 (docs/ROBUSTNESS.md).
func initCrashedInAbortedDump(code int, dir string) bool {
	if code != 2 {
		return false
	}
	f, err := os.Open(filepath.Join(dir, shim.LogFile))
	if err != nil {
		return false
	}
	defer f.Close()
	const tail = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > tail {
		_, _ = f.Seek(fi.Size()-tail, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, tail))
	return bytes.Contains(b, []byte("SIGTRAP: trace trap"))
}

// waitExit blocks until the process id names has exited, using a pidfd through
// the runtime's poller (no thread blocked per job; works for non-children).
func waitExit(id shim.ProcID) error {
	fd, err := unix.PidfdOpen(id.PID, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", id.PID, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	if !id.Alive() { // the PID was reused or the shim is a zombie: it is gone
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("pidfd %d: %w", id.PID, err)
	}
	return rc.Read(func(fd uintptr) bool {
		n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return n > 0
	})
}

// signal delivers sig to a job running here.
func (a *Agent) signal(gpid uint64, sig syscall.Signal) error {
	// Under the lock: a migration or checkpoint cannot claim the job between
	// the check and the kill.
	a.mu.Lock()
	defer a.mu.Unlock()
	j := a.jobs[gpid]
	if j == nil && a.outgoing[gpid] != "" {
		return api.Errorf(api.CodeBusy, "gpid %d is being migrated (its locks are being handed over): the signal was not sent; retry in a moment", gpid)
	}
	if j == nil {
		return api.Errorf(api.CodeConflict, "gpid %d is not running on node %s", gpid, a.cfg.Name)
	}
	if !j.state.Init.Alive() {
		return api.Errorf(api.CodeConflict, "gpid %d has just exited", gpid)
	}
	if j.busy != "" {
		// A signal to a frozen copy would be lost with it if the move
		// commits; the client retries, and reaches the job where it runs.
		return api.Errorf(api.CodeBusy, "gpid %d is %s: the signal was not sent; retry in a moment (ssi kill and ssi run retry by themselves)", gpid, j.busy)
	}
	var err error
	switch sig {
	case syscall.SIGSTOP:
		// Init cannot catch SIGSTOP to forward it: stop the job's process group.
		err = unix.Kill(-j.state.MainPID, sig)
	default:
		// Init forwards catchable signals to the job's process group; SIGKILL kills
		// init and with it the whole PID namespace.
		err = unix.Kill(j.state.Init.PID, sig)
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal gpid %d: %w", gpid, err)
	}
	a.log.Info("signalled job", "gpid", gpid, "signal", unix.SignalName(sig))
	return nil
}

func (a *Agent) liveJobs() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.jobs)
}

func (a *Agent) localJob(gpid uint64) *job {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.jobs[gpid]
}

// reconcile brings the process table and the job directories into agreement
// after a (re)start: adopt live jobs, record ends that happened while the agent
// was away, mark Lost what vanished, and remove leftovers of aborted starts.
func (a *Agent) reconcile(ctx context.Context) error {
	procs, err := a.store.Procs(ctx, a.cfg.Name)
	if err != nil {
		return err
	}
	known := map[uint64]bool{}
	for _, p := range procs {
		known[p.GPID] = true
		if p.State.Ended() {
			continue
		}
		dir := a.jobDir(p.GPID)
		j := &job{gpid: p.GPID, dir: dir, cpus: p.CPUs, memory: p.Memory, done: make(chan struct{})}
		j.cgroup, _ = isolate.OpenCgroup(isolate.CgroupPath(a.cfg.CgroupParent, a.cfg.Name, p.GPID))
		stErr := shim.ReadJSON(dir, shim.StateFile, &j.state)
		switch {
		case stErr == nil && j.state.Shim.Alive():
			a.mu.Lock()
			a.jobs[p.GPID] = j
			a.mu.Unlock()
			switch p.State {
			case pidtable.Migrating:
				a.mig.RollbackOrphan(ctx, p, j, nil)
			case pidtable.Checkpointing:
				// A checkpoint was being taken: the job may be stopped. It runs
				// on; a checkpoint that was saved completely is kept.
				resume(j)
				a.releaseCheckpointing(ctx, p.GPID, p.Checkpoint)
			}
			if _, err := os.Stat(filepath.Join(dir, shim.RestoreFile)); err == nil {
				// Restored here by a migration that committed (the record is ours)
				// while this agent was down: the copy is still stopped.
				resume(j)
				_ = os.Remove(filepath.Join(dir, shim.RestoreFile))
			}
			if p.State == pidtable.Starting {
				_, _, _ = a.store.Transition(ctx, p.GPID, pidtable.Start, a.cfg.Name, func(p *pidtable.Proc) error {
					now := time.Now().UTC()
					p.State, p.PID, p.InitPID, p.Started, p.Arrived = pidtable.Running, j.state.MainPID, j.state.Init.PID, now, now
					return nil
				})
			}
			go a.watch(j, nil)
			a.log.Info("adopted running job", "gpid", p.GPID, "pid", j.state.MainPID)
		case a.resumeHandedOver(ctx, p, j):
			// Restored from its images (or recorded lost, saying why).
		default:
			// Ended while we were away (exit.json present) or lost (absent).
			if j.cgroup != nil {
				_ = j.cgroup.Destroy()
			}
			a.finish(ctx, j)
		}
	}
	a.mig.RemoveStaleImages()
	if err := a.reconcileCheckpoints(ctx); err != nil {
		return err
	}
	entries, err := os.ReadDir(a.jobsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("agent: list jobs: %w", err)
	}
	for _, e := range entries {
		gpid, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil || known[gpid] {
			continue
		}
		a.removeJobDir(gpid)
	}
	return nil
}

// removeJobDir deletes the directory of a job this node no longer has a record
// for, stopping anything left of it first.
func (a *Agent) removeJobDir(gpid uint64) {
	dir := a.jobDir(gpid)
	var st shim.State
	if shim.ReadJSON(dir, shim.StateFile, &st) == nil && st.Init.Alive() {
		_ = unix.Kill(st.Init.PID, unix.SIGKILL)
	}
	if cg, err := isolate.OpenCgroup(isolate.CgroupPath(a.cfg.CgroupParent, a.cfg.Name, gpid)); err == nil {
		_ = cg.Destroy()
	}
	if err := os.RemoveAll(dir); err != nil {
		a.log.Warn("remove job dir", "gpid", gpid, "err", err)
	}
}

// gcLoop forgets ended jobs older than the retention period.
func (a *Agent) gcLoop(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		a.gc(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) gc(ctx context.Context) {
	// Directories are listed before the records: a job directory is made only
	// after its record names this node, so a directory listed here whose
	// record does not (below) belongs to a job that lives elsewhere now, e.g.
	// restored from a checkpoint on another node.
	entries, _ := os.ReadDir(a.jobsDir)
	select {
	case <-a.own.Synced():
	case <-ctx.Done():
		return
	}
	procs, _ := a.own.Procs()
	ours := make(map[uint64]bool, len(procs))
	for _, p := range procs {
		ours[p.GPID] = true
	}
	for _, e := range entries {
		gpid, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil || ours[gpid] {
			continue
		}
		a.mu.Lock()
		busy := a.jobs[gpid] != nil
		a.mu.Unlock()
		if _, in := a.mig.IncomingSource(gpid); in {
			busy = true
		}
		// Young directories may be an incoming migration being prepared (its
		// record names the source until commit).
		if fi, err := e.Info(); busy || err != nil || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		a.removeJobDir(gpid)
		a.log.Debug("gc: removed the directory of a job owned elsewhere", "gpid", gpid)
	}
	cutoff := time.Now().Add(-a.cfg.Retention)
	for _, p := range procs {
		if !p.State.Ended() || p.Ended.After(cutoff) {
			continue
		}
		if err := a.store.Delete(ctx, p.GPID, a.cfg.Name); err != nil {
			a.log.Warn("gc: delete record", "gpid", p.GPID, "err", err)
			continue
		}
		a.removeJobDir(p.GPID)
		a.log.Debug("gc: forgot ended job", "gpid", p.GPID)
	}
}

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/isolate"
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

// MaxArgs and MaxArgBytes limit a run request: argv and env are stored in
// the job's record and spec, so they are bounded well below etcd's request
// limit (1.5 MiB).
const (
	MaxArgs     = 4096
	MaxArgBytes = 256 << 10
)

// StartRequest is a job to start here.
type StartRequest struct {
	api.RunRequest
	// User is the account the job runs as (the caller, or the one an admin
	// named); AllowRoot lets it be a uid or gid 0 account (admins only).
	User      string
	AllowRoot bool
	// Token is the placement this node serves the job under (see Job).
	Token string
}

// Start starts req on this node and returns its gpid.
func (s *Supervisor) Start(ctx context.Context, req StartRequest) (api.RunResponse, error) {
	if err := ValidateRun(req.RunRequest); err != nil {
		return api.RunResponse{}, err
	}
	u, err := user.Lookup(req.User)
	if err != nil {
		return api.RunResponse{}, errdefs.Invalidf("user %q does not exist on node %s: an ssi user runs as the unix account of the same name on every node; create it there (useradd %s): %v", req.User, s.cfg.Node, req.User, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if (uid == 0 || gid == 0) && !req.AllowRoot {
		return api.RunResponse{}, errdefs.Forbiddenf("user %s maps to a uid or gid 0 account on node %s: only admins may run jobs as root", req.User, s.cfg.Node)
	}
	var groups []int
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil {
				groups = append(groups, n)
			}
		}
	}
	workdir, err := s.workdir(req.RunRequest, u.HomeDir)
	if err != nil {
		return api.RunResponse{}, err
	}
	env := append([]string{basePath, "HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username, goDebug}, req.Env...)

	p, err := s.cfg.Table.Create(ctx, pidtable.Proc{
		Node: s.cfg.Node, User: u.Username, UID: uid, GID: gid, Argv: req.Argv,
		Workdir: workdir, CPUs: req.CPUs, Memory: req.Memory, Pinned: req.Pin,
		Constraints: req.Constraints, TTY: req.TTY != nil,
		Service: req.Service, ServiceHash: req.ServiceHash,
	})
	if err != nil {
		if errors.Is(err, pidtable.ErrNodeNotReady) {
			return api.RunResponse{}, errdefs.Unavailablef("node %s lost its etcd lease; retry in a few seconds", s.cfg.Node)
		}
		return api.RunResponse{}, fmt.Errorf("allocate gpid: %w", err)
	}
	log := s.log.With("gpid", p.GPID)
	dir := s.Dir(p.GPID)
	cgPath := isolate.CgroupPath(s.cfg.CgroupParent, s.cfg.Node, p.GPID)
	// undo removes everything this start created, so a failed start leaves
	// no record, directory or cgroup behind.
	undo := func(cause error) error {
		if cg, err := isolate.OpenCgroup(cgPath); err == nil {
			_ = cg.Destroy()
		}
		_ = os.RemoveAll(dir)
		if err := s.cfg.Table.Delete(context.WithoutCancel(ctx), p.GPID, s.cfg.Node); err != nil {
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
	spec := shim.Spec{GPID: p.GPID, Node: s.cfg.Node, Argv: req.Argv, Env: env, Workdir: workdir, UID: uid, GID: gid, Groups: groups, Cgroup: cgPath, Stdin: req.Stdin || req.TTY != nil, TTY: req.TTY}
	if err := shim.WriteJSON(dir, shim.SpecFile, spec); err != nil {
		return api.RunResponse{}, undo(err)
	}
	cg, err := isolate.CreateCgroup(cgPath, s.Limits(req.CPUs, req.Memory))
	if err != nil {
		return api.RunResponse{}, undo(err)
	}
	cmd, st, err := shim.Launch(ctx, s.cfg.ShimExe, dir, shim.ModeStart)
	if err != nil {
		if cmd != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if errors.Is(err, shim.ErrStart) {
			return api.RunResponse{}, undo(errdefs.Invalidf("node %s could not start the job: %w", s.cfg.Node, err))
		}
		return api.RunResponse{}, undo(err)
	}
	// Registered before the record says it runs, watched after: its end,
	// however soon, is recorded after its start.
	j := s.Register(Launched{GPID: p.GPID, Dir: dir, State: st, Cgroup: cg, CPUs: req.CPUs, Memory: req.Memory, Placed: time.Now(), Token: req.Token})
	if _, _, err := s.cfg.Table.Transition(ctx, p.GPID, pidtable.Start, s.cfg.Node, func(p *pidtable.Proc) error {
		now := time.Now().UTC()
		p.State, p.PID, p.InitPID, p.Started, p.Arrived = pidtable.Running, st.MainPID, st.Init.PID, now, now
		return nil
	}); err != nil {
		log.Error("record job as running", "err", err)
	}
	s.watch(j, cmd.Wait)
	log.Info("job started", "pid", st.MainPID, "argv", req.Argv, "user", u.Username)
	return api.RunResponse{GPID: p.GPID, Node: s.cfg.Node, Workdir: workdir}, nil
}

// ValidateRun checks what can be checked of a run request without a node.
func ValidateRun(req api.RunRequest) error {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return errdefs.Invalidf("no command given")
	}
	if len(req.Argv)+len(req.Env) > MaxArgs {
		return errdefs.Invalidf("%d arguments and environment entries: at most %d", len(req.Argv)+len(req.Env), MaxArgs)
	}
	size := 0
	for _, s := range append(req.Argv[:len(req.Argv):len(req.Argv)], req.Env...) {
		size += len(s) + 1
		if strings.IndexByte(s, 0) >= 0 {
			return errdefs.Invalidf("argument or environment entry %.40q contains a NUL byte", s)
		}
	}
	if size > MaxArgBytes {
		return errdefs.Invalidf("argv and env are %d bytes: at most %d (the kernel's ARG_MAX is not the limit: the job's record must fit in etcd)", size, MaxArgBytes)
	}
	for _, e := range req.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return errdefs.Invalidf("--env %q: want KEY=VALUE", e)
		}
	}
	if req.CPUs < 0 || req.Memory < 0 {
		return errdefs.Invalidf("--cpus and --memory must not be negative")
	}
	if req.Memory > 0 && req.Memory < 4<<20 {
		return errdefs.Invalidf("--memory %d bytes: at least 4 MiB is needed to start a job", req.Memory)
	}
	return nil
}

// workdir is the job's working directory: the one asked for with
// --workdir (which must exist), else the caller's if it exists here, else
// the user's home, else /.
func (s *Supervisor) workdir(req api.RunRequest, home string) (string, error) {
	isDir := func(p string) bool { fi, err := os.Stat(p); return err == nil && fi.IsDir() }
	if req.WorkdirExplicit {
		if !filepath.IsAbs(req.Workdir) {
			return "", errdefs.Invalidf("--workdir %q: must be an absolute path", req.Workdir)
		}
		if !isDir(req.Workdir) {
			return "", errdefs.Invalidf("--workdir %s: no such directory on node %s", req.Workdir, s.cfg.Node)
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

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
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
// (basePath), HOME, USER, LOGNAME of the job's user, goDebug, and who the job
// is (jobIdentity), which --env cannot override; nothing of the agent's own
// environment.
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
	// Create, when set, writes the job's first record instead of the
	// table's Create: a timer's run is created under the gpid its tick
	// claimed, in the transaction that marks the tick started (package
	// timer). It fails when the record must not be written, and then
	// nothing is started.
	Create func(ctx context.Context, p pidtable.Proc) (pidtable.Proc, error)
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

	create := s.cfg.Table.Create
	if req.Create != nil {
		create = req.Create
	}
	p, err := create(ctx, pidtable.Proc{
		Node: s.cfg.Node, User: u.Username, UID: uid, GID: gid, Argv: req.Argv,
		Workdir: workdir, CPUs: req.CPUs, Memory: req.Memory, Pinned: req.Pin, Reconnects: req.Reconnects,
		Constraints: req.Constraints, TTY: req.TTY != nil, CheckpointEvery: req.CheckpointEvery,
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
	creds := s.cfg.JobCreds
	if slices.ContainsFunc(req.Env, func(e string) bool { return strings.HasPrefix(e, "SSI_CONFIG=") }) {
		creds = "" // the user's own config, by --env: theirs to choose
	}
	env = append(jobIdentity(p, creds), env...)
	if s.cfg.Env != nil {
		env = append(s.cfg.Env(p), env...)
	}
	spec := shim.Spec{GPID: p.GPID, Node: s.cfg.Node, Argv: req.Argv, Env: env, Workdir: workdir, UID: uid, GID: gid, Groups: groups, Cgroup: cgPath, Stdin: req.Stdin || req.TTY != nil, TTY: req.TTY,
		Fence: pidtable.HasFailoverCopy(req.CheckpointEvery, req.Service)}
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
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return errdefs.Invalidf("--env %q: want KEY=VALUE", e)
		}
		if slices.Contains(identityVars, k) {
			return errdefs.Invalidf("--env %s: ssi sets %s itself (who the job is: %s); name your variable otherwise", k, k, strings.Join(identityVars, ", "))
		}
	}
	if req.CPUs < 0 || req.Memory < 0 {
		return errdefs.Invalidf("--cpus and --memory must not be negative")
	}
	if req.Memory > 0 && req.Memory < 4<<20 {
		return errdefs.Invalidf("--memory %d bytes: at least 4 MiB is needed to start a job", req.Memory)
	}
	switch {
	case req.CheckpointEvery < 0 || (req.CheckpointEvery > 0 && req.CheckpointEvery < MinCheckpointEvery):
		return errdefs.Invalidf("--checkpoint-every %s: want %s or more (each checkpoint freezes the job for its dump), or 0 for none", req.CheckpointEvery, MinCheckpointEvery)
	case req.CheckpointEvery > 0 && req.TTY != nil:
		return errdefs.Invalidf("--checkpoint-every with -t: a job with a terminal cannot be checkpointed; drop -t")
	case req.CheckpointEvery > 0 && req.Stdin:
		return errdefs.Invalidf("--checkpoint-every with your stdin: a job restored elsewhere from a checkpoint cannot take its stdin back; add -n (stdin from /dev/null) or -d")
	}
	return nil
}

// MinCheckpointEvery is the shortest period of automatic checkpoints.
const MinCheckpointEvery = 2 * time.Second

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

// identityVars are the variables jobIdentity and the node's Env set.
var identityVars = []string{"SSI_GPID", "SSI_USER", "SSI_NODE", "SSI_SERVICE", "SSI_NATS_URL", "SSI_NATS_INBOX"}

// jobIdentity is what tells a job who it is: SSI_GPID, SSI_USER (its ssi
// user), SSI_NODE (the node it started on: a move does not change a running
// process's environment, `ssi ps GPID` says where it runs now), for a
// service's replica SSI_SERVICE, and with credentials (creds, the directory
// of jobs' credentials) SSI_CONFIG, the job's own config for ssi.
func jobIdentity(p pidtable.Proc, creds string) []string {
	env := []string{"SSI_GPID=" + strconv.FormatUint(p.GPID, 10), "SSI_USER=" + p.User, "SSI_NODE=" + p.Node}
	if p.Service != "" {
		env = append(env, "SSI_SERVICE="+p.Service)
	}
	if creds != "" {
		env = append(env, "SSI_CONFIG="+JobCredFile(creds, p.GPID))
	}
	return env
}

// JobCredFile is the path of gpid's credential under dir.
func JobCredFile(dir string, gpid uint64) string {
	return filepath.Join(dir, strconv.FormatUint(gpid, 10), "config.json")
}

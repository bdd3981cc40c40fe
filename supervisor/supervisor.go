package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// Table is what the supervisor reads and writes of the process table;
// *pidtable.Store is one.
type Table interface {
	// Create allocates a gpid and writes the job's first record.
	Create(ctx context.Context, p pidtable.Proc) (pidtable.Proc, error)
	// Transition applies a lifecycle transition to the job's record.
	Transition(ctx context.Context, gpid uint64, t pidtable.Transition, by string, fn func(*pidtable.Proc) error) (pidtable.Proc, int64, error)
	// Delete removes the record of a job of node.
	Delete(ctx context.Context, gpid uint64, node string) error
}

// Config is what a Supervisor needs from its agent.
type Config struct {
	// Node is this node's name.
	Node string
	// JobsDir holds one directory per job.
	JobsDir string
	// CgroupParent is the parent of jobs' cgroups; CPUSet the CPUs jobs may
	// use (empty: all).
	CgroupParent string
	CPUSet       string
	// ShimExe is the ssi-shim executable.
	ShimExe string
	Table   Table
	Log     *slog.Logger
	// Incoming reports whether a migration to this node is preparing gpid:
	// its directory is in use though no job of it runs here yet.
	Incoming func(gpid uint64) bool
	// Retention is how long the record of an ended job is kept (GC).
	Retention time.Duration
	// Ended, if set, is told the state of each end this supervisor records
	// (exited, lost): the agent's metrics.
	Ended func(pidtable.State)
	// JobCreds, if set, is the directory of jobs' credentials, the same on
	// every node: a job's SSI_CONFIG is JobCreds/<gpid>/config.json, which
	// the agent running it writes (agent/jobcreds.go).
	JobCreds string
	// Env, if set, returns variables the node adds to a job's environment
	// (the broker's address, SSI_NATS_URL: agent/msg.go); --env cannot
	// override them.
	Env func(pidtable.Proc) []string
}

// Supervisor is the registry of a node's jobs.
type Supervisor struct {
	cfg Config
	log *slog.Logger
	// life bounds the goroutines that watch the jobs: when it is done they
	// stop waiting (the jobs run on, and the next agent adopts them).
	life context.Context
	wg   sync.WaitGroup

	mu   sync.Mutex
	jobs map[uint64]*Job
	// outgoing are the migrations this node is the source of, by gpid (the
	// migration's ID): such a job may have no process here for a while (its
	// locks handed over), and is no phantom.
	outgoing map[uint64]string
	// dirMu orders the replacement of a job directory by an incoming
	// migration or a restore against the delayed removal of a migrated
	// job's directory.
	dirMu sync.Mutex
}

// New returns a supervisor whose watchers live as long as life.
func New(life context.Context, cfg Config) *Supervisor {
	if cfg.Incoming == nil {
		cfg.Incoming = func(uint64) bool { return false }
	}
	return &Supervisor{cfg: cfg, log: cfg.Log, life: life, jobs: map[uint64]*Job{}, outgoing: map[uint64]string{}}
}

// Wait blocks until every watcher has stopped (after life is done).
func (s *Supervisor) Wait() { s.wg.Wait() }

// Job is a job this node supervises.
type Job struct {
	gpid   uint64
	dir    string
	state  shim.State
	cgroup *isolate.Cgroup
	cpus   float64
	memory int64
	// placed is when this node started the job from a placement (a run, a
	// restore from a checkpoint); zero for jobs adopted after a restart or
	// migrated in. token is the placement token this node served the job
	// under (empty when none): the node lists it with the job in the same
	// figures (Sample).
	placed time.Time
	token  string
	// arrivedFrom is the node a migration brought the job from (empty for a
	// job started or adopted here): its late resume call is admitted.
	arrivedFrom string
	// last is the previous sample of the job's figures (Sample).
	last sample
	// busy says what holds the job frozen or about to be (a migration, a
	// checkpoint), guarded by Supervisor.mu; signals are held off meanwhile.
	busy string
	done chan struct{}
}

// GPID is the job's global PID.
func (j *Job) GPID() uint64 { return j.gpid }

// Dir is the job's directory.
func (j *Job) Dir() string { return j.dir }

// State is what its shim reported when it started the job.
func (j *Job) State() shim.State { return j.state }

// Cgroup is the job's cgroup (nil if it could not be opened).
func (j *Job) Cgroup() *isolate.Cgroup { return j.cgroup }

// Done is closed once the job's end is recorded (or it left this node).
func (j *Job) Done() <-chan struct{} { return j.done }

// Resources are what the job asked for.
func (j *Job) Resources() (cpus float64, memory int64) { return j.cpus, j.memory }

// ArrivedFrom is the node a migration brought the job from, or "".
func (j *Job) ArrivedFrom() string { return j.arrivedFrom }

// Kill kills the job's init, and with it its PID namespace (unless it is
// gone already: its PID may have been reused).
func (j *Job) Kill() {
	if j.state.Init.Alive() {
		_ = unix.Kill(j.state.Init.PID, unix.SIGKILL)
	}
}

// Resume continues a job left stopped by a dump or a restore.
func (j *Job) Resume() {
	if j.cgroup != nil {
		j.cgroup.Signal(unix.SIGCONT)
	}
}

// Dir returns the directory of job gpid on this node.
func (s *Supervisor) Dir(gpid uint64) string {
	return filepath.Join(s.cfg.JobsDir, strconv.FormatUint(gpid, 10))
}

// Limits are the cgroup limits of a job of this node that requested cpus
// and memory: the request, and the node's cpuset.
func (s *Supervisor) Limits(cpus float64, memory int64) isolate.Limits {
	return isolate.Limits{CPUs: cpus, Memory: memory, CPUSet: s.cfg.CPUSet}
}

// Job returns the job gpid of this node, or nil.
func (s *Supervisor) Job(gpid uint64) *Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[gpid]
}

// Count is the number of jobs supervised here.
func (s *Supervisor) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs)
}

// Here reports whether gpid has a job here or is being migrated away from
// here (its process may be gone for a while, its locks handed over).
func (s *Supervisor) Here(gpid uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[gpid] != nil || s.outgoing[gpid] != ""
}

// MarkBusy reserves a running job of this node for a migration or a
// checkpoint (what says which, for the messages of refused signals).
func (s *Supervisor) MarkBusy(gpid uint64, what string) (*Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[gpid]
	switch {
	case j == nil || !j.state.Init.Alive():
		return nil, errdefs.Conflictf("gpid %d is not running on %s", gpid, s.cfg.Node)
	case j.busy != "":
		return nil, errdefs.Conflictf("gpid %d is already %s; retry when that is done", gpid, j.busy)
	}
	j.busy = what
	return j, nil
}

// ClearBusy ends what MarkBusy reserved, and the migration out, if any.
func (s *Supervisor) ClearBusy(j *Job) {
	if j == nil {
		return
	}
	s.mu.Lock()
	j.busy = ""
	delete(s.outgoing, j.gpid)
	s.mu.Unlock()
}

// MarkOutgoing notes that migration id moves gpid away.
func (s *Supervisor) MarkOutgoing(gpid uint64, id string) {
	s.mu.Lock()
	s.outgoing[gpid] = id
	s.mu.Unlock()
}

// Launched describes a job whose shim was just launched here (by a restore
// or a migration), for Add.
type Launched struct {
	GPID   uint64
	Dir    string
	State  shim.State
	Cgroup *isolate.Cgroup
	CPUs   float64
	Memory int64
	// Placed and Token: a job started from a placement (a restore from a
	// checkpoint), see Job.
	Placed time.Time
	Token  string
	// ArrivedFrom is the node a migration brought it from.
	ArrivedFrom string
	// Replaces is the job's earlier copy here, if any: the new one keeps its
	// placement token and what holds it busy.
	Replaces *Job
	// Wait, if set, reaps the shim (it is this process's child).
	Wait func() error
}

// Add supervises a job launched here and returns it; its end is recorded
// when its shim exits.
func (s *Supervisor) Add(l Launched) *Job {
	j := s.Register(l)
	s.watch(j, l.Wait)
	return j
}

// Register adds the job l describes to the registry without watching it
// (Watch does that).
func (s *Supervisor) Register(l Launched) *Job {
	j := &Job{gpid: l.GPID, dir: l.Dir, state: l.State, cgroup: l.Cgroup, cpus: l.CPUs, memory: l.Memory,
		placed: l.Placed, token: l.Token, arrivedFrom: l.ArrivedFrom, done: make(chan struct{})}
	s.mu.Lock()
	if old := l.Replaces; old != nil {
		j.token, j.busy = old.token, old.busy
	}
	s.jobs[l.GPID] = j
	s.mu.Unlock()
	return j
}

// NewDir replaces any directory of an earlier stay of gpid here with a new
// empty one; the lock keeps a delayed removal of a moved job's directory
// from removing the new one. It returns the job's directory, also on error.
func (s *Supervisor) NewDir(gpid uint64) (string, error) {
	dir := s.Dir(gpid)
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	s.RemoveDir(gpid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return dir, fmt.Errorf("job dir: %w", err)
	}
	return dir, nil
}

// RemoveDir deletes the directory of a job this node no longer has a record
// for, stopping anything left of it first.
func (s *Supervisor) RemoveDir(gpid uint64) {
	dir := s.Dir(gpid)
	var st shim.State
	if shim.ReadJSON(dir, shim.StateFile, &st) == nil && st.Init.Alive() {
		// A live copy of a job this node has no record of (failed over
		// elsewhere while this agent was away, say): it may have run beside
		// the other copy until now, so it is said.
		s.log.Warn("removed a job directory whose job was still live: killed it", "gpid", gpid, "init_pid", st.Init.PID)
		_ = unix.Kill(st.Init.PID, unix.SIGKILL)
	}
	if cg, err := isolate.OpenCgroup(isolate.CgroupPath(s.cfg.CgroupParent, s.cfg.Node, gpid)); err == nil {
		_ = cg.Destroy()
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove job dir", "gpid", gpid, "err", err)
	}
}

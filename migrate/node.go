package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// Timeout bounds a whole migration; rollback has its own bound.
const Timeout = 5 * time.Minute

// etcdStepTimeout bounds one record update of a migration step.
const etcdStepTimeout = 10 * time.Second

// Limits of what a target accepts: maxImageBytes bounds one image stream (and
// a job with a memory limit gets ImageBytesFor), maxStreamsPerPeer the image
// streams one source node may have in flight at once.
const (
	maxImageBytes     = 64 << 30
	maxStreamsPerPeer = 2
	// imageSlack covers what a job's images hold beyond its memory: CRIU's
	// metadata, the job's log.
	imageSlack = 256 << 20
)

// ImageBytesFor is the largest image stream accepted for a job with the given
// memory limit (0: none): its pages cannot exceed the limit.
func ImageBytesFor(memory int64) int64 {
	if memory > 0 && memory < (maxImageBytes-imageSlack)/2 {
		return 2*memory + imageSlack
	}
	return maxImageBytes
}

// ImagesRoot returns the memory-backed directory where the agent with data dir
// dataDir keeps migration images in flight. It is keyed by the data dir, which
// is unique per agent on a machine: node names are not (several local clusters
// may share one kernel, and /dev/shm).
func ImagesRoot(dataDir string) string {
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join("/dev/shm", "ssi-"+hex.EncodeToString(sum[:6]))
}

// Job is a job the agent supervises, as a migration sees it. Its fields are
// fixed for the life of the handle: a job restored from images is a new Job.
type Job interface {
	GPID() uint64
	// Dir is the job's directory (spec, state, log).
	Dir() string
	// State is what the job's shim reported when it started or restored it.
	State() shim.State
	Cgroup() *isolate.Cgroup
	// Done is closed once the job's shim has exited and its end is handled.
	Done() <-chan struct{}
	// Resources are the CPUs and memory the job was given.
	Resources() (cpus float64, memory int64)
}

// Restored is a job a restore made on this node, for Jobs.Adopt.
type Restored struct {
	GPID   uint64
	Dir    string
	State  shim.State
	Cgroup *isolate.Cgroup
	// Cmd is the restoring shim, waited for by the agent.
	Cmd *exec.Cmd
	// CPUs and Memory are the job's resources; ArrivedFrom is the node a
	// migration brought it from.
	CPUs        float64
	Memory      int64
	ArrivedFrom string
	// Replaces is the killed copy this one was restored for on the same node
	// (a rollback after a hand-over): it takes over its resources and what
	// the agent noted about it.
	Replaces Job
}

// Jobs is the agent's registry of the jobs it supervises, as migrations use it.
type Jobs interface {
	// Job returns the job gpid of this node, or nil.
	Job(gpid uint64) Job
	// MarkBusy reserves a running job for a migration (what says so in the
	// messages of refused signals); ClearBusy ends that, and MarkOutgoing.
	MarkBusy(gpid uint64, what string) (Job, error)
	ClearBusy(j Job)
	// MarkOutgoing notes that migration id moves gpid away: the job may have
	// no process here for a while, and is no phantom.
	MarkOutgoing(gpid uint64, id string)
	// HoldStdin stops the stdin of a frozen job and saves what its pipe held;
	// ReleaseStdin undoes it.
	HoldStdin(ctx context.Context, j Job) error
	ReleaseStdin(j Job)
	// Adopt supervises a job a restore made here, and returns it.
	Adopt(r Restored) Job
	// Forget ends this node's part in a job that now runs elsewhere.
	Forget(j Job)
	// NewDir replaces any directory of an earlier stay of gpid here with a
	// new empty one, ordered against the delayed removal of a moved job's
	// directory. It returns the job's directory, also on error.
	NewDir(gpid uint64) (string, error)
	// Limits are the cgroup limits of a job of this node given cpus and memory.
	Limits(cpus float64, memory int64) isolate.Limits
	// StatusChanged asks for the node's status to be published now.
	StatusChanged()
}

// CPU is this machine's CPU features.
type CPU interface {
	// Flags lists them, sorted.
	Flags() ([]string, error)
	// Check refuses a job that ran on a CPU with features this one lacks.
	Check(src []string) error
}

// Config is what a Migrator needs from its agent.
type Config struct {
	// Name is this node's name; Advertise its address (host:port).
	Name      string
	Advertise string
	// Version is this agent's ssi version (said when versions differ).
	Version string
	// DataDir is the agent's data directory: CRIU logs of failures are kept
	// under it, and it keys ImagesRoot.
	DataDir string
	// CgroupParent is the parent of jobs' cgroups.
	CgroupParent string
	// CRIUPath is the CRIU this node migrates with; CRIUErr says why it
	// cannot (nil when it can).
	CRIUPath string
	CRIUErr  error
	// ShimExe is the ssi-shim executable.
	ShimExe string
	// Scheme ("http" or "https") and Client reach other agents.
	Scheme string
	Client *http.Client
	Store  *pidtable.Store
	Jobs   Jobs
	CPU    CPU
	Log    *slog.Logger
}

// Migrator is this node's part in migrations: the source side (Migrate) and
// the target side (the *Incoming methods), over the agent's jobs.
type Migrator struct {
	cfg   Config
	log   *slog.Logger
	store *pidtable.Store
	jobs  Jobs
	cpu   CPU
	// life is the agent's lifetime: background work (watching an incoming
	// migration, settling a commit, releasing a record) stops with it.
	life context.Context

	mu       sync.Mutex
	incoming map[uint64]*incoming // migrations this node is the target of

	// streams counts image streams in flight per peer node.
	streamsMu sync.Mutex
	streams   map[string]int
}

// New returns the Migrator of an agent whose life is ctx.
func New(ctx context.Context, cfg Config) *Migrator {
	return &Migrator{
		cfg: cfg, log: cfg.Log, store: cfg.Store, jobs: cfg.Jobs, cpu: cfg.CPU, life: ctx,
		incoming: map[uint64]*incoming{},
		streams:  map[string]int{},
	}
}

// ImagesDir is where a job's images in flight are kept (kind: "out", "in",
// "ckpt").
func (mg *Migrator) ImagesDir(kind string, gpid uint64) string {
	return filepath.Join(ImagesRoot(mg.cfg.DataDir), fmt.Sprintf("%s-%d", kind, gpid))
}

// RemoveStaleImages deletes images left by an earlier run of this agent (a
// crash mid-migration); a starting agent has no migration in flight.
func (mg *Migrator) RemoveStaleImages() {
	root := ImagesRoot(mg.cfg.DataDir)
	if err := os.RemoveAll(root); err != nil {
		mg.log.Warn("remove stale images", "dir", root, "err", err)
	}
}

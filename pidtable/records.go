package pidtable

import (
	"fmt"
	"time"
)

// State is the lifecycle state of a global process.
type State string

// Process states.
const (
	// Starting: the gpid is allocated and the owner agent is spawning the job.
	Starting State = "starting"
	// Running: the job's processes exist on Node.
	Running State = "running"
	// Migrating: the job is being moved to Migration.Target; it still belongs
	// to Node until the migration commits.
	Migrating State = "migrating"
	// Exited: the job ended; ExitCode is set.
	Exited State = "exited"
	// Lost: the owner could not tell what became of the job (its supervisor
	// vanished without recording an exit status, e.g. the machine rebooted).
	Lost State = "lost"
	// Checkpointing: the owner is saving a checkpoint of the job (it is frozen
	// for the dump); no migration or second checkpoint may start meanwhile.
	Checkpointing State = "checkpointing"
	// Checkpointed: the job was saved by `ssi checkpoint` (without
	// --leave-running) and stopped; Checkpoint names the checkpoint that
	// `ssi restore` brings it back from, under the same gpid.
	Checkpointed State = "checkpointed"
)

// Ended reports whether s is a final state: no copy of the job runs.
func (s State) Ended() bool { return s == Exited || s == Lost || s == Checkpointed }

// Proc is one global process: a job started by `ssi run`.
type Proc struct {
	// GPID is the cluster-wide process ID. Set at creation, never changed or reused.
	GPID uint64 `json:"gpid"`
	// Node is the name of the node that owns (runs) the job. Changes only by a
	// compare-and-swap transaction that also increments Epoch.
	Node string `json:"node"`
	// Epoch counts ownership changes; an agent may act on the job only while the
	// record names it with the epoch it knows.
	Epoch uint64 `json:"epoch"`
	State State  `json:"state"`
	// PID is the host PID of the job's main process on Node (0 until running).
	PID int `json:"pid,omitempty"`
	// InitPID is the host PID of the job's `ssi init` (PID 1 of its namespace).
	InitPID int `json:"init_pid,omitempty"`
	// User, UID and GID are the account the job runs as. Immutable.
	User string `json:"user"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	// Argv is the command line. Immutable; the environment is not stored here.
	Argv    []string `json:"argv"`
	Workdir string   `json:"workdir,omitempty"`
	// CPUs and Memory are the job's resource request and cgroup limit (0: none).
	CPUs   float64 `json:"cpus,omitempty"`
	Memory int64   `json:"memory,omitempty"`
	// Created is when the gpid was allocated; Started when the job's process was
	// running; Ended when it exited or was found lost.
	Created time.Time `json:"created"`
	Started time.Time `json:"started,omitzero"`
	Ended   time.Time `json:"ended,omitzero"`
	// ExitCode is the job's exit status once Exited: the main process's code,
	// or 128+N when it was killed by signal N.
	ExitCode *int `json:"exit_code,omitempty"`
	// Error says why a job is Lost or failed to start.
	Error string `json:"error,omitempty"`
	// Migration is set while the job is Migrating.
	Migration *Migration `json:"migration,omitempty"`
	// MigrationError says why the last migration of the job failed (and
	// MigrationFailed when); cleared by a migration that succeeds.
	MigrationError  string    `json:"migration_error,omitempty"`
	MigrationFailed time.Time `json:"migration_failed,omitzero"`
	// Checkpoint names the checkpoint being saved (while Checkpointing), or
	// the one the job was stopped into (Checkpointed).
	Checkpoint string `json:"checkpoint,omitempty"`
	// RestoredFrom names the checkpoint the running job was restored from.
	RestoredFrom string `json:"restored_from,omitempty"`
	// CheckpointEvery is the period of the job's automatic checkpoints (ssi
	// run --checkpoint-every; 0: none). A job with them is restored from
	// the newest on a live node when its node dies (package failover).
	// Immutable.
	CheckpointEvery time.Duration `json:"checkpoint_every,omitempty"`
	// FailedOver counts the failovers of the job; FailedOverFrom is the node
	// it last failed over from.
	FailedOver     int    `json:"failed_over,omitempty"`
	FailedOverFrom string `json:"failed_over_from,omitempty"`
	// Constraints are the labels a node must carry to run the job (ssi run
	// --constraint); the balancer moves the job only to such nodes. Immutable.
	Constraints map[string]string `json:"constraints,omitempty"`
	// Pinned jobs (ssi run --pin) are never moved by the balancer; an explicit
	// ssi migrate still moves them. Immutable.
	Pinned bool `json:"pinned,omitempty"`
	// Reconnects (ssi run --reconnects): the job re-makes its TCP
	// connections when they break, so a move or a checkpoint closes them
	// (CRIU --tcp-close) rather than refusing it; its listening sockets
	// move as ever.
	Reconnects bool `json:"reconnects,omitempty"`
	// TTY jobs (ssi run -t) have a terminal, which cannot be moved yet:
	// they are never migrated or checkpointed. Immutable.
	TTY bool `json:"tty,omitempty"`
	// Service names the service this job is a replica of (empty for a job of
	// ssi run), and ServiceHash what the replica runs (ServiceSpec.RunHash),
	// set by the agent that starts it for the service controller. Immutable.
	Service     string `json:"service,omitempty"`
	ServiceHash string `json:"service_hash,omitempty"`
	// Arrived is when the job began to run on Node: its start, or the commit of
	// the migration that brought it there. The balancer lets a job stay at
	// least a residency period after it.
	Arrived time.Time `json:"arrived,omitzero"`
	// Archived is when the ended record left the live table for the history
	// (history.go); zero in the live table. Set only on the archived copy.
	Archived time.Time `json:"archived,omitzero"`
}

// Migration is an in-flight move of a job, recorded in its Proc.
type Migration struct {
	ID      string    `json:"id"`
	Target  string    `json:"target"`
	Phase   string    `json:"phase"`
	Started time.Time `json:"started"`
}

// Node is a node's durable registration, written by its agent at start.
type Node struct {
	Name string `json:"name"`
	// Addr is host:port of the agent's API.
	Addr string `json:"addr"`
	// CPUs and Memory are the capacity the node offers to jobs.
	CPUs   float64           `json:"cpus"`
	Memory int64             `json:"memory"`
	Labels map[string]string `json:"labels,omitempty"`
	// Version is the agent's ssi version.
	Version string `json:"version"`
	// Protocol is the agent's migration protocol (migrate.Protocol; 0: an
	// agent from before it): jobs move only between nodes of one protocol.
	Protocol   int       `json:"protocol,omitempty"`
	Registered time.Time `json:"registered"`
	// Cordoned is the admin's setting (NodeConfig), merged in by Snapshot;
	// Labels there are the effective ones. The agent writes neither.
	Cordoned bool `json:"cordoned,omitempty"`
	// Draining is set by Snapshot while a drain of the node is under way;
	// Replacing then holds the replicas that drain has their service's
	// controller replace (Drain.Replacing), for the controller's plan.
	Draining  bool     `json:"draining,omitempty"`
	Replacing []uint64 `json:"-"`
	// Left is when the node's agent left on purpose (NodeConfig.Left).
	Left time.Time `json:"left,omitzero"`
}

// NodeStatus is a node's live figures, published every second on its lease.
type NodeStatus struct {
	// Instance identifies the agent process that publishes this status; a restarted
	// agent uses it to recognise its predecessor's lease.
	Instance string    `json:"instance"`
	Updated  time.Time `json:"updated"`
	// Load is the CPU use of the node's jobs in cores (sum of their CPU use
	// over the last interval), the figure placement compares.
	Load float64 `json:"load"`
	// Demand is the CPU the node's jobs want, in cores: the sum of the jobs'
	// Demand. Unlike Load it is not capped by the node's CPUs: 8 CPU-bound jobs
	// on one CPU have a Load of 1 and a Demand of 8. The balancer compares it.
	Demand float64 `json:"demand"`
	// Jobs is the number of live jobs on the node.
	Jobs int `json:"jobs"`
	// ReservedCPUs and ReservedMemory sum the requests of the node's live jobs.
	ReservedCPUs   float64 `json:"reserved_cpus"`
	ReservedMemory int64   `json:"reserved_memory"`
	// Procs holds live per-job figures keyed by gpid.
	Procs map[uint64]ProcStats `json:"procs,omitempty"`
	// Expected is the load, in cores, the node's newly placed jobs (started
	// less than a few seconds ago) are expected to add to Load: each counts at
	// its CPU request, one core at least, until it is measured. Placement
	// compares Load+Expected.
	Expected float64 `json:"expected,omitempty"`
	// Placements are the placement tokens of those new jobs: the agent that
	// placed one counts it itself until the node lists its token here.
	Placements []string `json:"placements,omitempty"`
}

// ProcStats are live figures of one job, measured by its owner agent.
type ProcStats struct {
	// CPU is the job's CPU use over the last interval, in percent of one core.
	CPU float64 `json:"cpu"`
	// RSS is the resident memory of the job's processes in bytes (ssi's own
	// init, PID 1 of the job, is not counted; its CPU time is, but it idles).
	RSS int64 `json:"rss"`
	// Stat is the main process's state letter from /proc (R, S, D, T, Z).
	Stat string `json:"stat"`
	// Procs is the number of the job's processes, init not counted.
	Procs int `json:"procs"`
	// Demand is the CPU the job wanted over the last interval, in cores: the
	// time its threads ran plus the time they waited runnable on a run queue
	// (/proc/PID/task/TID/schedstat), over the interval. A CPU-bound
	// single-threaded job has a demand of 1 whether it got a whole CPU or an
	// eighth of one.
	Demand float64 `json:"demand"`
}

func (p *Proc) String() string { return fmt.Sprintf("gpid %d on %s (%s)", p.GPID, p.Node, p.State) }

// HasFailoverCopy reports whether a job with these settings can come back
// elsewhere without its node: from its automatic checkpoints (checkpointEvery
// > 0) or as another replica of its service. Such a job is fenced (killed)
// when its node loses its lease, and does not start on a node without one.
func HasFailoverCopy(checkpointEvery time.Duration, service string) bool {
	return checkpointEvery > 0 || service != ""
}

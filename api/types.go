package api

import (
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// Headers. HeaderUser and HeaderUID carry the caller's identity only on an
// agent started with --insecure; otherwise the identity is the verified client
// certificate. HeaderForwarded marks an agent-to-agent call and is accepted
// only from a node certificate. HeaderOnBehalfOf and HeaderAdmin are refused
// from anyone: agents redirect clients rather than act for them (kept so that
// an old agent's attempt gets a clear error).
const (
	HeaderUser       = "X-Ssi-User"
	HeaderUID        = "X-Ssi-Uid"
	HeaderForwarded  = "X-Ssi-Forwarded-By"
	HeaderOnBehalfOf = "X-Ssi-On-Behalf-Of"
	HeaderAdmin      = "X-Ssi-Admin"
	// HeaderRevision, on an answer to GET /v1/events, is the etcd revision
	// the events were read at: the since= of the next call.
	HeaderRevision = "X-Ssi-Revision"
)

// RunRequest asks for a job to be started.
type RunRequest struct {
	// Argv is the command and its arguments; required.
	Argv []string `json:"argv"`
	// Env holds extra KEY=VALUE entries on top of the base environment (PATH, HOME,
	// USER, LOGNAME).
	Env []string `json:"env,omitempty"`
	// Workdir is the job's working directory. When WorkdirExplicit is false it is
	// only the caller's cwd, used if it exists on the node (else the user's home).
	Workdir         string `json:"workdir,omitempty"`
	WorkdirExplicit bool   `json:"workdir_explicit,omitempty"`
	// User to run as; empty means the caller. Only root may name another user.
	User string `json:"user,omitempty"`
	// Node pins the job to a node; empty lets Placement choose.
	Node        string            `json:"node,omitempty"`
	Placement   string            `json:"placement,omitempty"`
	CPUs        float64           `json:"cpus,omitempty"`
	Memory      int64             `json:"memory,omitempty"`
	Constraints map[string]string `json:"constraints,omitempty"`
	// Pin keeps the balancer from moving the job (ssi migrate still can).
	Pin bool `json:"pin,omitempty"`
	// Reconnects says the job re-makes its TCP connections when they
	// break: a move closes them instead of being refused (pidtable.Proc.Reconnects).
	Reconnects bool `json:"reconnects,omitempty"`
	// CheckpointEvery checkpoints the job this often while it runs, keeping
	// a copy on a second node, and restores it elsewhere from the newest
	// when its node dies (package failover); 0: never.
	CheckpointEvery time.Duration `json:"checkpoint_every,omitempty"`
	// Stdin gives the job a stdin pipe that the caller feeds with
	// Client.Stdin (an attached ssi run); without it the job's stdin is
	// /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// TTY gives the job a terminal of this size (ssi run -t) for its stdin,
	// stdout and stderr, fed like Stdin and sized with Client.Resize. Such a
	// job cannot be moved or checkpointed.
	TTY *shim.WinSize `json:"tty,omitempty"`
	// Service and ServiceHash mark a replica of a service: set by the agent
	// that starts it for the service controller, never by a client.
	Service     string `json:"-"`
	ServiceHash string `json:"-"`
}

// RunResponse names the started job.
type RunResponse struct {
	GPID uint64 `json:"gpid"`
	Node string `json:"node"`
	// Workdir is the working directory the job got: the one asked for, or,
	// when the caller's cwd does not exist on the node, the user's home
	// there (or /); the CLI says so.
	Workdir string `json:"workdir,omitempty"`
}

// SignalRequest names a signal by name ("TERM", "SIGTERM") or number ("15").
type SignalRequest struct {
	Signal string `json:"signal"`
}

// ExitStatus is how a job ended.
type ExitStatus struct {
	GPID  uint64         `json:"gpid"`
	State pidtable.State `json:"state"`
	// Code is the exit code (128+N if killed by signal N); -1 when Lost or
	// Checkpointed.
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"`
	// Checkpoint names the checkpoint a Checkpointed job was stopped into.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// ProcInfo is one row of `ssi ps`: the process record and the live figures its
// node last published. Stats is nil when the node is NotReady or the job ended.
type ProcInfo struct {
	pidtable.Proc
	NodeReady bool                `json:"node_ready"`
	Stats     *pidtable.ProcStats `json:"stats,omitempty"`
}

// NewProcInfo is p's row, with its figures from its node's status in snap
// (none when the node is NotReady or the job ended).
func NewProcInfo(snap *pidtable.Snapshot, p pidtable.Proc) ProcInfo {
	pi := ProcInfo{Proc: p}
	st, ready := snap.Status[p.Node]
	pi.NodeReady = ready
	if ps, ok := st.Procs[p.GPID]; ready && ok && !p.State.Ended() {
		pi.Stats = &ps
	}
	return pi
}

// NodeInfo is one row of `ssi nodes`.
type NodeInfo struct {
	pidtable.Node
	Ready bool `json:"ready"`
	// Load, Jobs and the reservations come from the node's live status; zero when
	// NotReady.
	Load           float64 `json:"load"`
	Demand         float64 `json:"demand"`
	Jobs           int     `json:"jobs"`
	ReservedCPUs   float64 `json:"reserved_cpus"`
	ReservedMemory int64   `json:"reserved_memory"`
	// Updated is when the node measured these figures (once a second).
	Updated time.Time `json:"updated,omitzero"`
}

// ExitStatusOf derives the exit status of an ended record.
func ExitStatusOf(p pidtable.Proc) ExitStatus {
	st := ExitStatus{GPID: p.GPID, State: p.State, Code: -1, Error: p.Error}
	if p.ExitCode != nil {
		st.Code = *p.ExitCode
	}
	if p.State == pidtable.Checkpointed {
		st.Checkpoint = p.Checkpoint
		st.Error = "stopped into checkpoint " + p.Checkpoint + "; bring it back with: ssi restore " + p.Checkpoint
	}
	return st
}

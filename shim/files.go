package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/checkpoint/criutls"
)

// Names of the files in a job directory.
const (
	SpecFile  = "spec.json"
	StateFile = "shim.json"
	ExitFile  = "exit.json"
	LogFile   = "log"
	ShimLog   = "shim.log"
	// RestoreFile (RestoreSpec) tells `ssi-shim restore` what to restore.
	RestoreFile = "restore.json"
	// RestoreLog is CRIU's restore log, in RestoreSpec.WorkDir.
	RestoreLog = "restore.log"
	// MovedFile marks a job directory whose job migrated to another node: the
	// stopped source copy's end is not the job's end.
	MovedFile = "moved.json"
	// FencedFile marks a job directory whose job the shim killed because its
	// agent's lease ran out (fence.go).
	FencedFile = "fenced.json"
)

// RestoreSpec says where a migrated job's images are and which of its pipes
// are its stdout and stderr (CRIU's keys, e.g. "pipe:[1234]", read at dump).
type RestoreSpec struct {
	ImagesDir string `json:"images_dir"`
	StdoutKey string `json:"stdout_key"`
	StderrKey string `json:"stderr_key"`
	// StdinKey is the job's stdin pipe, empty when it has none (a job
	// started detached, or restored from a checkpoint): the restored job then
	// reads from a new pipe fed from StdinFile and the agent.
	StdinKey string `json:"stdin_key,omitempty"`
	// CRIUPath is the criu binary to run.
	CRIUPath string `json:"criu_path"`
	// WorkDir receives CRIU's restore log and pidfile; empty means ImagesDir.
	// A checkpoint restored several times at once (--as-new) is read from
	// one images dir, so each restore needs its own.
	WorkDir string `json:"work_dir,omitempty"`
	// LazyPages, when set, is host:port of the source's page server: the
	// images hold no memory, and a lazy-pages daemon fetches it from there
	// after the restore (post-copy).
	LazyPages string `json:"lazy_pages,omitempty"`
	// LazyPagesTLS are the lazy-pages daemon's credentials for that page
	// server (pki.PageServerCreds); nil: plain TCP.
	LazyPagesTLS *criutls.Files `json:"lazy_pages_tls,omitempty"`
}

// Spec is what the agent asks the shim to run. It is written to the job directory
// before the shim starts and never changed.
type Spec struct {
	GPID uint64 `json:"gpid"`
	Node string `json:"node"`
	// Argv is the command; Argv[0] is looked up in Env's PATH on the node.
	Argv    []string `json:"argv"`
	Env     []string `json:"env"`
	Workdir string   `json:"workdir"`
	UID     int      `json:"uid"`
	GID     int      `json:"gid"`
	Groups  []int    `json:"groups,omitempty"`
	// Cgroup is the path of the job's cgroup, created by the agent.
	Cgroup string `json:"cgroup"`
	// Stdin makes the job's fd 0 a pipe fed through StdinSocket (an attached
	// ssi run); without it fd 0 is /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// TTY, when set, gives the job a terminal of this size for fds 0-2 and
	// as its controlling terminal (ssi run -t); its input comes as Stdin's.
	TTY *WinSize `json:"tty,omitempty"`
	// Fence: the job has a failover copy elsewhere (automatic checkpoints,
	// or a service replica), so the shim kills it once its agent's etcd
	// lease may have run out (fence.go), even with the agent dead.
	Fence bool `json:"fence,omitempty"`
}

// ProcID identifies a process across PID reuse: its PID and its start time in
// clock ticks since boot (field 22 of /proc/PID/stat).
type ProcID struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// State is written by the shim once the job runs.
type State struct {
	Shim ProcID `json:"shim"`
	Init ProcID `json:"init"`
	// MainPID is the host PID of CMD (0 if it never started).
	MainPID int `json:"main_pid"`
	// StdinKey is the CRIU key ("pipe:[INODE]") of the job's stdin pipe, for
	// --inherit-fd at a restore; empty when the job's stdin is not ours.
	StdinKey string `json:"stdin_key,omitempty"`
	// CRIUMS is, for a restore, how long `criu restore` took (ms): the rest
	// of the shim's start-up is ssi's.
	CRIUMS float64 `json:"criu_ms,omitempty"`
}

// Exit is written by the shim after the job is gone and its cgroup removed.
type Exit struct {
	// Code is the job's exit code, 128+N if killed by signal N.
	Code int       `json:"code"`
	Time time.Time `json:"time"`
	// Error is set when the shim could not run or observe the job normally.
	Error string `json:"error,omitempty"`
}

// WriteJSON writes v to dir/name atomically (temporary file, then rename).
func WriteJSON(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("shim: encode %s: %w", name, err)
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("shim: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("shim: rename %s: %w", tmp, err)
	}
	return nil
}

// ReadJSON reads dir/name into v. A missing file yields an error wrapping
// os.ErrNotExist.
func ReadJSON(dir, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return fmt.Errorf("shim: read %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("shim: decode %s in %s: %w", name, dir, err)
	}
	return nil
}

// Identify returns pid's ProcID.
func Identify(pid int) (ProcID, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcID{}, fmt.Errorf("shim: identify pid %d: %w", pid, err)
	}
	// The command name (field 2) may contain spaces and parentheses: parse after
	// the last ')'. Fields from there: 3 state ... 22 starttime.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return ProcID{}, fmt.Errorf("shim: identify pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ProcID{}, fmt.Errorf("shim: identify pid %d: short stat", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return ProcID{}, fmt.Errorf("shim: identify pid %d: start time: %w", pid, err)
	}
	return ProcID{PID: pid, Start: start}, nil
}

// Alive reports whether the process id names is still the same running process
// (not exited, not a zombie, and its PID not reused since).
func (id ProcID) Alive() bool {
	if id.PID <= 0 {
		return false
	}
	now, err := Identify(id.PID)
	if err != nil || now.Start != id.Start {
		return false
	}
	st, err := ProcStat(id.PID)
	return err == nil && st != "Z" && st != "X"
}

// ProcStat returns the state letter of pid (R, S, D, T, Z, ...).
func ProcStat(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+3 > len(b) {
		return "", errors.New("malformed stat")
	}
	return string(b[i+2 : i+3]), nil
}

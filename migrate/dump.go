package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
	"golang.org/x/sys/unix"
)

// Dumps, and what the agent says when CRIU fails: CRIU's failures become
// sentences about the job (checkpoint.Explain), and CRIU's log is kept where
// the message says (<data-dir>/criu-logs, the newest keptCRIULogs), since
// the images directory it was written in goes with a failed migration.

// CRIUFlags are the CRIU flags of every dump of a job (migration, post-copy,
// checkpoint): its file locks go with it; its cgroup does not, since every
// node makes a job's cgroup itself, with the job's limits, and ssi-shim
// restores the job into it (shim.criuRestore); deleted files it still maps or
// holds open go in the images up to ghostLimit, so that a job whose program
// (or whose init, ssi-init, after an upgrade of ssi) was replaced while it
// ran still moves; the mounts its mount namespace shares with the node are
// external, bound again from the target node's same paths (NodeMounts).
func CRIUFlags() checkpoint.Flags {
	return checkpoint.Flags{FileLocks: true, IgnoreCgroups: true, GhostLimit: ghostLimit, NodeMounts: true}
}

// JobFlags are CRIUFlags for the dumps of p: a job that re-makes its
// connections (ssi run --reconnects) has its connected TCP sockets dumped
// without their state and restored closed (ssi-shim's restore always asks
// for that: shim.criuRestore).
func JobFlags(p pidtable.Proc) checkpoint.Flags {
	f := CRIUFlags()
	f.TCPClose = p.Reconnects
	return f
}

// ghostLimit bounds one deleted file carried in a job's images: larger than
// ssi-init and ssi-shim and most programs' binaries, small beside a job's
// memory.
const ghostLimit = 64 << 20

// Dump is checkpoint.Dump with CRIU's failures explained (explainDumpError)
// and their logs kept (keepCRIULog). A job has a /proc of its own
// (isolate.JobNamespaces), so CRIU writes nothing in its working directory:
// dumps of jobs sharing one run at once, in a read-only one too, and an
// interrupted dump leaves nothing there behind.
func (mg *Migrator) Dump(ctx context.Context, o checkpoint.DumpOpts, j Job) error {
	err := checkpoint.Dump(ctx, o)
	if err != nil {
		mg.keepCRIULog(err, j.GPID())
		return explainDumpError(err, j)
	}
	return nil
}

// explainDumpError says plainly why CRIU could not dump a job: an unpatched
// CRIU on a node whose root lacks CAP_SYS_RESOURCE (checkpoint.IsForeignRlimit),
// a job started by an older ssi whose jobs shared the node's /proc
// (checkpoint.IsSharedProc), or what checkpoint.Explain finds.
func explainDumpError(err error, j Job) error {
	rlimit, shared := checkpoint.IsForeignRlimit(err), checkpoint.IsSharedProc(err)
	if !rlimit && !shared {
		if why := checkpoint.Explain(err); why != "" {
			return errdefs.Conflictf("gpid %d cannot be checkpointed: %s (%v)", j.GPID(), why, err)
		}
		return err
	}
	var spec shim.Spec
	_ = shim.ReadJSON(j.Dir(), shim.SpecFile, &spec)
	if rlimit {
		return errdefs.Conflictf("gpid %d (uid %d): this node's CRIU may not read the resource limits of another user's task: root here lacks CAP_SYS_RESOURCE, and this CRIU is not the patched build of hack/install-criu.sh, which reads them from /proc/PID/limits. The job keeps running here; install CRIU with hack/install-criu.sh on every node (%v)", j.GPID(), spec.UID, err)
	}
	return errdefs.Conflictf("gpid %d was started by an older ssi, whose jobs share their node's /proc: CRIU must then mount a /proc of the job's own in its working directory %s, and could not (the job's init is not root, or the folder is read-only or not writable, or another dump is using it). The job keeps running here; jobs started by this version have a /proc of their own and move from any folder, so restart it to make it movable (%v)", j.GPID(), spec.Workdir, err)
}

// emptyDir removes what a failed dump wrote into dir.
func emptyDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o700)
}

// keptCRIULogs bounds the CRIU logs of failures kept per node.
const keptCRIULogs = 50

// criuLogsDir holds the CRIU logs of failed dumps and restores.
func (mg *Migrator) criuLogsDir() string { return filepath.Join(mg.cfg.DataDir, "criu-logs") }

// keepCRIULog copies the log of a failed CRIU operation (a *checkpoint.CRIUError
// in err) out of the images directory, which a failure removes, into
// criuLogsDir, and points the error at the copy. The oldest copies beyond
// keptCRIULogs are removed.
func (mg *Migrator) keepCRIULog(err error, gpid uint64) {
	var ce *checkpoint.CRIUError
	if !errors.As(err, &ce) || ce.LogPath == "" {
		return
	}
	if kept, kerr := mg.keepLog(ce.LogPath, gpid, ce.Op); kerr == nil {
		ce.LogPath = kept
	}
}

// keepLog copies the CRIU log at path into criuLogsDir and returns the copy's path.
func (mg *Migrator) keepLog(path string, gpid uint64, op string) (string, error) {
	dir := mg.criuLogsDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	in, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer in.Close()
	dst := filepath.Join(dir, fmt.Sprintf("%d-%s-%s.log", gpid, time.Now().UTC().Format("20060102T150405.000"), op))
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, io.LimitReader(in, 64<<20))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > keptCRIULogs {
		sort.Slice(entries, func(i, j int) bool {
			fi, _ := entries[i].Info()
			fj, _ := entries[j].Info()
			return fi != nil && fj != nil && fi.ModTime().Before(fj.ModTime())
		})
		for _, e := range entries[:len(entries)-keptCRIULogs] {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return dst, nil
}

// RestoreFailed words a failed restore of gpid on this node from images: what
// in the job stopped it, if known, and where CRIU's log is kept.
func (mg *Migrator) RestoreFailed(gpid uint64, images string, err error) error {
	where := ""
	if kept, kerr := mg.keepLog(filepath.Join(images, shim.RestoreLog), gpid, "restore"); kerr == nil {
		where = " (CRIU's log: " + kept + ")"
	}
	if why := checkpoint.Explain(err); why != "" {
		return errdefs.Conflictf("node %s could not restore gpid %d: %s%s (%v)", mg.cfg.Name, gpid, why, where, err)
	}
	return errdefs.Conflictf("node %s could not restore gpid %d: %v%s", mg.cfg.Name, gpid, err, where)
}

// WaitDrained waits (up to 5 s) until the pipes of a stopped job hold no unread
// output and the job's log stopped growing.
func WaitDrained(init int, logPath string) {
	deadline := time.Now().Add(5 * time.Second)
	pending := func() int {
		n := 0
		for _, fd := range []int{1, 2} {
			// Opening a pipe through /proc gives a new read end of the same pipe.
			f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/%d", init, fd), os.O_RDONLY|unix.O_NONBLOCK, 0)
			if err != nil {
				continue
			}
			if v, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ); err == nil { // FIONREAD
				n += v
			}
			f.Close()
		}
		return n
	}
	size := func() int64 {
		fi, err := os.Stat(logPath)
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	// Short polls: every millisecond here is frozen time. Pipes the shim has
	// emptied and a log that no longer grows across one poll: drained.
	last := size()
	if pending() == 0 {
		time.Sleep(500 * time.Microsecond)
		if s := size(); pending() == 0 && s == last {
			return
		}
	}
	for time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		s := size()
		if pending() == 0 && s == last {
			return
		}
		last = s
	}
}

// DirSize returns the bytes of the regular files in dir (not below it).
func DirSize(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

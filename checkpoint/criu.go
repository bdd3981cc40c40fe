package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	criu "github.com/checkpoint-restore/go-criu/v7"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/ssi-cluster/ssi/checkpoint/criulog"
	"github.com/ssi-cluster/ssi/failpoint"
)

// Default CRIU log settings.
const (
	DefaultDumpLog    = "dump.log"
	DefaultRestoreLog = "restore.log"
	// DefaultLogLevel is CRIU's most verbose level (-v4): a failed migration is
	// debugged from these logs after the fact.
	DefaultLogLevel = 4
)

// maxQuotedLines bounds the log lines an error quotes.
const maxQuotedLines = 20

// criuDefaultTimeout is CRIU's own bound on freezing a tree (--timeout), seconds.
const criuDefaultTimeout = 10

// inheritFDMin is the lowest fd number Restore hands to CRIU: well above the fds
// os/exec sets up in the child, so that they never land on one of ours.
const inheritFDMin = 100

// CRIUError is a failed CRIU operation. Lines quotes the "Error" lines of CRIU's
// log (the root cause is usually the first), minus the harmless ones every log on
// these machines has.
type CRIUError struct {
	// Op is "dump" or "restore".
	Op string
	// LogPath is CRIU's log file for this operation.
	LogPath string
	// Lines are the Error lines of the log (at most maxQuotedLines); Omitted counts
	// the ones left out.
	Lines   []string
	Omitted int
	// Err is what go-criu reported (and ctx.Err() when the context ended the operation).
	Err error
}

func (e *CRIUError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "checkpoint: criu %s failed", e.Op)
	for _, c := range []error{context.Canceled, context.DeadlineExceeded} {
		if errors.Is(e.Err, c) {
			fmt.Fprintf(&b, ": %v", c)
		}
	}
	switch {
	case len(e.Lines) > 0:
		// go-criu's own message quotes CRIU's first error, which on these machines
		// is the harmless rlimit one: the log lines say more.
		fmt.Fprintf(&b, ": %s", strings.Join(e.Lines, " | "))
		if e.Omitted > 0 {
			fmt.Fprintf(&b, " (and %d more)", e.Omitted)
		}
	case e.Err != nil:
		fmt.Fprintf(&b, ": %s", strings.Join(strings.Fields(e.Err.Error()), " "))
	}
	if e.LogPath != "" {
		fmt.Fprintf(&b, " (log: %s)", e.LogPath)
	}
	return b.String()
}

func (e *CRIUError) Unwrap() error { return e.Err }

// Flags real programs need; a migration layer passes them for every job.
type Flags struct {
	// TCPEstablished dumps/restores connected TCP sockets (--tcp-established).
	TCPEstablished bool
	// TCPClose dumps connected TCP sockets without their state, to be
	// restored closed (--tcp-close): the program sees its connections
	// break after the restore and must make them again.
	TCPClose bool
	// FileLocks dumps/restores flock and POSIX locks (--file-locks).
	FileLocks bool
	// LinkRemap handles open-but-unlinked files and inotify (--link-remap).
	LinkRemap bool
	// IgnoreCgroups leaves cgroups out of the images (--manage-cgroups=ignore):
	// for a tree whose cgroup is its runtime's to make on the restoring
	// machine, with the limits it has there, and restored into it. Dumping a
	// job's cgroups in every v1 hierarchy, properties and all, was a fifth of
	// its dump time here.
	IgnoreCgroups bool
	// GhostLimit raises the size up to which CRIU carries a deleted file the
	// tree still maps or holds open inside the images (--ghost-limit; CRIU's
	// default, 0 here, is 1 MiB). A program whose binary was replaced while
	// it ran (an upgrade) maps a deleted file of the binary's size.
	GhostLimit uint32
	// NodeMounts says the tree has a mount namespace of its own copied from
	// the node's (a job's does: isolate.JobNamespaces): the mounts it shares
	// with the node are dumped as external (--external mnt[]), and restored
	// by binding the restoring node's same paths into the namespace rebuilt
	// on its root, the node's / (--ext-mount-map auto --root /). Its own
	// mounts (a /proc, a tmpfs /dev/shm with its contents) are in the images.
	// Without --root, CRIU 4.2 crashes restoring such a namespace ("mnt: BUG
	// at criu/mount.c:48").
	NodeMounts bool
}

// NodeMountsRoot is the root of a restored job's mount namespace (Flags.NodeMounts).
const NodeMountsRoot = "/"

func (f Flags) apply(o *rpc.CriuOpts) {
	if f.NodeMounts {
		o.AutoExtMnt = proto.Bool(true)
	}
	if f.TCPEstablished {
		o.TcpEstablished = proto.Bool(true)
	}
	if f.TCPClose {
		o.TcpClose = proto.Bool(true)
	}
	if f.FileLocks {
		o.FileLocks = proto.Bool(true)
	}
	if f.LinkRemap {
		o.LinkRemap = proto.Bool(true)
	}
	if f.GhostLimit > 0 {
		o.GhostLimit = proto.Uint32(f.GhostLimit)
	}
	if f.IgnoreCgroups {
		o.ManageCgroups = proto.Bool(false)
		o.ManageCgroupsMode = rpc.CriuCgMode_IGNORE.Enum()
	}
}

// DumpOpts says what to dump and how.
type DumpOpts struct {
	// CRIUPath is the CRIU binary; DefaultCRIUPath when empty.
	CRIUPath string
	// PID is the host PID of the tree's root (a job's init).
	PID int
	// ImagesDir must exist; the images and the log are written there.
	ImagesDir string
	// LogFile is the log's name in ImagesDir (DefaultDumpLog when empty);
	// LogLevel is CRIU's -v level (DefaultLogLevel when 0).
	LogFile  string
	LogLevel int
	// LeaveStopped keeps the dumped tree alive but stopped (what a migration wants:
	// the source copy can be resumed on rollback); LeaveRunning resumes it. With
	// neither, CRIU kills the tree once dumped.
	LeaveStopped bool
	LeaveRunning bool
	Flags
}

// Dump checkpoints the process tree rooted at o.PID into o.ImagesDir. The tree is
// not dumped as a shell job: its root must be a session leader, which a job's init
// is. A CRIU failure is a *CRIUError; see the package doc for cancellation.
func Dump(ctx context.Context, o DumpOpts) error {
	if o.PID <= 0 {
		return fmt.Errorf("checkpoint: dump: bad pid %d", o.PID)
	}
	if o.LeaveStopped && o.LeaveRunning {
		return errors.New("checkpoint: dump: LeaveStopped and LeaveRunning are exclusive")
	}
	if o.LogFile == "" {
		o.LogFile = DefaultDumpLog
	}
	dir, err := openDir(o.ImagesDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	opts := &rpc.CriuOpts{
		Pid:         proto.Int32(int32(o.PID)),
		ImagesDirFd: proto.Int32(int32(dir.Fd())),
		LogFile:     proto.String(o.LogFile),
		LogLevel:    proto.Int32(logLevel(o.LogLevel)),
		ShellJob:    proto.Bool(false),
	}
	if o.LeaveStopped {
		opts.LeaveStopped = proto.Bool(true)
	}
	if o.LeaveRunning {
		opts.LeaveRunning = proto.Bool(true)
	}
	if d, ok := ctx.Deadline(); ok {
		// Bound the freezing phase by the deadline when it is the tighter bound.
		if s := math.Ceil(time.Until(d).Seconds()); s < criuDefaultTimeout {
			opts.Timeout = proto.Uint32(uint32(max(s, 1)))
		}
	}
	o.Flags.apply(opts)
	return run(ctx, "dump", o.CRIUPath, filepath.Join(o.ImagesDir, o.LogFile), func(c *criu.Criu) error {
		return c.Dump(opts, dumpNotify{ctxNotify{ctx}})
	})
}

// InheritFile replaces, at restore, the external file CRIU knows by Key (as read by
// FileKey on the dump side, e.g. "pipe:[430873]") with File.
type InheritFile struct {
	Key  string
	File *os.File
}

// RestoreOpts says what to restore and how.
type RestoreOpts struct {
	// CRIUPath is the CRIU binary; DefaultCRIUPath when empty.
	CRIUPath string
	// ImagesDir holds the images; the log is written there too.
	ImagesDir string
	// LogFile is the log's name in ImagesDir (DefaultRestoreLog when empty);
	// LogLevel is CRIU's -v level (DefaultLogLevel when 0).
	LogFile  string
	LogLevel int
	// Inherit re-plumbs external files, typically the job's stdout/stderr pipes.
	Inherit []InheritFile
	// CgroupRoot, when set, restores the tree's cgroups below this path (in every
	// hierarchy) instead of the dumped ones: the job's cgroup on this node.
	CgroupRoot string
	Flags
}

// Restore restores the tree in o.ImagesDir and returns the host PID of its root.
// The root is restored as a child of the calling process (CRIU's --restore-sibling),
// which must reap it (wait4). A CRIU failure is a *CRIUError; see the package doc
// for cancellation. When a restore fails after CRIU forked the root, CRIU kills the
// tree but cannot reap the root (it is our child): Restore does, provided CRIU
// already told it the root's PID (the setup-namespaces notification, which a job
// in its own PID namespace always gets). Otherwise a zombie child may remain for
// the caller's own reaper.
//
// The files in o.Inherit reach CRIU by fd number: Restore dups each to an fd without
// close-on-exec for the duration of the call (go-criu passes no extra files to its
// CRIU child). A process started concurrently by another goroutine inherits those
// dups too; they are closed when Restore returns.
func Restore(ctx context.Context, o RestoreOpts) (int, error) {
	if o.LogFile == "" {
		o.LogFile = DefaultRestoreLog
	}
	dir, err := openDir(o.ImagesDir)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	opts := &rpc.CriuOpts{
		ImagesDirFd: proto.Int32(int32(dir.Fd())),
		LogFile:     proto.String(o.LogFile),
		LogLevel:    proto.Int32(logLevel(o.LogLevel)),
		ShellJob:    proto.Bool(false),
		RstSibling:  proto.Bool(true),
	}
	if o.CgroupRoot != "" {
		opts.CgRoot = []*rpc.CgroupRoot{{Path: proto.String(o.CgroupRoot)}}
	}
	if o.NodeMounts {
		opts.Root = proto.String(NodeMountsRoot)
	}
	o.Flags.apply(opts)
	for _, in := range o.Inherit {
		if in.Key == "" || in.File == nil {
			return 0, fmt.Errorf("checkpoint: restore: inherit %q: missing key or file", in.Key)
		}
		fd, err := unix.FcntlInt(in.File.Fd(), unix.F_DUPFD, inheritFDMin)
		if err != nil {
			return 0, fmt.Errorf("checkpoint: restore: dup fd for %s: %w", in.Key, err)
		}
		defer unix.Close(fd)
		opts.InheritFd = append(opts.InheritFd, &rpc.InheritFd{Key: proto.String(in.Key), Fd: proto.Int32(int32(fd))})
	}
	n := &restoreNotify{ctxNotify: ctxNotify{ctx}}
	err = run(ctx, "restore", o.CRIUPath, filepath.Join(o.ImagesDir, o.LogFile), func(c *criu.Criu) error {
		return c.Restore(opts, n)
	})
	if err == nil && n.restored {
		return n.pid, nil
	}
	if n.pid > 0 {
		// CRIU killed the root it forked on failure, but the root is our child:
		// make sure it is dead, and reap it.
		_ = unix.Kill(n.pid, unix.SIGKILL)
		for {
			if _, werr := unix.Wait4(n.pid, nil, 0, nil); !errors.Is(werr, unix.EINTR) {
				break
			}
		}
	}
	if err == nil {
		err = &CRIUError{Op: "restore", LogPath: filepath.Join(o.ImagesDir, o.LogFile), Err: errors.New("no post-restore notification: root PID unknown")}
	}
	return 0, err
}

// FileKey returns the name CRIU gives fd of pid as an external file, the key of an
// InheritFile: the target of /proc/PID/fd/FD, e.g. "pipe:[430873]".
func FileKey(pid, fd int) (string, error) {
	k, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
	if err != nil {
		return "", fmt.Errorf("checkpoint: key of fd %d of pid %d: %w", fd, pid, err)
	}
	return k, nil
}

// run performs one go-criu operation with a fresh CRIU child and turns its
// failure into a *CRIUError.
func run(ctx context.Context, op, criuPath, logPath string, do func(*criu.Criu) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: %s not started: %w", op, err)
	}
	if criuPath == "" {
		criuPath = DefaultCRIUPath
	}
	c := criu.MakeCriu()
	c.SetCriuPath(criuPath)
	err := do(c)
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		err = errors.Join(cerr, err)
	}
	lines, omitted := logErrors(logPath)
	return &CRIUError{Op: op, LogPath: logPath, Lines: lines, Omitted: omitted, Err: err}
}

// ctxNotify fails every CRIU notification once ctx is done, which makes CRIU roll
// back.
type ctxNotify struct{ ctx context.Context }

func (n ctxNotify) check(step string) error {
	if err := n.ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint: cancelled at %s: %w", step, err)
	}
	return nil
}

func (n ctxNotify) PreDump() error              { return n.check("pre-dump") }
func (n ctxNotify) PostDump() error             { return n.check("post-dump") }
func (n ctxNotify) PreRestore() error           { return n.check("pre-restore") }
func (n ctxNotify) PostRestore(int32) error     { return n.check("post-restore") }
func (n ctxNotify) NetworkLock() error          { return n.check("network-lock") }
func (n ctxNotify) NetworkUnlock() error        { return n.check("network-unlock") }
func (n ctxNotify) SetupNamespaces(int32) error { return n.check("setup-namespaces") }
func (n ctxNotify) PostSetupNamespaces() error  { return n.check("post-setup-namespaces") }
func (n ctxNotify) PostResume() error           { return nil } // too late to roll back
var _ criu.Notify = ctxNotify{}

// dumpNotify is ctxNotify with a failpoint in the middle of a dump: at
// post-dump, CRIU has written the images and still holds the tree, frozen
// (an e2e test kills CRIU there, as a node shutdown would).
type dumpNotify struct{ ctxNotify }

func (n dumpNotify) PostDump() error {
	if err := failpoint.Hit("checkpoint/dump/post-dump"); err != nil {
		return err
	}
	return n.check("post-dump")
}

// restoreNotify also learns the restored root's PID: at setup-namespaces (sent for
// every tree in its own namespaces, right after CRIU forks the root) and at
// post-restore.
type restoreNotify struct {
	ctxNotify
	pid      int
	restored bool
}

func (n *restoreNotify) SetupNamespaces(pid int32) error {
	n.pid = int(pid)
	return n.check("setup-namespaces")
}

func (n *restoreNotify) PostRestore(pid int32) error {
	n.pid = int(pid)
	if err := n.check("post-restore"); err != nil {
		return err
	}
	n.restored = true
	return nil
}

func openDir(path string) (*os.File, error) {
	if path == "" {
		return nil, errors.New("checkpoint: no images directory")
	}
	d, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: images directory: %w", err)
	}
	return d, nil
}

func logLevel(l int) int32 {
	if l <= 0 {
		return DefaultLogLevel
	}
	return int32(l)
}

// logErrors returns the Error lines of the CRIU log at path (at most
// maxQuotedLines) and how many more there were.
func logErrors(path string) ([]string, int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{fmt.Sprintf("(no CRIU log: %v)", err)}, 0
	}
	all := criulog.ErrorLines(b, math.MaxInt)
	if len(all) > maxQuotedLines {
		return all[:maxQuotedLines], len(all) - maxQuotedLines
	}
	return all, 0
}

// anyErrorLine reports whether err is a CRIUError with an error line that
// matches.
func anyErrorLine(err error, match func(line string) bool) bool {
	var ce *CRIUError
	if !errors.As(err, &ce) {
		return false
	}
	return slices.ContainsFunc(ce.Lines, match)
}

// IsSharedProc reports whether err is a dump that failed because the dumped
// task's PID namespace is not the one of the /proc it sees, and CRIU's
// parasite, which then mounts one of its own at "proc.crtools" in the task's
// working directory, could not: the task is not root ("can't dump
// unprivileged task whose /proc doesn't belong to it"), or may not write
// there (EACCES), or the folder is read-only (EROFS), or another dump of a
// task in the same folder holds that directory (EEXIST). Only a job started
// before jobs had a /proc of their own (isolate.JobNamespaces) can fail so.
func IsSharedProc(err error) bool {
	return anyErrorLine(err, func(l string) bool {
		if !strings.Contains(l, "parasite.c") {
			return false
		}
		return strings.Contains(l, "can't dump unprivileged task whose /proc doesn't belong to it") ||
			strings.Contains(l, "Can't create a directory (-13)") || strings.Contains(l, "Can't create a directory (-30)") ||
			strings.Contains(l, "Can't create a directory (-17)")
	})
}

// IsForeignRlimit reports whether err is a dump that failed because CRIU may
// not read the resource limits of a task of another user: prlimit() on such
// a task needs CAP_SYS_RESOURCE, which root lacks on some machines (sandboxed
// VMs, containers). The CRIU that hack/install-criu.sh builds reads them from
// /proc/PID/limits instead (hack/criu-patches).
func IsForeignRlimit(err error) bool {
	return anyErrorLine(err, func(l string) bool {
		return strings.Contains(l, "Can't get rlimit") && strings.Contains(l, "Operation not permitted")
	})
}

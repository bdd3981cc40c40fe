package shim

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// forwarded are the signals init passes on to the job's process group. SIGKILL and
// SIGSTOP cannot be caught; the agent delivers those itself.
var forwarded = []os.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGUSR1,
	syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT, syscall.SIGTSTP, syscall.SIGTTIN,
	syscall.SIGTTOU, syscall.SIGALRM, syscall.SIGPWR,
}

// RunInit is `ssi init --node NODE --gpid N -- CMD ARGS...`, PID 1 of a job. It
// returns the exit code init should exit with.
func RunInit(args []string) int {
	fl := flag.NewFlagSet("ssi init", flag.ContinueOnError)
	node := fl.String("node", "", "node name, for messages")
	_ = fl.Uint64("gpid", 0, "gpid, for ps on the host")
	uid := fl.Int("uid", 0, "user the command runs as")
	gid := fl.Int("gid", 0, "group the command runs as")
	groupList := fl.String("groups", "", "supplementary groups of the command, comma-separated")
	tty := fl.Bool("tty", false, "fds 0-2 are a terminal: make it the command's controlling terminal")
	if err := fl.Parse(args); err != nil || fl.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "ssi init: internal command, started by ssi shim: ssi init --node NODE [--uid N --gid N --groups G,...] -- CMD [ARGS...]")
		return 2
	}
	argv := fl.Args()
	cred, err := credential(*uid, *gid, *groupList)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ssi init: %v\n", err)
		return 2
	}
	// The sync socket must not leak into the job.
	unix.CloseOnExec(syncFD)
	// Belt and braces with the shim: nothing above the sync fd reaches the job.
	_ = unix.CloseRange(syncFD+1, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err = setupMounts(); err == nil {
		err = reopenStdio()
	}
	if err != nil {
		unix.Close(syncFD)
		fmt.Fprintf(os.Stderr, "ssi init: %v\n", err)
		return 1
	}
	var b [1]byte
	if n, _ := unix.Read(syncFD, b[:]); n != 1 {
		fmt.Fprintln(os.Stderr, "ssi init: the shim went away before the job started")
		return 1
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		unix.Close(syncFD)
		return notRunnable(argv[0], *node, err)
	}
	// Subscribe before the child exists so no SIGCHLD is missed.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, forwarded...)
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	// init runs as root (see startInit); the command as the job's user. Go's
	// fork switches credentials before it changes directory, so a working
	// directory the user may not enter fails here, as it would for the user.
	wd, err := os.Getwd()
	if err != nil {
		unix.Close(syncFD)
		fmt.Fprintf(os.Stderr, "ssi: %s: working directory on node %s: %v\n", argv[0], *node, err)
		return 126
	}
	sys := &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if *tty {
		// A session of its own whose controlling terminal is fd 0: the
		// terminal's ^C and window changes signal the command's foreground
		// process group. Its process group is still its PID.
		sys = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Credential: cred}
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Dir:   wd,
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   sys,
	})
	if err != nil {
		unix.Close(syncFD)
		if errors.Is(err, unix.EACCES) && cred.Uid != 0 {
			fmt.Fprintf(os.Stderr, "ssi: %s: cannot execute on node %s as uid %d: permission denied (to the command, or to the working directory %s)\n", argv[0], *node, cred.Uid, wd)
			return 126
		}
		return notRunnable(argv[0], *node, err)
	}
	_, _ = unix.Write(syncFD, []byte{'s'})
	unix.Close(syncFD)
	// Init reads nothing: its stdin goes back to /dev/null, so that the job's
	// stdin pipe has the job alone for reader and the shim's writes fail once
	// the job has closed it.
	if null, err := unix.Open(os.DevNull, unix.O_RDONLY, 0); err == nil {
		_ = unix.Dup3(null, 0, 0)
		unix.Close(null)
	}

	for {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			if err := unix.Kill(-pid, sig); errors.Is(err, unix.ESRCH) {
				_ = unix.Kill(pid, sig)
			}
		case <-chld:
			for {
				var ws unix.WaitStatus
				wpid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if err != nil || wpid <= 0 {
					break
				}
				if wpid != pid {
					continue // an orphan re-parented to us
				}
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
	}
}

// credential parses init's --uid, --gid and --groups.
func credential(uid, gid int, groups string) (*syscall.Credential, error) {
	if uid < 0 || gid < 0 {
		return nil, fmt.Errorf("--uid %d --gid %d: must not be negative", uid, gid)
	}
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	if groups == "" {
		return c, nil
	}
	for _, g := range strings.Split(groups, ",") {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--groups %q: %q is not a group id", groups, g)
		}
		c.Groups = append(c.Groups, uint32(n))
	}
	return c, nil
}

// notRunnable reports a command that cannot be executed, with a shell's codes.
func notRunnable(cmd, node string, err error) int {
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(os.Stderr, "ssi: %s: command not found on node %s\n", cmd, node)
		return 127
	default:
		fmt.Fprintf(os.Stderr, "ssi: %s: cannot execute on node %s: %v\n", cmd, node, err)
		return 126
	}
}

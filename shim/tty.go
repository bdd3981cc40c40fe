package shim

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// A job started with a terminal (ssi run -t, Spec.TTY) has a pseudo-terminal
// for fds 0-2 and as its controlling terminal, so that interactive programs
// work, ^C typed is the terminal's SIGINT, and the window size follows the
// user's. The shim holds the master: what the job writes is read from it into
// the log (as stdout: a terminal has one stream), what the user types is
// written into it through the stdin socket. CRIU cannot re-plumb a terminal
// whose master lives outside the job, so the agent refuses to move or
// checkpoint such a job.

// WinSize is a terminal's size in characters.
type WinSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// openPTY makes a pseudo-terminal of size ws whose slave belongs to uid:gid,
// and returns its master and slave.
func openPTY(ws WinSize, uid, gid int) (master, slave *os.File, err error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("shim: open /dev/ptmx: %w", err)
	}
	fail := func(what string, err error) (*os.File, *os.File, error) {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("shim: terminal: %s: %w", what, err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return fail("unlock", err)
	}
	if err := setWinSize(mfd, ws); err != nil {
		return fail("window size", err)
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		return fail("open slave", errno)
	}
	sfd := int(r)
	_ = unix.Fchown(sfd, uid, gid) // the job's, as login does
	_ = unix.Fchmod(sfd, 0o620)
	return os.NewFile(uintptr(mfd), "ptmx"), os.NewFile(uintptr(sfd), "pts"), nil
}

func setWinSize(fd int, ws WinSize) error {
	if ws.Rows == 0 || ws.Cols == 0 {
		return nil
	}
	return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
}

// dupFile returns a new descriptor of f's open file.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(uintptr(fdOf(f)), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shim: dup %s: %w", f.Name(), err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

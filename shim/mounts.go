package shim

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// setupMounts is ssi-init's setup_mounts (cmd/ssi-init/main.c, which says
// why each step is there and why init, not the shim, does it) for the Go
// init: it makes init's mount namespace the job's own, with every mount
// private, the node's nsfs mounts detached, and a /proc of the job's PID
// namespace and a /dev/shm of its own mounted.
func setupMounts() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the job's mounts private: %w", err)
	}
	// Read with plain system calls: an *os.File would start the Go runtime's
	// poller, two more fds (epoll, eventfd) in init for CRIU to dump.
	table, err := readAll("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	var nsfs []string
	for _, line := range strings.Split(string(table), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(fs) >= 1 && fs[0] == "nsfs" {
			nsfs = append(nsfs, fields[4])
		}
	}
	for _, p := range nsfs {
		_ = unix.Unmount(p, unix.MNT_DETACH)
	}
	for unix.Unmount("/proc", unix.MNT_DETACH) == nil {
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount the job's /proc: %w", err)
	}
	for unix.Unmount("/dev/shm", unix.MNT_DETACH) == nil {
	}
	if err := unix.Mount("shm", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mount the job's /dev/shm: %w", err)
	}
	return nil
}

// reopenStdio is ssi-init's reopen_stdio: fds 0-2 that are devices the shim
// opened in the node's mount namespace are opened again in the job's, where
// CRIU can find their mount.
func reopenStdio() error {
	for fd := 0; fd <= 2; fd++ {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
			continue
		}
		path, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		if err != nil {
			return fmt.Errorf("fd %d: %w", fd, err)
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			return fmt.Errorf("fd %d: %w", fd, err)
		}
		nfd, err := unix.Open(path, flags&(unix.O_ACCMODE|unix.O_APPEND|unix.O_NONBLOCK)|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s again in the job's mount namespace: %w", path, err)
		}
		err = unix.Dup3(nfd, fd, 0)
		unix.Close(nfd)
		if err != nil {
			return fmt.Errorf("dup3 %s: %w", path, err)
		}
	}
	return nil
}

// readAll reads a file with system calls alone (see setupMounts).
func readAll(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 16<<10)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}

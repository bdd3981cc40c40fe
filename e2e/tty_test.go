package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// userTerminal is a terminal for the CLI, as a user's would be: the test
// holds its master (the "screen" and "keyboard") and runs ssi on its slave,
// as the session leader with it for controlling terminal.
type userTerminal struct {
	master *os.File
	mu     sync.Mutex
	screen strings.Builder
	closed chan struct{}
}

func newUserTerminal(t *testing.T, rows, cols uint16) (*userTerminal, *os.File) {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(mfd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		t.Fatal(errno)
	}
	ut := &userTerminal{master: os.NewFile(uintptr(mfd), "ptmx"), closed: make(chan struct{})}
	go func() {
		defer close(ut.closed)
		b := make([]byte, 4096)
		for {
			n, err := ut.master.Read(b)
			ut.mu.Lock()
			ut.screen.Write(b[:n])
			ut.mu.Unlock()
			if err != nil {
				return // EIO once the CLI is gone
			}
		}
	}()
	t.Cleanup(func() { ut.master.Close() })
	return ut, os.NewFile(r, "pts")
}

func (u *userTerminal) text() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.screen.String()
}

// waitFor waits until the screen shows s.
func (u *userTerminal) waitFor(t *testing.T, s string) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("the terminal shows %q", s), func() error {
		if !strings.Contains(u.text(), s) {
			return fmt.Errorf("screen so far: %q", u.text())
		}
		return nil
	})
}

func (u *userTerminal) typeIn(t *testing.T, s string) {
	t.Helper()
	if _, err := u.master.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// start runs `ssi args...` on the terminal.
func (u *userTerminal) start(t *testing.T, c *testCluster, slave *os.File, args ...string) *exec.Cmd {
	t.Helper()
	cmd := c.cmd(context.Background(), args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	return cmd
}

func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("ssi run -t did not end")
	}
	return cmd.ProcessState.ExitCode()
}

// TestTTY: ssi run -t gives the job a terminal of the user's size that
// follows the user's window, keys typed reach it (a line read, ^C as its
// SIGINT), and ssi says plainly that such a job cannot be moved.
func TestTTY(t *testing.T) {
	c := need(t)
	ut, slave := newUserTerminal(t, 33, 101)
	run := ut.start(t, c, slave, "run", "-t", "--node", "node2", "--", "sh", "-c",
		`tty; stty size; read l; echo "got $l"; stty size; read l; exit 7`)
	ut.waitFor(t, "/dev/pts/")
	ut.waitFor(t, "33 101")
	// The user's window changes: the CLI gets SIGWINCH and resizes the job's.
	if err := unix.IoctlSetWinsize(int(ut.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 120}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	ut.typeIn(t, "hello\r") // raw: the job's terminal turns \r into \n
	ut.waitFor(t, "got hello")
	ut.waitFor(t, "40 120")
	ut.typeIn(t, "bye\r")
	if code := exitCode(t, run); code != 7 {
		t.Fatalf("ssi run -t: exit %d, want 7; screen %q", code, ut.text())
	}
	t.Logf("screen: %q", ut.text())

	// ^C typed is the job's SIGINT; meanwhile it cannot be moved or
	// checkpointed.
	ut, slave = newUserTerminal(t, 24, 80)
	run = ut.start(t, c, slave, "run", "-t", "--node", "node2", "--", "sleep", "321")
	gpid := c.newestRunning(t, func(argv []string) bool { return strings.Join(argv, " ") == "sleep 321" })
	g := strconv.FormatUint(gpid, 10)
	for _, args := range [][]string{{"migrate", g, "node3"}, {"migrate", "--postcopy", g, "node3"}, {"checkpoint", "--leave-running", g}} {
		r := c.ssi(t, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "has a terminal (ssi run -t)") || !strings.Contains(r.stderr, "cannot be") {
			t.Fatalf("ssi %s of a job with a terminal: %v", strings.Join(args, " "), r)
		}
		t.Logf("ssi %s: %s", strings.Join(args, " "), strings.TrimSpace(r.stderr))
	}
	if p := c.proc(t, gpid); p.Node != "node2" || !p.TTY || !pidAlive(p.PID) {
		t.Fatalf("after the refusals: %+v", p.Proc)
	}
	time.Sleep(300 * time.Millisecond)
	ut.typeIn(t, "\x03")
	if code := exitCode(t, run); code != 130 {
		t.Fatalf("^C typed to ssi run -t -- sleep: exit %d, want 130; screen %q", code, ut.text())
	}

	// No terminal, no -t.
	if r := c.ssi(t, "run", "-t", "--", "true"); r.code != 2 || !strings.Contains(r.stderr, "not a terminal") {
		t.Fatalf("ssi run -t < /dev/null: %v", r)
	}
}

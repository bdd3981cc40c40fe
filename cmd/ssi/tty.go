package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/shim"
)

// terminal is the local terminal of `ssi run -t`: the CLI's stdin, put in raw
// mode for the run (every key goes to the job's terminal, ^C included, whose
// line discipline turns it into the job's SIGINT) and restored after.
type terminal struct {
	fd    int
	saved *unix.Termios
}

// openTerminal returns r as a terminal, or an error if it is none.
func openTerminal(r io.Reader) (*terminal, error) {
	f, ok := r.(*os.File)
	if !ok {
		return nil, errors.New("stdin is not a terminal")
	}
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, errors.New("stdin is not a terminal")
	}
	return &terminal{fd: fd, saved: t}, nil
}

// size returns the terminal's size.
func (t *terminal) size() shim.WinSize {
	ws, err := unix.IoctlGetWinsize(t.fd, unix.TIOCGWINSZ)
	if err != nil {
		return shim.WinSize{Rows: 24, Cols: 80}
	}
	return shim.WinSize{Rows: ws.Row, Cols: ws.Col}
}

// raw puts the terminal in raw mode (cfmakeraw's settings).
func (t *terminal) raw() error {
	r := *t.saved
	r.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	r.Oflag &^= unix.OPOST
	r.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	r.Cflag &^= unix.CSIZE | unix.PARENB
	r.Cflag |= unix.CS8
	r.Cc[unix.VMIN], r.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(t.fd, unix.TCSETS, &r); err != nil {
		return fmt.Errorf("raw mode: %w", err)
	}
	return nil
}

// restore puts the terminal back as it was.
func (t *terminal) restore() { _ = unix.IoctlSetTermios(t.fd, unix.TCSETS, t.saved) }

// followSize sends the terminal's size to the job whenever it changes
// (SIGWINCH), until ctx ends.
func (t *terminal) followSize(ctx context.Context, e *env, cl *api.Client, gpid uint64) {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		defer signal.Stop(winch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-winch:
				ws := t.size()
				if err := cl.Resize(ctx, gpid, ws.Rows, ws.Cols); err != nil && ctx.Err() == nil && !api.IsCode(err, api.CodeConflict) {
					fmt.Fprintf(e.stderr, "ssi: resize the terminal of gpid %d: %v\r\n", gpid, err)
				}
			}
		}
	}()
}

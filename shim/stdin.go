package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A job started attached (Spec.Stdin) reads fd 0 from a pipe whose write end
// this shim holds, so the job's input outlives the agent as its output does.
// The agent feeds the pipe through a unix socket in the job dir (StdinSocket),
// one request per connection: a JSON StdinRequest line, for a write the
// request's Len bytes, then a JSON StdinStatus line back.
//
// The input is a byte stream with offsets: Offset counts the bytes the job's
// stdin has accepted (written into the pipe, or held in Pending to be written
// first). A write names the stream offset of its first byte; bytes below the
// shim's offset are skipped, so a client that lost an answer resends from the
// last offset it was told and nothing is written twice or lost.
//
// A migration holds the stream once the job is frozen: the shim stops writing,
// drains what the job has not read from the pipe into Pending (CRIU restores
// no contents of a pipe given with --inherit-fd), and saves StdinState in
// StdinFile, which travels with the job's log; the target's shim writes
// Pending into the job's new pipe before anything else. A rollback releases
// the hold and the source's shim carries on with Pending first.

// Files of a job's stdin in its job dir.
const (
	// StdinSocket is where the shim takes the job's input from the agent.
	StdinSocket = "stdin.sock"
	// StdinFile (StdinState) is the stdin of a job held for a migration.
	StdinFile = "stdin.json"
)

// Operations on the stdin socket.
const (
	StdinWrite    = "write"   // feed Len bytes from Offset; EOF closes the pipe after them
	StdinStatusOp = "status"  // report the offset
	StdinHold     = "hold"    // stop writing, drain the pipe, save StdinFile (job frozen)
	StdinRelease  = "release" // undo a hold (the migration rolled back)
	StdinResize   = "resize"  // a terminal's new size: Rows, Cols
)

// stdinWriteWait bounds how long one write waits for the job to take its
// bytes; the client sends the rest again.
const stdinWriteWait = 10 * time.Second

// ErrStdinGap: a write started beyond the bytes the job has accepted; the
// bytes between are lost to the client.
var ErrStdinGap = errors.New("shim: stdin write starts beyond the accepted offset")

// StdinRequest is one request on the stdin socket.
type StdinRequest struct {
	Op string `json:"op"`
	// Offset is the stream offset of the first byte of a write.
	Offset int64 `json:"offset,omitempty"`
	// Len bytes follow the request line of a write.
	Len int64 `json:"len,omitempty"`
	// EOF ends the stream after this write's bytes.
	EOF bool `json:"eof,omitempty"`
	// Rows and Cols are a Resize's terminal size.
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

// StdinStatus answers every request.
type StdinStatus struct {
	// Offset is the number of bytes the job's stdin has accepted.
	Offset int64 `json:"offset"`
	// EOF: the stream has ended at Offset (the pipe is or will be closed).
	EOF bool `json:"eof,omitempty"`
	// Closed: the job no longer reads its stdin; further bytes are useless.
	Closed bool `json:"closed,omitempty"`
	// Held: held for a migration; send again later (to the new owner).
	Held  bool   `json:"held,omitempty"`
	Error string `json:"error,omitempty"`
	// Gap is set with Error when the write started beyond Offset.
	Gap bool `json:"gap,omitempty"`
}

// StdinState is the stdin of a held job, saved in StdinFile.
type StdinState struct {
	Offset int64 `json:"offset"`
	EOF    bool  `json:"eof,omitempty"`
	Closed bool  `json:"closed,omitempty"`
	// Pending are accepted bytes (counted in Offset) not yet in the pipe.
	Pending []byte `json:"pending,omitempty"`
}

// StdinCall sends one request to the stdin socket of the job in dir and
// returns its answer; a write carries data (req.Len is set from it).
func StdinCall(ctx context.Context, dir string, req StdinRequest, data []byte) (StdinStatus, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(dir, StdinSocket))
	if err != nil {
		return StdinStatus{}, fmt.Errorf("shim: stdin socket: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if req.Op == StdinWrite {
		req.Len = int64(len(data))
	}
	line, _ := json.Marshal(req)
	if _, err := conn.Write(append(line, '\n')); err != nil {
		conn.Close()
		return StdinStatus{}, fmt.Errorf("shim: stdin request: %w", err)
	}
	// The shim may answer before it took every byte (the job stopped
	// reading, a hold): the answer counts, a failed send does not.
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		if req.Op == StdinWrite && len(data) > 0 {
			_, _ = conn.Write(data)
		}
	}()
	defer func() {
		conn.Close() // ends the send, if the shim stopped reading
		<-sent
	}()
	var st StdinStatus
	b, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return StdinStatus{}, fmt.Errorf("shim: stdin answer: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return StdinStatus{}, fmt.Errorf("shim: stdin answer %q: %w", b, err)
	}
	return st, nil
}

// stdinPipe makes a job's stdin pipe: the read end for the job, the write
// end for the shim, and the pipe's CRIU key ("pipe:[INODE]").
func stdinPipe() (r, w *os.File, key string, err error) {
	if r, w, err = os.Pipe(); err != nil {
		return nil, nil, "", fmt.Errorf("shim: stdin pipe: %w", err)
	}
	fi, err := w.Stat()
	if err != nil {
		r.Close()
		w.Close()
		return nil, nil, "", fmt.Errorf("shim: stdin pipe: %w", err)
	}
	return r, w, fmt.Sprintf("pipe:[%d]", fi.Sys().(*syscall.Stat_t).Ino), nil
}

// errStopped: the writer was told to stop (a newer request, a hold) or ran
// out of time; errPipeGone: the pipe is closed (end of stream, or no reader).
var (
	errStopped  = errors.New("stopped")
	errPipeGone = errors.New("pipe closed")
)

// stdinPump owns the write end of a job's stdin pipe.
type stdinPump struct {
	log *slog.Logger
	dir string
	// ref is an O_PATH descriptor of the pipe, which neither reads nor
	// writes: opened again through /proc it gives a read end to drain the
	// pipe with, even once the write end is closed.
	ref int
	// wait bounds one write (stdinWriteWait).
	wait time.Duration
	// tty: w is a terminal's master, which the end of the input does not
	// close (a terminal's end of file is a ^D typed) and Resize sizes.
	tty bool

	// wmu is held by the one goroutine that writes into the pipe.
	wmu sync.Mutex

	mu   sync.Mutex
	w    *os.File // nil once closed
	st   StdinState
	held bool
	stop bool     // the writer must stop: a newer writer or a hold wants the pipe
	conn net.Conn // the writer's connection, if any
}

// newStdinPump takes over w, the write end of a job's stdin pipe, in state st
// (zero for a new job; the saved state for a restored one).
func newStdinPump(log *slog.Logger, dir string, w *os.File, st StdinState) (*stdinPump, error) {
	ref, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fdOf(w)), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shim: stdin pipe handle: %w", err)
	}
	p := &stdinPump{log: log, dir: dir, ref: ref, wait: stdinWriteWait, w: w, st: st}
	if st.Closed {
		p.closeWrite()
	}
	return p, nil
}

// fdOf returns f's descriptor without changing its blocking mode (Fd would).
func fdOf(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(u uintptr) { fd = int(u) })
	}
	return fd
}

// serve answers requests on the job's stdin socket until ln is closed.
func (p *stdinPump) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go p.handle(conn)
	}
}

func (p *stdinPump) handle(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return
	}
	var req StdinRequest
	var st StdinStatus
	if err := json.Unmarshal(line, &req); err != nil {
		st = StdinStatus{Error: fmt.Sprintf("bad request %q: %v", line, err)}
	} else {
		switch req.Op {
		case StdinWrite:
			st = p.write(conn, br, req)
		case StdinStatusOp:
			st = p.status()
		case StdinHold:
			st = p.hold()
		case StdinRelease:
			st = p.release()
		case StdinResize:
			st = p.resize(WinSize{Rows: req.Rows, Cols: req.Cols})
		default:
			st = p.status()
			st.Error = fmt.Sprintf("unknown op %q", req.Op)
		}
	}
	b, _ := json.Marshal(st)
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write(append(b, '\n'))
}

func (p *stdinPump) status() StdinStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return StdinStatus{Offset: p.st.Offset, EOF: p.st.EOF, Closed: p.st.Closed, Held: p.held}
}

// interrupt makes the current writer stop soon.
func (p *stdinPump) interrupt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stop = true
	past := time.Unix(1, 0)
	if p.w != nil {
		_ = p.w.SetWriteDeadline(past)
	}
	if p.conn != nil {
		_ = p.conn.SetReadDeadline(past)
	}
}

// acquire makes the caller the writer, for at most wait; end releases it.
// A request preempts the writer it finds (its client has given up on it).
func (p *stdinPump) acquire(conn net.Conn, preempt bool, wait time.Duration) {
	if preempt {
		p.interrupt()
	}
	p.wmu.Lock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stop, p.conn = false, conn
	if p.w != nil {
		_ = p.w.SetWriteDeadline(time.Now().Add(wait))
	}
	if conn != nil {
		_ = conn.SetReadDeadline(time.Now().Add(wait))
	}
}

func (p *stdinPump) end() {
	p.mu.Lock()
	p.conn = nil
	if p.w != nil {
		_ = p.w.SetWriteDeadline(time.Time{})
	}
	p.mu.Unlock()
	p.wmu.Unlock()
}

// put writes b into the pipe (writer only) and returns how much went in.
func (p *stdinPump) put(b []byte) (int, error) {
	p.mu.Lock()
	w, stop := p.w, p.stop || p.held
	p.mu.Unlock()
	switch {
	case w == nil:
		return 0, errPipeGone
	case stop:
		return 0, errStopped
	}
	n, err := w.Write(b)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.EIO):
		// The job closed its stdin (or exited): nobody will read more.
		p.mu.Lock()
		p.st.Closed = true
		p.mu.Unlock()
		p.closeWrite()
		return n, errPipeGone
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n, errStopped
	default:
		p.log.Warn("write job stdin", "err", err)
		return n, err
	}
}

// flushPending writes the pending bytes first (writer only).
func (p *stdinPump) flushPending() error {
	for {
		p.mu.Lock()
		b := p.st.Pending
		p.mu.Unlock()
		if len(b) == 0 {
			return nil
		}
		n, err := p.put(b)
		p.mu.Lock()
		p.st.Pending = p.st.Pending[n:]
		if len(p.st.Pending) == 0 {
			p.st.Pending = nil
		}
		p.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// closeAtEOF closes the pipe once the stream has ended and nothing is
// pending (writer only).
func (p *stdinPump) closeAtEOF() {
	p.mu.Lock()
	done := p.st.EOF && len(p.st.Pending) == 0 && !p.held && !p.tty
	p.mu.Unlock()
	if done {
		p.closeWrite()
	}
}

func (p *stdinPump) closeWrite() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w != nil {
		p.w.Close()
		p.w = nil
	}
}

// write feeds the job the bytes of req that it has not accepted yet.
func (p *stdinPump) write(conn net.Conn, br *bufio.Reader, req StdinRequest) StdinStatus {
	p.acquire(conn, true, p.wait)
	defer p.end()
	body := io.LimitReader(br, req.Len)
	if st := p.status(); st.Held || st.EOF || st.Closed {
		return st
	}
	if req.Offset < 0 || req.Len < 0 {
		st := p.status()
		st.Error = fmt.Sprintf("bad write: offset %d, len %d", req.Offset, req.Len)
		return st
	}
	if err := p.flushPending(); err != nil {
		return p.status()
	}
	p.mu.Lock()
	skip := p.st.Offset - req.Offset
	p.mu.Unlock()
	if skip < 0 {
		st := p.status()
		st.Error, st.Gap = fmt.Sprintf("%v: the job has accepted %d bytes, the write starts at %d", ErrStdinGap, st.Offset, req.Offset), true
		return st
	}
	if _, err := io.CopyN(io.Discard, body, min(skip, req.Len)); err != nil {
		return p.status()
	}
	buf := make([]byte, 64<<10)
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			n, err := p.put(buf[:k])
			p.mu.Lock()
			p.st.Offset += int64(n)
			p.mu.Unlock()
			if err != nil {
				return p.status()
			}
		}
		if rerr != nil {
			break // the whole write (io.EOF), or its connection broke
		}
	}
	p.mu.Lock()
	if req.EOF && p.st.Offset == req.Offset+req.Len {
		p.st.EOF = true
	}
	p.mu.Unlock()
	p.closeAtEOF()
	return p.status()
}

// hold stops all writing and drains the pipe into Pending; the job must be
// frozen (dumped), so that it reads nothing meanwhile. The state is saved
// in StdinFile for the target.
func (p *stdinPump) hold() StdinStatus {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
	p.interrupt()
	p.wmu.Lock()
	defer p.wmu.Unlock()
	drained, err := p.drain()
	p.mu.Lock()
	if len(drained) > 0 {
		p.st.Pending = append(drained, p.st.Pending...)
	}
	saved := p.st
	p.mu.Unlock()
	if err == nil {
		err = WriteJSON(p.dir, StdinFile, saved)
	}
	st := p.status()
	if err != nil {
		st.Error = err.Error()
	}
	p.log.Info("stdin held for a migration", "offset", saved.Offset, "pending", len(saved.Pending), "eof", saved.EOF)
	return st
}

// resize sets the size of the job's terminal; the kernel signals SIGWINCH
// to its foreground process group.
func (p *stdinPump) resize(ws WinSize) StdinStatus {
	p.mu.Lock()
	w := p.w
	p.mu.Unlock()
	var err error
	switch {
	case !p.tty:
		err = errors.New("the job has no terminal")
	case w == nil:
		err = errPipeGone
	default:
		err = setWinSize(fdOf(w), ws)
	}
	st := p.status()
	if err != nil {
		st.Error = fmt.Sprintf("resize terminal: %v", err)
	}
	return st
}

// release undoes a hold: the job runs here again.
func (p *stdinPump) release() StdinStatus {
	p.mu.Lock()
	was := p.held
	p.held = false
	p.mu.Unlock()
	if was {
		_ = os.Remove(filepath.Join(p.dir, StdinFile))
		go p.flushLoop()
		p.log.Info("stdin released: the migration rolled back")
	}
	return p.status()
}

// flushLoop writes the pending bytes (and closes the pipe at the end of the
// stream) without waiting for a client's next write, which may never come:
// the client may have sent everything before a migration.
func (p *stdinPump) flushLoop() {
	for {
		p.acquire(nil, false, time.Second)
		err := p.flushPending()
		p.closeAtEOF()
		p.mu.Lock()
		done := p.held || p.w == nil || (len(p.st.Pending) == 0 && !p.st.EOF)
		p.mu.Unlock()
		p.end()
		if done || (err != nil && !errors.Is(err, errStopped)) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// drain reads what the pipe holds (writer only).
func (p *stdinPump) drain() ([]byte, error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", p.ref), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shim: open stdin pipe to drain it: %w", err)
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			out = append(out, buf[:n]...)
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if n == 0 || errors.Is(err, unix.EAGAIN) {
			return out, nil
		}
		return out, fmt.Errorf("shim: drain stdin pipe: %w", err)
	}
}

// close ends the pump with the job.
func (p *stdinPump) close() {
	p.interrupt()
	p.closeWrite()
	unix.Close(p.ref)
}

// listenStdin opens the job's stdin socket.
func listenStdin(dir string) (net.Listener, error) {
	path := filepath.Join(dir, StdinSocket)
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("shim: stdin socket %s: %w", path, err)
	}
	return ln, nil
}

// serveStdin serves the job's stdin socket with p; the returned func stops it
// and closes the pipe. Without a socket the job reads end of file at once
// rather than wait for input that cannot come.
func serveStdin(log *slog.Logger, dir string, p *stdinPump) (stop func()) {
	ln, err := listenStdin(dir)
	if err != nil {
		log.Error("job stdin: the job reads end of file", "err", err)
		p.close()
		return func() {}
	}
	go p.serve(ln)
	return func() {
		ln.Close()
		p.close()
	}
}

// restoreStdin is the stdin of a job being restored: a new pipe, whose read
// end CRIU gives the job in place of the old one (--inherit-fd), and a pump
// over its write end in the state the source saved.
type restoreStdin struct {
	r    *os.File // nil: the job has no stdin of ours
	key  string
	pump *stdinPump
}

func restoredStdin(log *slog.Logger, dir string, rs RestoreSpec) (*restoreStdin, error) {
	if rs.StdinKey == "" {
		return &restoreStdin{}, nil
	}
	var st StdinState
	if err := ReadJSON(dir, StdinFile, &st); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	r, w, key, err := stdinPipe()
	if err != nil {
		return nil, err
	}
	pump, err := newStdinPump(log, dir, w, st)
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	return &restoreStdin{r: r, key: key, pump: pump}, nil
}

// discard closes the pipe of a failed restore.
func (s *restoreStdin) discard() {
	if s.r != nil {
		s.r.Close()
		s.pump.close()
	}
}

// start feeds the restored job, the bytes saved at the hold first, and
// returns the pump (nil without stdin).
func (s *restoreStdin) start() *stdinPump {
	if s.r == nil {
		return nil
	}
	s.r.Close()
	_ = os.Remove(filepath.Join(s.pump.dir, StdinFile))
	go s.pump.flushLoop()
	return s.pump
}

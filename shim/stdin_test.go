package shim

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
)

// startPump serves a pump over a new pipe in a temporary job dir and returns
// the dir and the pipe's read end (the job's stdin).
func startPump(t *testing.T, st StdinState) (string, *os.File, *stdinPump) {
	t.Helper()
	dir := t.TempDir()
	r, w, key, err := stdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if key == "" || key[:6] != "pipe:[" {
		t.Fatalf("key %q", key)
	}
	p, err := newStdinPump(slog.New(slog.NewTextHandler(io.Discard, nil)), dir, w, st)
	if err != nil {
		t.Fatal(err)
	}
	stop := serveStdin(p.log, dir, p)
	t.Cleanup(func() { stop(); r.Close() })
	return dir, r, p
}

func call(t *testing.T, dir string, req StdinRequest, data []byte) StdinStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := StdinCall(ctx, dir, req, data)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStdinOffsets: resent bytes are skipped, a gap is refused, EOF closes
// the pipe after the last byte.
func TestStdinOffsets(t *testing.T) {
	dir, r, _ := startPump(t, StdinState{})
	if st := call(t, dir, StdinRequest{Op: StdinWrite, Offset: 0}, []byte("hello ")); st.Offset != 6 || st.EOF {
		t.Fatalf("first write: %+v", st)
	}
	// A resend of bytes 3.. (the client lost the answer) plus new ones.
	if st := call(t, dir, StdinRequest{Op: StdinWrite, Offset: 3}, []byte("lo world")); st.Offset != 11 {
		t.Fatalf("overlapping write: %+v", st)
	}
	if st := call(t, dir, StdinRequest{Op: StdinWrite, Offset: 20}, []byte("x")); !st.Gap || st.Offset != 11 {
		t.Fatalf("write beyond the offset: %+v", st)
	}
	if st := call(t, dir, StdinRequest{Op: StdinWrite, Offset: 11, EOF: true}, []byte("!\n")); st.Offset != 13 || !st.EOF {
		t.Fatalf("last write: %+v", st)
	}
	got, err := io.ReadAll(r) // ends: the write end is closed
	if err != nil || string(got) != "hello world!\n" {
		t.Fatalf("job read %q, %v", got, err)
	}
	if st := call(t, dir, StdinRequest{Op: StdinWrite, Offset: 11, EOF: true}, []byte("!\n")); st.Offset != 13 || !st.EOF {
		t.Fatalf("resent last write: %+v", st)
	}
}

// TestStdinSlowReader: a write the job does not take in time answers with
// the offset reached; the rest is sent again.
func TestStdinSlowReader(t *testing.T) {
	dir, r, p := startPump(t, StdinState{})
	p.wait = 200 * time.Millisecond
	big := bytes.Repeat([]byte("0123456789abcdef"), 32<<10) // 512 KiB: 8 pipes full
	// Nobody reads yet: the write takes what the pipe holds and answers.
	st := call(t, dir, StdinRequest{Op: StdinWrite, Offset: 0, EOF: true}, big)
	if st.Offset <= 0 || st.Offset >= int64(len(big)) || st.EOF {
		t.Fatalf("write to a full pipe: %+v", st)
	}
	got := make(chan []byte)
	go func() {
		var b []byte
		buf := make([]byte, 4096)
		for {
			time.Sleep(time.Millisecond) // a slow reader
			n, err := r.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				got <- b
				return
			}
		}
	}()
	off, calls := st.Offset, 1
	for !st.EOF {
		calls++
		st = call(t, dir, StdinRequest{Op: StdinWrite, Offset: off, EOF: true}, big[off:])
		if st.Offset < off {
			t.Fatalf("offset went back: %d -> %d", off, st.Offset)
		}
		off = st.Offset
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("job read %d bytes, want %d equal", len(b), len(big))
	}
	t.Logf("%d bytes in %d writes", len(big), calls)
}

// TestStdinHoldRelease: a hold drains what the job did not read and saves
// it; writes are refused while held; a release writes the drained bytes
// first, and a pump started from the saved state (the target of a move) does
// the same.
func TestStdinHoldRelease(t *testing.T) {
	dir, r, _ := startPump(t, StdinState{})
	if st := call(t, dir, StdinRequest{Op: StdinWrite, Offset: 0}, []byte("abc")); st.Offset != 3 {
		t.Fatalf("write: %+v", st)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(r, b); err != nil || b[0] != 'a' {
		t.Fatalf("read %q %v", b, err)
	}
	if st := call(t, dir, StdinRequest{Op: StdinHold}, nil); !st.Held || st.Offset != 3 || st.Error != "" {
		t.Fatalf("hold: %+v", st)
	}
	var saved StdinState
	if err := ReadJSON(dir, StdinFile, &saved); err != nil || string(saved.Pending) != "bc" || saved.Offset != 3 {
		t.Fatalf("saved %+v, %v", saved, err)
	}
	if st := call(t, dir, StdinRequest{Op: StdinWrite, Offset: 3, EOF: true}, []byte("d")); !st.Held || st.Offset != 3 {
		t.Fatalf("write while held: %+v", st)
	}

	// The target: a new pipe and pump from the saved state.
	tdir, tr, _ := startPump(t, saved)
	// The restore path starts the flush loop; so does a write.
	if st := call(t, tdir, StdinRequest{Op: StdinWrite, Offset: 3, EOF: true}, []byte("d")); st.Offset != 4 || !st.EOF {
		t.Fatalf("first write on the target: %+v", st)
	}
	if got, err := io.ReadAll(tr); err != nil || string(got) != "bcd" {
		t.Fatalf("target job read %q, %v", got, err)
	}

	// The source, rolled back: the drained bytes come first, then the rest.
	if st := call(t, dir, StdinRequest{Op: StdinRelease}, nil); st.Held {
		t.Fatalf("release: %+v", st)
	}
	if st := call(t, dir, StdinRequest{Op: StdinWrite, Offset: 3, EOF: true}, []byte("d")); st.Offset != 4 || !st.EOF {
		t.Fatalf("write after release: %+v", st)
	}
	if got, err := io.ReadAll(r); err != nil || string(got) != "bcd" {
		t.Fatalf("source job read %q, %v", got, err)
	}
}

// TestStdinFlushAfterEOF: a stream that had ended before a hold is
// delivered and closed by the pump itself (no client write comes).
func TestStdinFlushAfterEOF(t *testing.T) {
	dir, r, p := startPump(t, StdinState{Offset: 5, EOF: true, Pending: []byte("tail\n")})
	go p.flushLoop()
	if got, err := io.ReadAll(r); err != nil || string(got) != "tail\n" {
		t.Fatalf("read %q, %v", got, err)
	}
	if st := call(t, dir, StdinRequest{Op: StdinStatusOp}, nil); !st.EOF || st.Offset != 5 {
		t.Fatalf("status: %+v", st)
	}
}

// TestStdinReaderGone: once the job has closed its stdin, writes answer
// Closed.
func TestStdinReaderGone(t *testing.T) {
	dir, r, _ := startPump(t, StdinState{})
	r.Close()
	if st := call(t, dir, StdinRequest{Op: StdinWrite, Offset: 0}, []byte("x")); !st.Closed {
		t.Fatalf("write to a closed stdin: %+v", st)
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
)

// fakeStdin is a job's stdin as an owner agent presents it: it accepts a
// random part of each write (a slow job), fails some requests (a restart, a
// move), and loses some answers after accepting the bytes (a connection cut).
type fakeStdin struct {
	mu   sync.Mutex
	rnd  *rand.Rand
	got  []byte
	eof  bool
	sent int
}

func (f *fakeStdin) send(_ context.Context, offset int64, data []byte, eof bool) (api.StdinStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent++
	if len(data) > stdinChunk {
		return api.StdinStatus{}, fmt.Errorf("request of %d bytes", len(data))
	}
	switch f.rnd.IntN(5) {
	case 0:
		return api.StdinStatus{}, api.Errorf(api.CodeNotReady, "gpid 1 is being moved")
	case 1:
		return api.StdinStatus{}, errors.New("connection refused")
	}
	have := int64(len(f.got))
	if offset > have {
		return api.StdinStatus{}, api.Errorf(api.CodeConflict, "gap: %d > %d", offset, have)
	}
	if !f.eof {
		data = data[have-offset:]
		n := len(data)
		if n > 0 {
			n = f.rnd.IntN(n + 1)
		}
		f.got = append(f.got, data[:n]...)
		f.eof = eof && n == len(data)
	}
	if f.rnd.IntN(5) == 0 {
		return api.StdinStatus{}, errors.New("connection reset after the write")
	}
	return api.StdinStatus{Offset: int64(len(f.got)), EOF: f.eof}, nil
}

// slowReader returns its data in small random reads.
type slowReader struct {
	b   []byte
	rnd *rand.Rand
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.b), 1+r.rnd.IntN(100<<10))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// TestStdinFeed: whatever the agent does, the job gets every byte once, in
// order, then end of file.
func TestStdinFeed(t *testing.T) {
	for seed := range uint64(20) {
		rnd := rand.New(rand.NewPCG(seed, 1))
		in := make([]byte, rnd.IntN(2<<20))
		for i := range in {
			in[i] = byte(rnd.IntN(256))
		}
		job := &fakeStdin{rnd: rand.New(rand.NewPCG(seed, 2))}
		var warned []error
		f := &stdinFeed{send: job.send, warn: func(err error) { warned = append(warned, err) }}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		f.run(ctx, &slowReader{b: in, rnd: rand.New(rand.NewPCG(seed, 3))})
		cancel()
		if len(warned) > 0 || !job.eof || !bytes.Equal(job.got, in) {
			t.Fatalf("seed %d: warnings %v, eof %v, job got %d bytes of %d (equal: %v)", seed, warned, job.eof, len(job.got), len(in), bytes.Equal(job.got, in))
		}
		t.Logf("seed %d: %d bytes in %d requests", seed, len(in), job.sent)
	}
}

// TestStdinFeedStops: a job that closed its stdin, or an error that a retry
// cannot fix, ends the feed.
func TestStdinFeedStops(t *testing.T) {
	calls := 0
	var warned []error
	f := &stdinFeed{
		send: func(_ context.Context, offset int64, data []byte, eof bool) (api.StdinStatus, error) {
			calls++
			return api.StdinStatus{Offset: offset, Closed: true}, nil
		},
		warn: func(err error) { warned = append(warned, err) },
	}
	f.run(context.Background(), bytes.NewReader(make([]byte, 1<<20)))
	if calls != 1 || len(warned) != 0 {
		t.Fatalf("closed stdin: %d calls, warnings %v", calls, warned)
	}
	f.send = func(context.Context, int64, []byte, bool) (api.StdinStatus, error) {
		calls++
		return api.StdinStatus{}, api.Errorf(api.CodeConflict, "gpid 1 was started without stdin")
	}
	f.run(context.Background(), bytes.NewReader([]byte("x")))
	if calls != 2 || len(warned) != 1 {
		t.Fatalf("refused stdin: %d calls, warnings %v", calls, warned)
	}
}

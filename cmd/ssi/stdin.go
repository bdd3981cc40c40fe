package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ssi-cluster/ssi/api"
)

// stdinChunk is the most one request carries; stdinGiveUp is how long the
// feed retries without progress (the owner's agent restarting, a move)
// before it stops with a message.
const (
	stdinChunk  = 1 << 20
	stdinGiveUp = time.Minute
)

// stdinSender sends a job's input stream. It is the API call in production
// and a fake agent in tests.
type stdinSender func(ctx context.Context, offset int64, data []byte, eof bool) (api.StdinStatus, error)

// stdinFeed forwards r to a job's stdin, like ssh forwards its stdin: every
// byte once and in order, then end of file. A reader goroutine reads ahead
// while a request is in flight (at most stdinChunk bytes, so a slow job
// slows the reading); the sender keeps the bytes the job has not accepted and
// sends them again from the offset the owner reports, across agent restarts
// and moves.
type stdinFeed struct {
	send stdinSender
	// retry is the pause after a failed request; warn reports a feed that
	// stops for good.
	retry time.Duration
	warn  func(error)
}

// chunk is one read of the input: data, or the end of it (err, io.EOF when
// the input simply ended).
type chunk struct {
	data []byte
	err  error
}

// run forwards r until its end is delivered, the job stops reading, or ctx
// ends.
func (f *stdinFeed) run(ctx context.Context, r io.Reader) {
	// Reads of up to 64 KiB, queued up to one request's worth ahead: the
	// next request is ready when the last one is answered.
	const readSize = 64 << 10
	chunks := make(chan chunk, stdinChunk/readSize)
	go func() {
		for {
			buf := make([]byte, readSize)
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case chunks <- chunk{data: buf[:n]}:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				select {
				case chunks <- chunk{err: err}:
				case <-ctx.Done():
				}
				return
			}
		}
	}()
	var (
		acked   int64     // the stream offset of pending[0]
		pending []byte    // bytes read but not accepted by the job
		ended   bool      // the input has ended: pending is all there is
		stuck   time.Time // since when requests fail
	)
	for {
		// Wait for input only when there is nothing to send.
		if len(pending) == 0 && !ended {
			select {
			case c := <-chunks:
				pending, ended = append(pending, c.data...), c.err != nil
				if c.err != nil && !errors.Is(c.err, io.EOF) {
					f.warn(fmt.Errorf("reading stdin: %w; the job reads end of file", c.err))
				}
			case <-ctx.Done():
				return
			}
		}
		// Take whatever else is ready, up to one request's worth.
	more:
		for !ended && len(pending) < stdinChunk {
			select {
			case c := <-chunks:
				pending, ended = append(pending, c.data...), c.err != nil
			default:
				break more
			}
		}
		n := min(len(pending), stdinChunk)
		eof := ended && n == len(pending)
		st, err := f.send(ctx, acked, pending[:n], eof)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !retryable(err) {
				f.warn(err)
				return
			}
			if stuck.IsZero() {
				stuck = time.Now()
			} else if time.Since(stuck) > stdinGiveUp {
				f.warn(fmt.Errorf("gave up after %s without progress: %w", stdinGiveUp, err))
				return
			}
			select {
			case <-time.After(f.retry):
			case <-ctx.Done():
				return
			}
			continue
		}
		if st.Closed || (st.EOF && eof) {
			return
		}
		if st.Offset < acked || st.Offset > acked+int64(len(pending)) {
			f.warn(fmt.Errorf("the job's stdin reports offset %d, outside the %d bytes sent from %d", st.Offset, len(pending), acked))
			return
		}
		stuck = time.Time{}
		pending = pending[st.Offset-acked:]
		acked = st.Offset
	}
}

// retryable reports whether a failed request may succeed later: the agent
// unreachable or restarting, the job being moved.
func retryable(err error) bool {
	var e *api.Error
	if !errors.As(err, &e) {
		return true // transport: the agent restarting, say
	}
	return e.Code == api.CodeNotReady || e.Code == api.CodeInternal
}

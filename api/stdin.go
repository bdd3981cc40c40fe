package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// MaxStdinChunk bounds the bytes of one Stdin call.
const MaxStdinChunk = 1 << 20

// StdinStatus answers a Stdin call: how much of the stream the job's stdin
// has accepted.
type StdinStatus struct {
	// Offset is the number of bytes the job's stdin has accepted: send the
	// rest from there.
	Offset int64 `json:"offset"`
	// EOF: the stream has ended at Offset; the job reads end of file after it.
	EOF bool `json:"eof,omitempty"`
	// Closed: the job has closed its stdin or ended; send no more.
	Closed bool `json:"closed,omitempty"`
}

// Stdin feeds data, the bytes of gpid's input stream from byte offset on, to
// the job's stdin; eof ends the stream after them. The owner of the job
// answers once the job's stdin pipe has taken the bytes or after a few
// seconds of the job not reading, with the offset reached; bytes before
// the job's offset are skipped, so resending from the last answer is always
// safe. A job being moved answers CodeNotReady: send again shortly, to the
// new owner.
func (c *Client) Stdin(ctx context.Context, gpid uint64, offset int64, data []byte, eof bool) (StdinStatus, error) {
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}}
	if eof {
		q.Set("eof", "1")
	}
	if data == nil {
		data = []byte{}
	}
	resp, err := c.sendBody(ctx, http.MethodPost, fmt.Sprintf("/v1/procs/%d/stdin?%s", gpid, q.Encode()), "application/octet-stream", data)
	if err != nil {
		return StdinStatus{}, err
	}
	defer resp.Body.Close()
	var st StdinStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return StdinStatus{}, fmt.Errorf("decode answer of stdin of gpid %d: %w", gpid, err)
	}
	return st, nil
}

// ResizeRequest is a terminal's new size.
type ResizeRequest struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Resize sets the size of the terminal of gpid (ssi run -t); the job's
// foreground process group gets SIGWINCH.
func (c *Client) Resize(ctx context.Context, gpid uint64, rows, cols uint16) error {
	return c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/procs/%d/resize", gpid), ResizeRequest{Rows: rows, Cols: cols}, nil)
}

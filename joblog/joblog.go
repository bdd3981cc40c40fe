package joblog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Kind says what a record carries.
type Kind byte

// Record kinds. Stdout and Stderr are stored in log files; Exit and Error are only
// sent to followers.
const (
	Stdout Kind = 1
	Stderr Kind = 2
	Exit   Kind = 3
	Error  Kind = 4
)

// HeaderSize is the size of a record header in bytes.
const HeaderSize = 5

// MaxPayload bounds one record's payload. Writers split larger chunks; readers
// reject larger lengths as corruption rather than allocating them.
const MaxPayload = 1 << 20

// ErrCorrupt reports a record that cannot be valid: an unknown kind or a length
// above MaxPayload.
var ErrCorrupt = errors.New("joblog: corrupt record")

// Record is one framed chunk of output.
type Record struct {
	Kind Kind
	Data []byte
}

func (k Kind) valid() bool { return k >= Stdout && k <= Error }

func (k Kind) String() string {
	switch k {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	case Exit:
		return "exit"
	case Error:
		return "error"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Append encodes r and appends it to buf.
func Append(buf []byte, r Record) []byte {
	var h [HeaderSize]byte
	h[0] = byte(r.Kind)
	binary.BigEndian.PutUint32(h[1:], uint32(len(r.Data)))
	buf = append(buf, h[:]...)
	return append(buf, r.Data...)
}

// Writer appends records to an output file. It is safe for concurrent use: the
// stdout and stderr copiers share one Writer.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer that emits each record with one Write call on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write appends data as records of kind k, splitting it at MaxPayload.
func (w *Writer) Write(k Kind, data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(data) > 0 {
		n := min(len(data), MaxPayload)
		w.buf = Append(w.buf[:0], Record{Kind: k, Data: data[:n]})
		if _, err := w.w.Write(w.buf); err != nil {
			return fmt.Errorf("joblog: write %s record: %w", k, err)
		}
		data = data[n:]
	}
	return nil
}

// StreamWriter adapts one stream of a Writer to io.Writer.
func (w *Writer) StreamWriter(k Kind) io.Writer { return streamWriter{w, k} }

type streamWriter struct {
	w *Writer
	k Kind
}

func (s streamWriter) Write(p []byte) (int, error) {
	if err := s.w.Write(s.k, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Reader decodes records from a stream, such as an HTTP response body.
type Reader struct {
	r   *bufio.Reader
	off int64
}

// NewReader returns a Reader for r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

// Offset is the number of bytes of complete records read so far.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next record. It returns io.EOF at a clean end of stream,
// io.ErrUnexpectedEOF inside a record and an error wrapping ErrCorrupt for bytes
// that cannot be a record.
func (r *Reader) Next() (Record, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r.r, h[:]); err != nil {
		return Record{}, err
	}
	k, n := Kind(h[0]), binary.BigEndian.Uint32(h[1:])
	if !k.valid() || n > MaxPayload {
		return Record{}, fmt.Errorf("%w: kind %d, length %d at offset %d", ErrCorrupt, h[0], n, r.off)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r.r, data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Record{}, err
	}
	r.off += HeaderSize + int64(n)
	return Record{Kind: k, Data: data}, nil
}

// ReadComplete reads the complete records of the file f from offset on, calling
// emit for each, and returns the offset after the last complete record. A record
// that is only partly written stops the read without error: call again later.
func ReadComplete(f *os.File, offset int64, emit func(Record) error) (int64, error) {
	var h [HeaderSize]byte
	buf := make([]byte, 0, 64<<10)
	for {
		if _, err := f.ReadAt(h[:], offset); err != nil {
			if errors.Is(err, io.EOF) {
				return offset, nil
			}
			return offset, fmt.Errorf("joblog: read header at %d: %w", offset, err)
		}
		k, n := Kind(h[0]), binary.BigEndian.Uint32(h[1:])
		if !k.valid() || n > MaxPayload {
			return offset, fmt.Errorf("%w: kind %d, length %d at offset %d of %s", ErrCorrupt, h[0], n, offset, f.Name())
		}
		buf = buf[:n]
		if _, err := f.ReadAt(buf, offset+HeaderSize); err != nil {
			if errors.Is(err, io.EOF) {
				return offset, nil // partly written; come back later
			}
			return offset, fmt.Errorf("joblog: read record at %d: %w", offset, err)
		}
		if err := emit(Record{Kind: k, Data: buf}); err != nil {
			return offset, err
		}
		offset += HeaderSize + int64(n)
	}
}

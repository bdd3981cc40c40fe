package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ssi-cluster/ssi/internal/jsonbytes"
	"github.com/ssi-cluster/ssi/pidtable"
)

// ssi ps -A reads up to 100,000 rows: decoding each with encoding/json
// (a scan of the element by json.Decoder, then reflection over ProcInfo's
// fields, each key matched without case) took a second at 100,000 rows, more
// than the agent and etcd together. So the client splits the array itself
// (rowReader) and decodes a row with decodeRow: one pass over the object for
// the shapes the agent writes (known keys, plain ASCII strings, integers
// where Go has integers), and encoding/json for anything else, so that
// whatever the fast path does not take is decoded as before, errors
// included. TestDecodeRowAsJSON holds the two to the same result.

// decodeRow decodes one row of GET /v1/procs (a JSON object) into p, as
// json.Unmarshal into a zero ProcInfo does.
func decodeRow(b []byte, p *ProcInfo) error {
	*p = ProcInfo{}
	r := &rowParser{b: b}
	if r.row(p) {
		if r.ws(); r.i == len(b) {
			return nil
		}
	}
	// A ProcInfo of its own: json.Unmarshal's argument goes to the heap,
	// and p's would with it for every row.
	var slow ProcInfo
	err := json.Unmarshal(b, &slow)
	*p = slow
	return err
}

// rowParser is decodeRow's fast path: each method reads at b[i] and reports
// false for what it does not take (then json.Unmarshal decides).
type rowParser struct {
	b []byte
	i int
}

func (r *rowParser) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// byte1 consumes c, after white space.
func (r *rowParser) byte1(c byte) bool {
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// object reads {"key": value, ...}, calling field for each key with r at
// its value; field reads the value.
func (r *rowParser) object(field func(key []byte) bool) bool {
	if !r.byte1('{') {
		return false
	}
	if r.byte1('}') {
		return true
	}
	for {
		r.ws()
		key, ok := r.str()
		if !ok || !r.byte1(':') {
			return false
		}
		r.ws()
		if !field(key) {
			return false
		}
		if r.byte1('}') {
			return true
		}
		if !r.byte1(',') {
			return false
		}
	}
}

// str reads a string of printable ASCII without escapes (what encoding/json
// reads as is); its bytes are r.b's.
func (r *rowParser) str() ([]byte, bool) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return nil, false
	}
	for j := r.i + 1; j < len(r.b); j++ {
		for j < len(r.b) && jsonbytes.Plain[r.b[j]] { // most of a row's bytes
			j++
		}
		if j == len(r.b) {
			break
		}
		switch c := r.b[j]; {
		case c == '"':
			s := r.b[r.i+1 : j]
			r.i = j + 1
			return s, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

func (r *rowParser) string(dst *string) bool {
	s, ok := r.str()
	*dst = string(s)
	return ok
}

// number reads a JSON number's bytes (RFC 8259's grammar, which strconv's
// is wider than).
func (r *rowParser) number() ([]byte, bool) {
	b, j := r.b, r.i
	if j < len(b) && b[j] == '-' {
		j++
	}
	digits := func() bool {
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j > k
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case !digits():
		return nil, false
	}
	if j < len(b) && b[j] == '.' {
		j++
		if !digits() {
			return nil, false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if !digits() {
			return nil, false
		}
	}
	n := b[r.i:j]
	r.i = j
	return n, true
}

func (r *rowParser) int64(dst *int64) bool {
	s, ok := r.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(string(s), 10, 64)
	*dst = n
	return err == nil
}

func (r *rowParser) int(dst *int) bool {
	s, ok := r.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(string(s), 10, strconv.IntSize)
	*dst = int(n)
	return err == nil
}

func (r *rowParser) uint64(dst *uint64) bool {
	s, ok := r.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseUint(string(s), 10, 64)
	*dst = n
	return err == nil
}

func (r *rowParser) float(dst *float64) bool {
	s, ok := r.number()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(string(s), 64)
	*dst = f
	return err == nil
}

func (r *rowParser) bool(dst *bool) bool {
	rest := r.b[r.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		r.i, *dst = r.i+4, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		r.i, *dst = r.i+5, false
	default:
		return false
	}
	return true
}

// time reads a time as encoding/json does: time.Time's UnmarshalJSON on
// the quoted string.
func (r *rowParser) time(dst *time.Time) bool {
	start := r.i
	if _, ok := r.str(); !ok {
		return false
	}
	return dst.UnmarshalJSON(r.b[start:r.i]) == nil
}

// strings reads an array of strings (empty: an empty slice, as
// encoding/json makes).
func (r *rowParser) strings(dst *[]string) bool {
	if !r.byte1('[') {
		return false
	}
	out := make([]string, 0, 4)
	if !r.byte1(']') {
		for {
			r.ws()
			var s string
			if !r.string(&s) {
				return false
			}
			out = append(out, s)
			if r.byte1(']') {
				break
			}
			if !r.byte1(',') {
				return false
			}
		}
	}
	*dst = out
	return true
}

// row reads a row: one object of ProcInfo's keys. A key it does not know (pidtable.Proc's migration and
// constraints; a newer agent's field; a key in another case) or a null
// sends the row to encoding/json.
func (r *rowParser) row(p *ProcInfo) bool {
	return r.object(func(key []byte) bool {
		switch string(key) {
		case "gpid":
			return r.uint64(&p.GPID)
		case "node":
			return r.string(&p.Node)
		case "epoch":
			return r.uint64(&p.Epoch)
		case "state":
			var s string
			ok := r.string(&s)
			p.State = pidtable.State(s)
			return ok
		case "pid":
			return r.int(&p.PID)
		case "init_pid":
			return r.int(&p.InitPID)
		case "user":
			return r.string(&p.User)
		case "uid":
			return r.int(&p.UID)
		case "gid":
			return r.int(&p.GID)
		case "argv":
			return r.strings(&p.Argv)
		case "workdir":
			return r.string(&p.Workdir)
		case "cpus":
			return r.float(&p.CPUs)
		case "memory":
			return r.int64(&p.Memory)
		case "created":
			return r.time(&p.Created)
		case "started":
			return r.time(&p.Started)
		case "ended":
			return r.time(&p.Ended)
		case "exit_code":
			if p.ExitCode == nil { // encoding/json sets a pointer's target
				p.ExitCode = new(int)
			}
			return r.int(p.ExitCode)
		case "error":
			return r.string(&p.Error)
		case "migration_error":
			return r.string(&p.MigrationError)
		case "migration_failed":
			return r.time(&p.MigrationFailed)
		case "checkpoint":
			return r.string(&p.Checkpoint)
		case "restored_from":
			return r.string(&p.RestoredFrom)
		case "checkpoint_every":
			return r.int64((*int64)(&p.CheckpointEvery))
		case "failed_over":
			return r.int(&p.FailedOver)
		case "failed_over_from":
			return r.string(&p.FailedOverFrom)
		case "pinned":
			return r.bool(&p.Pinned)
		case "reconnects":
			return r.bool(&p.Reconnects)
		case "tty":
			return r.bool(&p.TTY)
		case "service":
			return r.string(&p.Service)
		case "service_hash":
			return r.string(&p.ServiceHash)
		case "arrived":
			return r.time(&p.Arrived)
		case "archived":
			return r.time(&p.Archived)
		case "node_ready":
			return r.bool(&p.NodeReady)
		case "stats":
			if p.Stats == nil {
				p.Stats = new(pidtable.ProcStats)
			}
			return r.stats(p.Stats)
		}
		return false
	})
}

func (r *rowParser) stats(s *pidtable.ProcStats) bool {
	return r.object(func(key []byte) bool {
		switch string(key) {
		case "cpu":
			return r.float(&s.CPU)
		case "rss":
			return r.int64(&s.RSS)
		case "stat":
			return r.string(&s.Stat)
		case "procs":
			return r.int(&s.Procs)
		case "demand":
			return r.float(&s.Demand)
		}
		return false
	})
}

// fastKeys are the keys rowParser.row decodes itself (TestDecodeRowKeys
// checks them against ProcInfo's fields).
var fastKeys = []string{"gpid", "node", "epoch", "state", "pid", "init_pid", "user", "uid", "gid", "argv",
	"workdir", "cpus", "memory", "created", "started", "ended", "exit_code", "error", "migration_error",
	"migration_failed", "checkpoint", "restored_from", "checkpoint_every", "failed_over", "failed_over_from",
	"pinned", "reconnects", "tty", "service", "service_hash", "arrived", "archived", "node_ready", "stats"}

// rowReader splits a JSON array read from r into its elements, without
// decoding them: what json.Decoder's Token and More do, in one pass of a
// byte loop. Its memory is one element and a read's worth.
type rowReader struct {
	r     io.Reader
	buf   []byte
	i     int   // the first byte not consumed
	err   error // the reader's, once it returned one
	state int   // 0: before '[', 1: after '[', 2: after an element, 3: after ']'
}

// errNotArray is the answer of a body that is not a JSON array.
var errNotArray = errors.New("want a JSON array")

// fill reads more into buf; false once the reader has nothing more.
func (a *rowReader) fill() bool {
	if a.err != nil {
		return false
	}
	if a.i > 0 && a.i >= len(a.buf)/2 {
		n := copy(a.buf, a.buf[a.i:])
		a.buf, a.i = a.buf[:n], 0
	}
	if cap(a.buf)-len(a.buf) < 32<<10 {
		a.buf = append(a.buf, make([]byte, 64<<10)...)[:len(a.buf)]
	}
	n, err := a.r.Read(a.buf[len(a.buf):cap(a.buf)])
	a.buf = a.buf[:len(a.buf)+n]
	if err != nil {
		a.err = err
	}
	return n > 0 || err == nil
}

// skipWS skips white space and returns the next byte (0: none left).
func (a *rowReader) skipWS() (byte, error) {
	for {
		for a.i < len(a.buf) {
			switch c := a.buf[a.i]; c {
			case ' ', '\t', '\n', '\r':
				a.i++
			default:
				return c, nil
			}
		}
		if !a.fill() {
			if a.err == io.EOF {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, a.err
		}
	}
}

// next decodes the next row of the array into p; false after the last one.
// A row the fast path takes is read straight from the buffer; another one
// (or one the buffer holds only part of) is delimited by valueEnd first.
func (a *rowReader) next(p *ProcInfo) (bool, error) {
	c, err := a.skipWS()
	if err != nil {
		return false, err
	}
	switch {
	case a.state == 0 && c != '[':
		return false, fmt.Errorf("%w, got %q", errNotArray, c)
	case a.state == 0:
		a.i++
		a.state = 1
		if c, err = a.skipWS(); err != nil {
			return false, err
		}
		if c == ']' {
			a.i++
			a.state = 3
			return false, nil
		}
	case a.state == 2 && c == ']':
		a.i++
		a.state = 3
		return false, nil
	case a.state == 2 && c == ',':
		a.i++
		if _, err = a.skipWS(); err != nil {
			return false, err
		}
	case a.state == 2:
		return false, fmt.Errorf("after a row: want , or ], got %q", c)
	case a.state == 3:
		return false, nil
	}
	a.state = 2
	*p = ProcInfo{}
	// A fast read that succeeds has read a whole object: it ends in the
	// brace that closes it, which a part of the row cannot.
	r := &rowParser{b: a.buf[a.i:]}
	if r.row(p) {
		a.i += r.i
		return true, nil
	}
	end, err := a.valueEnd()
	if err != nil {
		return false, err
	}
	err = decodeRow(a.buf[a.i:end], p)
	a.i = end
	return err == nil, err
}

// valueEnd returns the index in buf after the object that starts at a.i,
// reading more as need be: where its braces close, outside strings. The
// object is checked by its decoder, not here. A row that is not an object
// is an error, as decoding it into a ProcInfo was.
func (a *rowReader) valueEnd() (int, error) {
	if c := a.buf[a.i]; c != '{' {
		return 0, fmt.Errorf("row: want a JSON object, got %q", c)
	}
	depth, inStr, esc := 0, false, false
	for j := a.i; ; j++ {
		for j >= len(a.buf) {
			off := j - a.i
			if !a.fill() {
				if a.err == io.EOF {
					return 0, io.ErrUnexpectedEOF
				}
				return 0, a.err
			}
			j = a.i + off // fill may have moved the bytes
		}
		switch c := a.buf[j]; {
		case esc:
			esc = false
		case inStr:
			esc, inStr = c == '\\', c != '"'
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth--; depth == 0 {
				return j + 1, nil
			}
		}
	}
}

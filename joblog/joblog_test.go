package joblog

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriterReaderRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	big := bytes.Repeat([]byte("x"), MaxPayload+10)
	for _, c := range []struct {
		k Kind
		d []byte
	}{{Stdout, []byte("hello\n")}, {Stderr, []byte("oops\n")}, {Stdout, big}} {
		if err := w.Write(c.k, c.d); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&buf)
	var got []Record
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec)
	}
	if len(got) != 4 { // big payload split in two
		t.Fatalf("got %d records, want 4", len(got))
	}
	if got[0].Kind != Stdout || string(got[0].Data) != "hello\n" || got[1].Kind != Stderr {
		t.Fatalf("unexpected records: %v %v", got[0], got[1])
	}
	if len(got[2].Data) != MaxPayload || len(got[3].Data) != 10 {
		t.Fatalf("split sizes %d,%d", len(got[2].Data), len(got[3].Data))
	}
	if want := int64(4*HeaderSize + len(big) + 11); r.Offset() != want {
		t.Fatalf("offset %d, want %d", r.Offset(), want)
	}
}

func TestReadCompleteStopsAtPartialRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	full := Append(Append(nil, Record{Stdout, []byte("one\n")}), Record{Stderr, []byte("two\n")})
	partial := Append(nil, Record{Stdout, []byte("three\n")})
	if err := os.WriteFile(path, append(full, partial[:7]...), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	off, err := ReadComplete(f, 0, func(r Record) error { out = append(out, r.Kind.String()+":"+string(r.Data)); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if off != int64(len(full)) || len(out) != 2 || out[1] != "stderr:two\n" {
		t.Fatalf("off=%d out=%q", off, out)
	}
	// Resuming at the returned offset after the writer finishes yields exactly the rest.
	if err := os.WriteFile(path, append(full, partial...), 0o600); err != nil {
		t.Fatal(err)
	}
	out = nil
	off2, err := ReadComplete(f, off, func(r Record) error { out = append(out, string(r.Data)); return nil })
	if err != nil || off2 != int64(len(full)+len(partial)) || len(out) != 1 || out[0] != "three\n" {
		t.Fatalf("resume: off=%d out=%q err=%v", off2, out, err)
	}
}

func TestCorruptRecordRejected(t *testing.T) {
	bad := []byte{9, 0, 0, 0, 1, 'x'}
	if _, err := NewReader(bytes.NewReader(bad)).Next(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown kind: err=%v, want ErrCorrupt", err)
	}
	huge := []byte{1, 0xff, 0xff, 0xff, 0xff}
	if _, err := NewReader(bytes.NewReader(huge)).Next(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("huge length: err=%v, want ErrCorrupt", err)
	}
}

// FuzzReader: the decoder of agent responses must never panic or over-allocate.
func FuzzReader(f *testing.F) {
	f.Add(Append(nil, Record{Stdout, []byte("hi")}))
	f.Add([]byte{3, 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{1, 0, 16, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b))
		for i := 0; i < 1000; i++ {
			rec, err := r.Next()
			if err != nil {
				return
			}
			if len(rec.Data) > MaxPayload || !rec.Kind.valid() {
				t.Fatalf("invalid record decoded: kind %d len %d", rec.Kind, len(rec.Data))
			}
		}
	})
}

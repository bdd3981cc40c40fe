package migrate

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStreamRoundTrip(t *testing.T) {
	src, logDir := t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"pages-1.img": "PAGES", "core-1.img": "CORE"})
	writeFiles(t, logDir, map[string]string{"log": "framed output"})
	var buf bytes.Buffer
	n, err := WriteStream(&buf, Source{Prefix: "images", Dir: src}, Source{Prefix: "job", Dir: logDir})
	if err != nil || n != int64(len("PAGES")+len("CORE")+len("framed output")) {
		t.Fatalf("write: %d, %v", n, err)
	}
	dst, dstJob := t.TempDir(), t.TempDir()
	if _, err := ReadStream(bytes.NewReader(buf.Bytes()), map[string]string{"images": dst, "job": dstJob}, 1<<20); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "pages-1.img")); string(b) != "PAGES" {
		t.Fatalf("pages: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dstJob, "log")); string(b) != "framed output" {
		t.Fatalf("log: %q", b)
	}
}

func TestStreamCorruptionIsCaught(t *testing.T) {
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"pages-1.img": "PAGESPAGESPAGES"})
	var buf bytes.Buffer
	if _, err := WriteStream(&buf, Source{Prefix: "images", Dir: src}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	i := bytes.Index(b, []byte("PAGESPAGES"))
	b[i+3] ^= 0xff // flip a byte of file data, as a bad network or disk would
	_, err := ReadStream(bytes.NewReader(b), map[string]string{"images": t.TempDir()}, 1<<20)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("err %v, want ErrChecksum", err)
	}
	// A stream cut short (no sums) is refused too.
	_, err = ReadStream(bytes.NewReader(buf.Bytes()[:i+5]), map[string]string{"images": t.TempDir()}, 1<<20)
	if err == nil {
		t.Fatal("truncated stream accepted")
	}
}

func hostile(t *testing.T, hdr *tar.Header, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr.Size = int64(len(body))
	if hdr.Typeflag == tar.TypeSymlink || hdr.Typeflag == tar.TypeChar {
		hdr.Size = 0
		body = ""
	}
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte(body))
	tw.Close()
	return buf.Bytes()
}

func TestStreamRefusesHostileEntries(t *testing.T) {
	cases := map[string]*tar.Header{
		"traversal":    {Name: "images/../../etc/passwd", Typeflag: tar.TypeReg},
		"nested":       {Name: "images/a/b", Typeflag: tar.TypeReg},
		"unknown dir":  {Name: "etc/passwd", Typeflag: tar.TypeReg},
		"symlink":      {Name: "images/x", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"},
		"device":       {Name: "images/null", Typeflag: tar.TypeChar},
		"absolute-ish": {Name: "/images/x", Typeflag: tar.TypeReg},
		"dot":          {Name: "images/..", Typeflag: tar.TypeReg},
		"backslash":    {Name: "images/..\\x", Typeflag: tar.TypeReg},
	}
	for name, hdr := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := ReadStream(bytes.NewReader(hostile(t, hdr, "data")), map[string]string{"images": dir}, 1<<20)
			if !errors.Is(err, ErrBadEntry) {
				t.Fatalf("err %v, want ErrBadEntry", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("hostile entry wrote %v", entries)
			}
		})
	}
	big := hostile(t, &tar.Header{Name: "images/big", Typeflag: tar.TypeReg}, string(make([]byte, 4096)))
	if _, err := ReadStream(bytes.NewReader(big), map[string]string{"images": t.TempDir()}, 1024); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
}

// FuzzReadStream: the receiver of images from another agent must never panic,
// write outside its directories, or accept unverified data.
func FuzzReadStream(f *testing.F) {
	src := f.TempDir()
	_ = os.WriteFile(filepath.Join(src, "core-1.img"), []byte("CORE"), 0o600)
	var buf bytes.Buffer
	_, _ = WriteStream(&buf, Source{Prefix: "images", Dir: src})
	f.Add(buf.Bytes())
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, b []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "images")
		_ = os.Mkdir(dir, 0o700)
		_, _ = ReadStream(bytes.NewReader(b), map[string]string{"images": dir}, 1<<16)
		entries, _ := os.ReadDir(root)
		if len(entries) != 1 {
			t.Fatalf("stream wrote outside its directory: %v", entries)
		}
	})
}

// TestStreamParts: a file streamed in two parts, [0, N) and [N, end), as a
// running job's log is (shipLogPrefix, then Transfer), reassembles to the
// whole file; a part starting past the file's end is refused.
func TestStreamParts(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 5000)
	if err := os.WriteFile(filepath.Join(src, "log"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	const n = 30001
	var buf bytes.Buffer
	if _, err := WriteStream(&buf, Source{Prefix: "job", Dir: src, Files: []string{"log"}, Part: &Part{To: n, Suffix: ".pre"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStream(&buf, map[string]string{"job": dst}, 1<<20); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if _, err := WriteStream(&buf, Source{Prefix: "job", Dir: src, Files: []string{"log"}, Part: &Part{From: n, Suffix: ".tail"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStream(&buf, map[string]string{"job": dst}, 1<<20); err != nil {
		t.Fatal(err)
	}
	pre, _ := os.ReadFile(filepath.Join(dst, "log.pre"))
	tail, _ := os.ReadFile(filepath.Join(dst, "log.tail"))
	if !bytes.Equal(append(pre, tail...), data) || len(pre) != n {
		t.Fatalf("parts of %d and %d bytes do not make the %d-byte file", len(pre), len(tail), len(data))
	}
	if _, err := WriteStream(io.Discard, Source{Prefix: "job", Dir: src, Files: []string{"log"}, Part: &Part{From: int64(len(data)) + 1}}); err == nil {
		t.Fatal("a part past the end of the file was streamed")
	}
}

package migrate

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// Stream errors.
var (
	ErrChecksum = errors.New("migrate: image stream checksum mismatch")
	ErrBadEntry = errors.New("migrate: bad entry in image stream")
	ErrTooLarge = errors.New("migrate: image stream too large")
)

const sumsName = "SHA256SUMS"

// Source is a set of files to stream: each file of Dir (flat, regular files
// only; only those named in Files when it is set) under the entry name
// Prefix+"/"+name.
type Source struct {
	Prefix string
	Dir    string
	Files  []string
	// Part, when set, streams a byte range of each file instead of all of it.
	Part *Part
}

// Part is a byte range of a file, [From, To) (To 0: up to the size the file
// has when it is streamed), sent under the file's name plus Suffix: a file
// still growing (a running job's log) is streamed in parts.
type Part struct {
	From, To int64
	Suffix   string
}

// WriteStream writes the files of srcs to w as a tar stream ending with a
// SHA256SUMS entry, and returns the bytes of file data written.
func WriteStream(w io.Writer, srcs ...Source) (int64, error) {
	tw := tar.NewWriter(w)
	var sums strings.Builder
	var total int64
	for _, src := range srcs {
		entries, err := os.ReadDir(src.Dir)
		if err != nil {
			return total, fmt.Errorf("migrate: list %s: %w", src.Dir, err)
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || (src.Files != nil && !slices.Contains(src.Files, e.Name())) {
				continue
			}
			name := src.Prefix + "/" + e.Name()
			part := Part{}
			if src.Part != nil {
				part = *src.Part
				name += part.Suffix
			}
			n, sum, err := writeFile(tw, filepath.Join(src.Dir, e.Name()), name, part)
			if err != nil {
				return total, err
			}
			total += n
			fmt.Fprintf(&sums, "%s  %s\n", sum, name)
		}
	}
	b := []byte(sums.String())
	if err := tw.WriteHeader(&tar.Header{Name: sumsName, Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		return total, fmt.Errorf("migrate: write sums: %w", err)
	}
	if _, err := tw.Write(b); err != nil {
		return total, fmt.Errorf("migrate: write sums: %w", err)
	}
	if err := tw.Close(); err != nil {
		return total, fmt.Errorf("migrate: close stream: %w", err)
	}
	return total, nil
}

func writeFile(tw *tar.Writer, path, name string, part Part) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", fmt.Errorf("migrate: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, "", fmt.Errorf("migrate: stat %s: %w", path, err)
	}
	end := fi.Size()
	if part.To > 0 {
		end = min(part.To, end)
	}
	size := end - part.From
	if size < 0 {
		return 0, "", fmt.Errorf("migrate: %s has %d bytes, fewer than the %d already sent", path, fi.Size(), part.From)
	}
	if _, err := f.Seek(part.From, io.SeekStart); err != nil {
		return 0, "", fmt.Errorf("migrate: seek %s: %w", path, err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, Typeflag: tar.TypeReg}); err != nil {
		return 0, "", fmt.Errorf("migrate: write header of %s: %w", name, err)
	}
	h := sha256.New()
	// Exactly size bytes, though the file may grow meanwhile.
	n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(f, size))
	if err != nil {
		return n, "", fmt.Errorf("migrate: send %s: %w", name, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// ReadStream reads a stream written by WriteStream, placing entry Prefix/name
// into dirs[Prefix]/name. It accepts only regular files with flat names under a
// known prefix, at most limit bytes in all, and checks every file's SHA-256
// against the stream's SHA256SUMS. On any error the caller must discard what was
// written (the files may be incomplete or unverified).
func ReadStream(r io.Reader, dirs map[string]string, limit int64) (int64, error) {
	tr := tar.NewReader(r)
	got := map[string]string{}
	var total int64
	var sums []byte
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return total, fmt.Errorf("%w: %w", ErrBadEntry, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return total, fmt.Errorf("%w: %q is not a regular file (type %q)", ErrBadEntry, hdr.Name, hdr.Typeflag)
		}
		if hdr.Size < 0 || total+hdr.Size > limit {
			return total, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
		}
		if hdr.Name == sumsName {
			if sums, err = io.ReadAll(io.LimitReader(tr, 1<<20)); err != nil {
				return total, fmt.Errorf("%w: read sums: %w", ErrBadEntry, err)
			}
			continue
		}
		prefix, name, ok := strings.Cut(hdr.Name, "/")
		dir, known := dirs[prefix]
		if !ok || !known || name == "" || name != filepath.Base(name) || name == "." || name == ".." || strings.ContainsAny(name, "\\\x00") {
			return total, fmt.Errorf("%w: unexpected name %q", ErrBadEntry, hdr.Name)
		}
		if _, dup := got[hdr.Name]; dup {
			return total, fmt.Errorf("%w: %q appears twice", ErrBadEntry, hdr.Name)
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return total, fmt.Errorf("migrate: create %s: %w", name, err)
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(tr, hdr.Size))
		cerr := f.Close()
		total += n
		if err == nil && n != hdr.Size {
			err = io.ErrUnexpectedEOF
		}
		if err = errors.Join(err, cerr); err != nil {
			return total, fmt.Errorf("migrate: receive %s: %w", hdr.Name, err)
		}
		got[hdr.Name] = hex.EncodeToString(h.Sum(nil))
	}
	if sums == nil {
		return total, fmt.Errorf("%w: stream ended without %s (cut short?)", ErrChecksum, sumsName)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		if line == "" {
			continue
		}
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			return total, fmt.Errorf("%w: malformed sums line %q", ErrChecksum, line)
		}
		want[name] = sum
	}
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(want) != len(got) {
		return total, fmt.Errorf("%w: %d files received, %d listed", ErrChecksum, len(got), len(want))
	}
	for _, n := range names {
		if want[n] != got[n] {
			return total, fmt.Errorf("%w: %s", ErrChecksum, n)
		}
	}
	return total, nil
}

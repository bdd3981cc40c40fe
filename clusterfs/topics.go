package clusterfs

import (
	"bytes"
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// topics/ is the cluster's message broker as files (Plan 9's idea, for
// messages): topics/NAME is the caller's subject NAME (package msg: u.<user>.NAME).
// A write publishes each line as a message (echo x > topics/orders); a
// reader gets the messages published from its open on, one per line, and the
// file grows as they come (tail -f topics/orders). ls lists the caller's
// durable topics (ssi topics) and the subjects open here.

// Messages is what topics/ needs of the broker (cmd/ssi: the user's NATS
// connection).
type Messages interface {
	// Topics lists the caller's durable topics.
	Topics(ctx context.Context) ([]string, error)
	// Publish sends data on the caller's subject name.
	Publish(name string, data []byte) error
	// Subscribe delivers the messages of the caller's subject name until
	// stop is called.
	Subscribe(name string, deliver func(data []byte)) (stop func(), err error)
}

// maxTopicBuffer bounds what a subject file keeps of the messages read: the
// oldest go (reads below them get what is left).
const maxTopicBuffer = 4 << 20

type topicsDir struct {
	fs.Inode
	fs *FS

	mu    sync.Mutex
	files map[string]*topicFile
}

var (
	_ = (fs.NodeReaddirer)((*topicsDir)(nil))
	_ = (fs.NodeLookuper)((*topicsDir)(nil))
	_ = (fs.NodeCreater)((*topicsDir)(nil))
	_ = (fs.NodeGetattrer)((*topicsDir)(nil))
)

func (d *topicsDir) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o755
	return 0
}

func (d *topicsDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	names, err := d.fs.msgs.Topics(ctx)
	if err != nil {
		return nil, d.fs.errno(err, "topics")
	}
	seen := map[string]bool{}
	var out []fuse.DirEntry
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, fuse.DirEntry{Name: n, Mode: syscall.S_IFREG, Ino: inoOf("topics", n)})
		}
	}
	for _, n := range names {
		add(n)
	}
	d.mu.Lock()
	for n := range d.files {
		add(n)
	}
	d.mu.Unlock()
	return fs.NewListDirStream(out), 0
}

// file returns the subject file name, made on first use.
func (d *topicsDir) file(name string) *topicFile {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f := d.files[name]; f != nil {
		return f
	}
	f := &topicFile{fs: d.fs, name: name}
	d.files[name] = f
	return f
}

func (d *topicsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !validSubject(name) {
		return nil, syscall.ENOENT
	}
	f := d.file(name)
	f.attr(&out.Attr)
	return d.NewInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG, Ino: inoOf("topics", name)}), 0
}

func (d *topicsDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !validSubject(name) {
		return nil, nil, 0, syscall.EINVAL
	}
	f := d.file(name)
	f.attr(&out.Attr)
	in := d.NewInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG, Ino: inoOf("topics", name)})
	h, fl, errno := f.Open(ctx, flags)
	return in, h, fl, errno
}

// validSubject: a file name that is one subject token or several (dots),
// without wildcards.
func validSubject(name string) bool {
	if name == "" || name[0] == '.' || name[len(name)-1] == '.' {
		return false
	}
	for _, r := range name {
		if r == '*' || r == '>' || r == ' ' || r < 0x21 || r == 0x7f {
			return false
		}
	}
	return true
}

// topicFile is one subject: what its readers received, and where writes go.
type topicFile struct {
	fs.Inode
	fs   *FS
	name string

	mu      sync.Mutex
	buf     []byte // the messages received, newline-terminated
	base    int64  // offset of buf[0]: what was dropped before it
	readers int
	stop    func()
}

var (
	_ = (fs.NodeGetattrer)((*topicFile)(nil))
	_ = (fs.NodeSetattrer)((*topicFile)(nil))
	_ = (fs.NodeOpener)((*topicFile)(nil))
	_ = (fs.NodeReader)((*topicFile)(nil))
	_ = (fs.NodeWriter)((*topicFile)(nil))
	_ = (fs.NodeReleaser)((*topicFile)(nil))
)

// topicHandle says whether an open reads (and so holds the subscription).
type topicHandle struct{ reads bool }

func (f *topicFile) attr(a *fuse.Attr) {
	f.mu.Lock()
	size := f.base + int64(len(f.buf))
	f.mu.Unlock()
	a.Mode = syscall.S_IFREG | 0o644
	a.Size = uint64(size)
	now := time.Now()
	a.SetTimes(nil, &now, &now)
}

func (f *topicFile) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.attr(&out.Attr)
	return 0
}

// Setattr accepts the truncation of `echo x > file` and changes nothing: a
// subject keeps no content to truncate.
func (f *topicFile) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f.attr(&out.Attr)
	return 0
}

func (f *topicFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h := &topicHandle{reads: flags&syscall.O_ACCMODE != syscall.O_WRONLY}
	if h.reads {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.readers == 0 {
			stop, err := f.fs.msgs.Subscribe(f.name, f.deliver)
			if err != nil {
				return nil, 0, f.fs.errno(err, "topics/"+f.name)
			}
			f.stop = stop
		}
		f.readers++
	}
	return h, fuse.FOPEN_DIRECT_IO, 0
}

// deliver appends a message for the readers.
func (f *topicFile) deliver(data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buf = append(f.buf, data...)
	if len(data) == 0 || data[len(data)-1] != '\n' {
		f.buf = append(f.buf, '\n')
	}
	if over := len(f.buf) - maxTopicBuffer; over > 0 {
		f.buf = append([]byte(nil), f.buf[over:]...)
		f.base += int64(over)
	}
}

func (f *topicFile) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := max(off-f.base, 0)
	if i >= int64(len(f.buf)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(append([]byte(nil), f.buf[i:min(i+int64(len(dest)), int64(len(f.buf)))]...)), 0
}

// Write publishes each line of data as a message (a last line without its
// newline too).
func (f *topicFile) Write(ctx context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		if len(line) == 0 {
			continue
		}
		if err := f.fs.msgs.Publish(f.name, line); err != nil {
			f.fs.log.Warn("clusterfs: publish", "subject", f.name, "err", err)
			return 0, syscall.EIO
		}
	}
	return uint32(len(data)), 0
}

func (f *topicFile) Release(ctx context.Context, h fs.FileHandle) syscall.Errno {
	th, ok := h.(*topicHandle)
	if !ok || !th.reads {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readers--; f.readers == 0 && f.stop != nil {
		f.stop()
		f.stop = nil
	}
	return 0
}

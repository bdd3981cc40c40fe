package clusterfs

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ssi-cluster/ssi/api"
)

// Config configures a tree.
type Config struct {
	Source Source
	// Messages, if set, is the broker behind topics/ (topics.go).
	Messages Messages
	// TTL is how long the tables and a job's output are reused (default 1 s).
	TTL time.Duration
	Log *slog.Logger
}

// FS is the tree's state: the caches behind every file.
type FS struct {
	tables tables
	logs   logs
	msgs   Messages
	log    *slog.Logger
}

// New returns the tree's state; Root is its root directory.
func New(c Config) *FS {
	ttl := c.TTL
	if ttl <= 0 {
		ttl = time.Second
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FS{
		tables: tables{src: c.Source, ttl: ttl, now: time.Now},
		logs:   logs{src: c.Source, ttl: ttl, now: time.Now, jobs: map[uint64]*output{}},
		msgs:   c.Messages,
		log:    log,
	}
}

// Mount serves the tree at dir (read-only but for topics/); the caller
// unmounts with the server's Unmount and waits with its Wait. As root it
// mounts with mount(2), otherwise through fusermount3/fusermount (package
// fuse3).
func (f *FS) Mount(dir string, asRoot bool) (*fuse.Server, error) {
	sec := f.tables.ttl / 2
	opts := &fs.Options{
		EntryTimeout:    &sec,
		AttrTimeout:     &sec,
		NegativeTimeout: new(time.Duration),
		MountOptions: fuse.MountOptions{
			FsName:      "ssi",
			Name:        "ssi",
			DirectMount: asRoot,
		},
	}
	srv, err := fs.Mount(dir, f.Root(), opts)
	if err != nil {
		return nil, fmt.Errorf("clusterfs: mount %s: %w", dir, err)
	}
	return srv, nil
}

// Root returns the root directory (proc/, nodes/ and, with Messages, topics/).
func (f *FS) Root() fs.InodeEmbedder { return &rootDir{fs: f} }

// Inode numbers: stable per path, so that tools that compare them (find,
// tail -F) see the same file on every lookup.
const (
	inoProc   = 2
	inoNodes  = 3
	inoTopics = 4
)

func inoOf(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64() | 1<<63 // clear of the small fixed numbers
}

// errno turns an API error into what a file operation returns.
func (f *FS) errno(err error, what string) syscall.Errno {
	if errors.Is(err, context.Canceled) {
		return syscall.EINTR
	}
	if api.IsCode(err, api.CodeNotFound) {
		return syscall.ENOENT
	}
	f.log.Warn("clusterfs: read failed", "what", what, "err", err)
	return syscall.EIO
}

type rootDir struct {
	fs.Inode
	fs *FS
}

var _ = (fs.NodeOnAdder)((*rootDir)(nil))

func (r *rootDir) OnAdd(ctx context.Context) {
	r.AddChild("proc", r.NewPersistentInode(ctx, &procDir{fs: r.fs}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoProc}), false)
	r.AddChild("nodes", r.NewPersistentInode(ctx, &nodesDir{fs: r.fs}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoNodes}), false)
	if r.fs.msgs != nil {
		r.AddChild("topics", r.NewPersistentInode(ctx, &topicsDir{fs: r.fs, files: map[string]*topicFile{}}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoTopics}), false)
	}
}

// procDir is proc/: a directory per job the caller may see.
type procDir struct {
	fs.Inode
	fs *FS
}

var (
	_ = (fs.NodeReaddirer)((*procDir)(nil))
	_ = (fs.NodeLookuper)((*procDir)(nil))
)

func (d *procDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	_, gpids, _, err := d.fs.tables.get(ctx)
	if err != nil {
		return nil, d.fs.errno(err, "proc/")
	}
	entries := make([]fuse.DirEntry, 0, len(gpids))
	for _, g := range gpids {
		name := strconv.FormatUint(g, 10)
		entries = append(entries, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: inoOf("proc", name)})
	}
	return fs.NewListDirStream(entries), 0
}

func (d *procDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	g, err := strconv.ParseUint(name, 10, 64)
	if err != nil || strconv.FormatUint(g, 10) != name {
		return nil, syscall.ENOENT
	}
	procs, _, _, err := d.fs.tables.get(ctx)
	if err != nil {
		return nil, d.fs.errno(err, "proc/"+name)
	}
	p, ok := procs[g]
	if !ok {
		return nil, syscall.ENOENT
	}
	dirAttr(&out.Attr, uint32(p.UID), uint32(p.GID))
	return d.NewInode(ctx, &gpidDir{fs: d.fs, gpid: g}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoOf("proc", name)}), 0
}

// gpidDir is proc/<gpid>/.
type gpidDir struct {
	fs.Inode
	fs   *FS
	gpid uint64
}

var procFiles = []string{"status", "node", "cmdline", "stdout", "stderr"}

var (
	_ = (fs.NodeReaddirer)((*gpidDir)(nil))
	_ = (fs.NodeLookuper)((*gpidDir)(nil))
	_ = (fs.NodeGetattrer)((*gpidDir)(nil))
)

func (d *gpidDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	g := strconv.FormatUint(d.gpid, 10)
	entries := make([]fuse.DirEntry, 0, len(procFiles))
	for _, n := range procFiles {
		entries = append(entries, fuse.DirEntry{Name: n, Mode: syscall.S_IFREG, Ino: inoOf("proc", g, n)})
	}
	return fs.NewListDirStream(entries), 0
}

func (d *gpidDir) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	procs, _, _, err := d.fs.tables.get(ctx)
	if err != nil {
		return d.fs.errno(err, "proc/"+strconv.FormatUint(d.gpid, 10))
	}
	p, ok := procs[d.gpid]
	if !ok {
		return syscall.ENOENT
	}
	dirAttr(&out.Attr, uint32(p.UID), uint32(p.GID))
	return 0
}

func (d *gpidDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	g := strconv.FormatUint(d.gpid, 10)
	var read func(ctx context.Context) ([]byte, error)
	switch name {
	case "status", "node", "cmdline":
		read = func(ctx context.Context) ([]byte, error) {
			procs, _, _, err := d.fs.tables.get(ctx)
			if err != nil {
				return nil, err
			}
			p, ok := procs[d.gpid]
			if !ok {
				return nil, api.Errorf(api.CodeNotFound, "gpid %d is gone", d.gpid)
			}
			switch name {
			case "status":
				return procStatus(p), nil
			case "node":
				return []byte(p.Node + "\n"), nil
			}
			return cmdline(p), nil
		}
	case "stdout", "stderr":
		read = func(ctx context.Context) ([]byte, error) { return d.fs.logs.get(ctx, d.gpid, name == "stderr") }
	default:
		return nil, syscall.ENOENT
	}
	f := &file{fs: d.fs, path: "proc/" + g + "/" + name, read: read}
	if errno := f.attr(ctx, &out.Attr); errno != 0 {
		return nil, errno
	}
	return d.NewInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG, Ino: inoOf("proc", g, name)}), 0
}

// nodesDir is nodes/: a directory per node.
type nodesDir struct {
	fs.Inode
	fs *FS
}

var (
	_ = (fs.NodeReaddirer)((*nodesDir)(nil))
	_ = (fs.NodeLookuper)((*nodesDir)(nil))
)

func (d *nodesDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	_, _, nodes, err := d.fs.tables.get(ctx)
	if err != nil {
		return nil, d.fs.errno(err, "nodes/")
	}
	entries := make([]fuse.DirEntry, 0, len(nodes))
	for _, n := range nodes {
		entries = append(entries, fuse.DirEntry{Name: n.Name, Mode: syscall.S_IFDIR, Ino: inoOf("nodes", n.Name)})
	}
	return fs.NewListDirStream(entries), 0
}

func (d *nodesDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	_, _, nodes, err := d.fs.tables.get(ctx)
	if err != nil {
		return nil, d.fs.errno(err, "nodes/"+name)
	}
	for _, n := range nodes {
		if n.Name == name {
			dirAttr(&out.Attr, 0, 0)
			return d.NewInode(ctx, &nodeDir{fs: d.fs, name: name}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoOf("nodes", name)}), 0
		}
	}
	return nil, syscall.ENOENT
}

// nodeDir is nodes/<name>/.
type nodeDir struct {
	fs.Inode
	fs   *FS
	name string
}

var (
	_ = (fs.NodeReaddirer)((*nodeDir)(nil))
	_ = (fs.NodeLookuper)((*nodeDir)(nil))
)

func (d *nodeDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	return fs.NewListDirStream([]fuse.DirEntry{
		{Name: "status", Mode: syscall.S_IFREG, Ino: inoOf("nodes", d.name, "status")},
		{Name: "jobs", Mode: syscall.S_IFREG, Ino: inoOf("nodes", d.name, "jobs")},
	}), 0
}

func (d *nodeDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if name != "status" && name != "jobs" {
		return nil, syscall.ENOENT
	}
	read := func(ctx context.Context) ([]byte, error) {
		procs, gpids, nodes, err := d.fs.tables.get(ctx)
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			if n.Name == d.name {
				if name == "jobs" {
					return nodeJobs(d.name, gpids, procs), nil
				}
				return nodeStatus(n), nil
			}
		}
		return nil, api.Errorf(api.CodeNotFound, "node %s is gone", d.name)
	}
	f := &file{fs: d.fs, path: "nodes/" + d.name + "/" + name, read: read}
	if errno := f.attr(ctx, &out.Attr); errno != 0 {
		return nil, errno
	}
	return d.NewInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG, Ino: inoOf("nodes", d.name, name)}), 0
}

func dirAttr(a *fuse.Attr, uid, gid uint32) {
	a.Mode = syscall.S_IFDIR | 0o555
	a.Owner = fuse.Owner{Uid: uid, Gid: gid}
}

// file is a read-only file whose content read computes; its size is the
// content's length at each getattr, so that tail -f sees it grow. Opened
// files are direct I/O: every read asks for the current content.
type file struct {
	fs.Inode
	fs   *FS
	path string
	read func(ctx context.Context) ([]byte, error)
}

var (
	_ = (fs.NodeGetattrer)((*file)(nil))
	_ = (fs.NodeOpener)((*file)(nil))
	_ = (fs.NodeReader)((*file)(nil))
)

func (f *file) attr(ctx context.Context, a *fuse.Attr) syscall.Errno {
	b, err := f.read(ctx)
	if err != nil {
		return f.fs.errno(err, f.path)
	}
	a.Mode = syscall.S_IFREG | 0o444
	a.Size = uint64(len(b))
	now := time.Now()
	a.SetTimes(nil, &now, &now)
	return 0
}

func (f *file) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return f.attr(ctx, &out.Attr)
}

func (f *file) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *file) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	b, err := f.read(ctx)
	if err != nil {
		return nil, f.fs.errno(err, f.path)
	}
	if off >= int64(len(b)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(b[off:min(off+int64(len(dest)), int64(len(b)))]), 0
}

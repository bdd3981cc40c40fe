package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// Taking and restoring checkpoints needs CRIU and real jobs: e2e's
// checkpoint tests. These tests cover what the store decides on its own.

func newStore(t *testing.T, fetch func(context.Context, pidtable.Node, string) (io.ReadCloser, error)) (*Store, *pidtable.Store) {
	t.Helper()
	table := pidtable.New(etcdtest.Client(t))
	s := New(Config{Node: "node1", Dir: t.TempDir(), Table: table, Fetch: fetch, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return s, table
}

// TestReconcile: at agent start, a checkpoint this node was still saving is
// removed (record and directory), a ready one is kept, and a directory no
// record names (removed while the node was down) goes.
func TestReconcile(t *testing.T) {
	ctx := t.Context()
	s, table := newStore(t, nil)
	for _, c := range []pidtable.Checkpoint{
		{Name: "ready", State: pidtable.Ready, GPID: 1, Node: "node1"},
		{Name: "saving", State: pidtable.Saving, GPID: 2, Node: "node1"},
		{Name: "elsewhere", State: pidtable.Saving, GPID: 3, Node: "node2"},
	} {
		if _, err := table.CreateCheckpoint(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"ready", "saving", "orphan"} {
		if err := os.MkdirAll(filepath.Join(s.Dir(d), "images"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := table.GetCheckpoint(ctx, "saving"); !errors.Is(err, pidtable.ErrNotFound) {
		t.Errorf("an interrupted checkpoint's record: %v, want it removed", err)
	}
	for _, name := range []string{"ready", "elsewhere"} {
		if _, _, err := table.GetCheckpoint(ctx, name); err != nil {
			t.Errorf("record %s: %v, want it kept", name, err)
		}
	}
	if _, err := os.Stat(s.Dir("ready")); err != nil {
		t.Error("a ready checkpoint's directory was removed")
	}
	for _, d := range []string{"saving", "orphan"} {
		if _, err := os.Stat(s.Dir(d)); err == nil {
			t.Errorf("directory %s stays", d)
		}
	}
}

// TestStreamFetchRoundTrip: what Stream writes of a checkpoint held here,
// fetch reads on another node into the images and the job's files; a cut
// stream is refused as a conflict (the checksum), not taken as a checkpoint.
func TestStreamFetchRoundTrip(t *testing.T) {
	ctx := t.Context()
	holder, _ := newStore(t, nil)
	dir := holder.Dir("c1")
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		filepath.Join(dir, "images", "pages-1.img"): "pages",
		filepath.Join(dir, shim.LogFile):            "log",
		filepath.Join(dir, shim.SpecFile):           "{}",
		filepath.Join(dir, MetaFile):                "{}",
	}
	for p, v := range files {
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var stream bytes.Buffer
	if _, err := holder.Stream(&stream, "c1"); err != nil {
		t.Fatal(err)
	}
	full := stream.Bytes()
	var served []byte
	restorer, _ := newStore(t, func(ctx context.Context, n pidtable.Node, name string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(served)), nil
	})
	c := pidtable.Checkpoint{Name: "c1", Node: "node2"}
	served = full
	images, job := filepath.Join(t.TempDir(), "images"), filepath.Join(t.TempDir(), "job")
	if _, err := restorer.fetch(ctx, pidtable.Node{Name: "node2"}, c, images, job); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(images, "pages-1.img")); err != nil || string(b) != "pages" {
		t.Errorf("image: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(job, shim.LogFile)); err != nil || string(b) != "log" {
		t.Errorf("log: %q %v", b, err)
	}
	served = full[:len(full)/2]
	images, job = filepath.Join(t.TempDir(), "images"), filepath.Join(t.TempDir(), "job")
	if _, err := restorer.fetch(ctx, pidtable.Node{Name: "node2"}, c, images, job); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("a cut stream: %v, want a conflict", err)
	}
}

// TestRefusals: a checkpoint or restore that cannot be done is refused
// before anything is claimed, with the kind that tells the user what to do.
func TestRefusals(t *testing.T) {
	ctx := t.Context()
	s, table := newStore(t, nil)
	running := pidtable.Proc{GPID: 7, Node: "node1", State: pidtable.Running, User: "root"}
	for _, c := range []struct {
		name string
		p    pidtable.Proc
		req  string
		want error
	}{
		{"bad name", running, "../x", errdefs.ErrInvalid},
		{"ended", pidtable.Proc{GPID: 7, Node: "node1", State: pidtable.Exited}, "", errdefs.ErrConflict},
		{"not running yet", pidtable.Proc{GPID: 7, Node: "node1", State: pidtable.Starting}, "", errdefs.ErrConflict},
		{"terminal", pidtable.Proc{GPID: 7, Node: "node1", State: pidtable.Running, TTY: true}, "", errdefs.ErrConflict},
	} {
		if _, err := s.Take(ctx, c.p, api.CheckpointRequest{Name: c.req}); !errors.Is(err, c.want) {
			t.Errorf("take, %s: %v, want %v", c.name, err, c.want)
		}
	}
	noCRIU, _ := newStore(t, nil)
	noCRIU.cfg.CRIUErr = errors.New("criu check failed")
	if _, err := noCRIU.Take(ctx, running, api.CheckpointRequest{}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("take without CRIU: %v, want a conflict", err)
	}
	if _, err := noCRIU.Restore(ctx, pidtable.Checkpoint{Name: "c", Node: "node1", Proc: running}, false, ""); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("restore without CRIU: %v, want a conflict", err)
	}
	// Held by a node that is not Ready: unavailable, retry later.
	if err := table.RegisterNode(ctx, pidtable.Node{Name: "node2", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Restore(ctx, pidtable.Checkpoint{Name: "c", Node: "node2", Proc: running}, false, ""); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("restore from a NotReady holder: %v, want unavailable", err)
	}
	// Its gpid still runs: restoring under it would run the job twice.
	lease, err := table.Client().Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if err := table.RegisterNode(ctx, pidtable.Node{Name: "node1", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := table.PublishStatus(ctx, "node1", pidtable.NodeStatus{Instance: "i"}, lease.ID); err != nil {
		t.Fatal(err)
	}
	p, err := table.Create(ctx, pidtable.Proc{Node: "node1", User: "root", Argv: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	c := pidtable.Checkpoint{Name: "c", Node: "node1", GPID: p.GPID, Proc: p}
	if _, err := s.Restore(ctx, c, false, ""); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "--as-new") {
		t.Errorf("restore under a live gpid: %v, want a conflict that names --as-new", err)
	}
	if got, _, err := table.Get(ctx, p.GPID); err != nil || got.State != p.State || got.Node != "node1" {
		t.Errorf("the live job's record changed: %+v (%v)", got, err)
	}
}

package store

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// TestCopyAndPrune: a node copies an automatic checkpoint held by another
// through the checksummed stream, records it as <name>.copy with CopyOf,
// and refuses a second copy, a copy of a copy and a copy of its own; the
// newest automatic checkpoints are kept, originals and copies apart.
func TestCopyAndPrune(t *testing.T) {
	ctx := t.Context()
	holder, table := newStore(t, nil)
	holder.cfg.Node = "node2"
	files := map[string]string{"images/pages-1.img": "pages", shim.LogFile: "log", shim.SpecFile: "{}", MetaFile: "{}"}
	orig := pidtable.Checkpoint{Name: "auto-7-a", State: pidtable.Ready, GPID: 7, Node: "node2", Auto: true, Created: time.Now().UTC()}
	if _, err := table.CreateCheckpoint(ctx, orig); err != nil {
		t.Fatal(err)
	}
	for f, body := range files {
		p := filepath.Join(holder.Dir(orig.Name), f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fetch := func(_ context.Context, _ pidtable.Node, name string) (io.ReadCloser, error) {
		r, w := io.Pipe()
		go func() { _, err := holder.Stream(w, name); w.CloseWithError(err) }()
		return r, nil
	}
	s := New(Config{Node: "node1", Dir: t.TempDir(), Table: table, Fetch: fetch, Log: slog.New(slog.DiscardHandler)})
	cp, err := s.Copy(ctx, orig, pidtable.Node{Name: "node2"})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Name != "auto-7-a.copy" || cp.Node != "node1" || cp.CopyOf != orig.Name || cp.State != pidtable.Ready || !cp.Auto || cp.Size == 0 {
		t.Fatalf("copy = %+v", cp)
	}
	for f, body := range files {
		if b, err := os.ReadFile(filepath.Join(s.Dir(cp.Name), f)); err != nil || string(b) != body {
			t.Errorf("copied %s = %q, %v; want %q", f, b, err, body)
		}
	}
	if _, err := s.Copy(ctx, orig, pidtable.Node{Name: "node2"}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second copy: %v, want a conflict", err)
	}
	if _, err := s.Copy(ctx, cp, pidtable.Node{Name: "node1"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("copy of a copy: %v, want invalid", err)
	}
	if _, err := holder.Copy(ctx, orig, pidtable.Node{Name: "node2"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("copy onto its own holder: %v, want invalid", err)
	}

	// Three originals here and the copy: keep 2 originals, the copy stays.
	for i, name := range []string{"auto-7-b", "auto-7-c", "auto-7-d"} {
		c := pidtable.Checkpoint{Name: name, State: pidtable.Ready, GPID: 7, Node: "node1", Auto: true, Created: orig.Created.Add(time.Duration(i+1) * time.Minute)}
		if _, err := table.CreateCheckpoint(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(s.Dir(name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := s.PruneAuto(ctx, 7, 2)
	if err != nil || len(removed) != 1 || removed[0] != "auto-7-b" {
		t.Fatalf("prune: removed %v, %v; want auto-7-b", removed, err)
	}
	if _, err := os.Stat(s.Dir("auto-7-b")); !os.IsNotExist(err) {
		t.Errorf("pruned directory still there: %v", err)
	}
	all, _ := table.Checkpoints(ctx, "node1")
	if got, ok := Newest(all, 7, func(string) bool { return true }); !ok || got.Name != "auto-7-d" {
		t.Errorf("newest = %+v", got)
	}
}

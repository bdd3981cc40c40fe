package migrate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/shim"
)

func TestImageLimits(t *testing.T) {
	if got := ImageBytesFor(0); got != maxImageBytes {
		t.Errorf("no memory limit: %d", got)
	}
	if got := ImageBytesFor(64 << 20); got != 128<<20+imageSlack {
		t.Errorf("64 MiB job: %d", got)
	}
	if got := ImageBytesFor(maxImageBytes); got != maxImageBytes {
		t.Errorf("huge job: %d", got)
	}
	a := New(context.Background(), Config{Name: "node2"})
	var releases []func()
	for range maxStreamsPerPeer {
		r, err := a.acquireStream("node1")
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	if _, err := a.acquireStream("node1"); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "at most 2") {
		t.Fatalf("stream over the limit: %v", err)
	}
	if r, err := a.acquireStream("node2"); err != nil {
		t.Fatalf("another peer is limited separately: %v", err)
	} else {
		r()
	}
	releases[0]()
	if r, err := a.acquireStream("node1"); err != nil {
		t.Fatalf("after a release: %v", err)
	} else {
		r()
	}
	releases[1]()
	if len(a.streams) != 0 {
		t.Fatalf("streams left: %v", a.streams)
	}
}

// TestIncomingOnlyFromItsSource: later migration steps are accepted only from
// the node that prepared the migration.
func TestIncomingOnlyFromItsSource(t *testing.T) {
	a := New(context.Background(), Config{Name: "node3"})
	a.ExpectIncoming(7, "m1", "node1")
	if _, err := a.incomingFor(7, "m1", "node1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.incomingFor(7, "m1", "node2"); !errors.Is(err, errdefs.ErrForbidden) {
		t.Fatalf("another node: %v", err)
	}
	if _, err := a.incomingFor(7, "m0", "node1"); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("stale id: %v", err)
	}
	if _, err := a.incomingFor(8, "m1", "node1"); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("other gpid: %v", err)
	}
}

// TestAdoptLog: a log that came in two parts (ahead of the freeze, then its
// tail with the images) is joined; a tail that does not start where the part
// sent ahead ends is refused, and a whole log is taken as it is.
func TestAdoptLog(t *testing.T) {
	stage, dir := t.TempDir(), t.TempDir()
	write := func(path, s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, logPrefixFile), "hello ")
	write(filepath.Join(stage, shim.LogFile+logTailSuffix(6)), "world")
	if err := adoptLog(stage, dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, shim.LogFile)); string(b) != "hello world" {
		t.Fatalf("joined log %q", b)
	}
	write(filepath.Join(dir, logPrefixFile), "hello ")
	write(filepath.Join(stage, shim.LogFile+logTailSuffix(5)), "world")
	if err := adoptLog(stage, dir); err == nil {
		t.Fatal("a tail starting at 5 joined to 6 bytes")
	}
	os.Remove(filepath.Join(stage, shim.LogFile+logTailSuffix(5)))
	write(filepath.Join(stage, shim.LogFile), "whole")
	if err := adoptLog(stage, dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, shim.LogFile)); string(b) != "whole" {
		t.Fatalf("whole log %q", b)
	}
}

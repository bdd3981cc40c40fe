package pidtable

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestCheckpointRecords(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c := Checkpoint{Name: "c1", State: Saving, GPID: 7, Node: "n1"}
	rev, err := s.CreateCheckpoint(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCheckpoint(ctx, c); !errors.Is(err, ErrExists) {
		t.Fatalf("second create of c1: %v, want ErrExists", err)
	}
	c.State = Ready
	rev2, err := s.SwapCheckpoint(ctx, c, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SwapCheckpoint(ctx, c, rev); !errors.Is(err, ErrChanged) {
		t.Fatalf("swap at a stale revision: %v, want ErrChanged", err)
	}
	if _, err := s.CreateCheckpoint(ctx, Checkpoint{Name: "c2", State: Ready, GPID: 8, Node: "n2"}); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.GetCheckpoint(ctx, "c1")
	if err != nil || got.State != Ready || got.GPID != 7 {
		t.Fatalf("get c1: %+v, %v", got, err)
	}
	if all, err := s.Checkpoints(ctx, ""); err != nil || len(all) != 2 {
		t.Fatalf("list all: %+v, %v", all, err)
	}
	if n2, err := s.Checkpoints(ctx, "n2"); err != nil || len(n2) != 1 || n2[0].Name != "c2" {
		t.Fatalf("list n2: %+v, %v", n2, err)
	}
	if err := s.DeleteCheckpoint(ctx, "c1", rev); !errors.Is(err, ErrChanged) {
		t.Fatalf("delete at a stale revision: %v, want ErrChanged", err)
	}
	if err := s.DeleteCheckpoint(ctx, "c1", rev2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.GetCheckpoint(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted c1: %v, want ErrNotFound", err)
	}
}

func TestValidCheckpointName(t *testing.T) {
	for _, ok := range []string{"a", "42-20261126-193000.123", "job_1.v2"} {
		if err := ValidCheckpointName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "../x", "a/b", "Upper", "-x", ".hidden", string(make([]byte, 64))} {
		if ValidCheckpointName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestRecreateOnlyOnce: of concurrent restores of one forgotten gpid, exactly
// one gets it; none on a NotReady node.
func TestRecreateOnlyOnce(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	if _, err := s.Recreate(ctx, Proc{GPID: 5, Node: "down"}); !errors.Is(err, ErrNodeNotReady) {
		t.Fatalf("recreate on a NotReady node: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, lost := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Recreate(ctx, Proc{GPID: 5, Node: "n1", State: Starting})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, ErrExists):
				lost++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || lost != 7 {
		t.Fatalf("recreate: %d won, %d refused; want 1 and 7", won, lost)
	}
}

// FuzzValidCheckpointName: a name that passes is safe as one path element of
// the checkpoint store and as one etcd key segment.
func FuzzValidCheckpointName(f *testing.F) {
	for _, s := range []string{"a", "..", "a/b", "42-20261126-193000.123", "\x00", "a\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidCheckpointName(name) != nil {
			return
		}
		if name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00\n") || len(name) > 63 || filepath.Base(name) != name {
			t.Fatalf("unsafe name %q accepted", name)
		}
	})
}

package pidtable

import (
	"context"
	"errors"
	"testing"
)

// TestFailoverClaim: a job is handed to the restoring node only once its
// owner's lease is gone, with epoch+1 and the checkpoint named; a second
// claim (another controller, a retry) finds the record moved.
func TestFailoverClaim(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	lease := makeReady(t, s, "n1")
	p, err := s.Create(ctx, Proc{Node: "n1", State: Running, Argv: []string{"x"}, PID: 42})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.FailoverClaim(ctx, p.GPID, "n1", "n2", "ck1"); !errors.Is(err, ErrChanged) {
		t.Fatalf("failover while n1 is Ready: %v, want ErrChanged", err)
	}
	if _, err := s.c.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	got, rev, err := s.FailoverClaim(ctx, p.GPID, "n1", "n2", "ck1")
	if err != nil || rev == 0 {
		t.Fatalf("failover: %v", err)
	}
	if got.Node != "n2" || got.State != Starting || got.Epoch != p.Epoch+1 || got.RestoredFrom != "ck1" || got.PID != 0 ||
		got.FailedOver != 1 || got.FailedOverFrom != "n1" {
		t.Fatalf("claimed record = %+v", got)
	}
	if _, _, err := s.FailoverClaim(ctx, p.GPID, "n1", "n3", "ck1"); !errors.Is(err, ErrChanged) {
		t.Fatalf("second failover: %v, want ErrChanged", err)
	}
	stored, _, err := s.Get(ctx, p.GPID)
	if err != nil || stored.Node != "n2" || stored.Epoch != p.Epoch+1 {
		t.Fatalf("stored = %+v, %v", stored, err)
	}
}

// TestHandoverClaim: a running job is handed to the restoring node at the
// epoch its owner saw, once; a claim at another epoch, from another node, or
// of a job that is not running finds the record changed.
func TestHandoverClaim(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	p, err := s.Create(ctx, Proc{Node: "n1", State: Running, Argv: []string{"x"}, PID: 42})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.HandoverClaim(ctx, p.GPID, "n1", p.Epoch+1, "n2", "ck1"); !errors.Is(err, ErrChanged) {
		t.Fatalf("claim at a stale epoch: %v, want ErrChanged", err)
	}
	if _, _, err := s.HandoverClaim(ctx, p.GPID, "n3", p.Epoch, "n2", "ck1"); !errors.Is(err, ErrChanged) {
		t.Fatalf("claim from a node that does not own it: %v, want ErrChanged", err)
	}
	got, _, err := s.HandoverClaim(ctx, p.GPID, "n1", p.Epoch, "n2", "ck1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != "n2" || got.State != Starting || got.Epoch != p.Epoch+1 || got.RestoredFrom != "ck1" || got.PID != 0 {
		t.Fatalf("claimed record = %+v", got)
	}
	if _, _, err := s.HandoverClaim(ctx, p.GPID, "n1", p.Epoch, "n3", "ck1"); !errors.Is(err, ErrChanged) {
		t.Fatalf("second claim: %v, want ErrChanged", err)
	}
}

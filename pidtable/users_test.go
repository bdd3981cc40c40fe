package pidtable

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// TestRevocationCache: the cache lists what is revoked before it runs, and
// the watch brings a later revocation (and a rotation's) within moments.
func TestRevocationCache(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Revoke(ctx, Revocation{Serial: "a1", At: time.Now(), By: "root"}, "", 0); err != nil {
		t.Fatal(err)
	}
	c := s.NewRevocationCache(slog.Default())
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if r, ok := c.Revoked("a1"); !ok || r.By != "root" {
		t.Fatalf("listed revocation: %+v %v", r, ok)
	}
	go c.Run(ctx)

	// A user, rotated: the old serial is revoked in the same transaction.
	u := User{Name: "alice", Serial: "b2", Expires: time.Now().Add(time.Hour)}
	if err := s.PutUser(ctx, u, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.PutUser(ctx, u, 0, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create of alice: %v, want ErrConflict", err)
	}
	_, rev, err := s.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	u2 := u
	u2.Serial = "c3"
	if err := s.PutUser(ctx, u2, rev, &Revocation{Serial: "b2", User: "alice", At: time.Now(), Expires: u.Expires}); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, c, "b2")
	if _, ok := c.Revoked("c3"); ok {
		t.Fatal("the new serial is revoked")
	}

	// Revoke by name: the entry goes with it; a stale revision is refused.
	_, rev, _ = s.User(ctx, "alice")
	if err := s.Revoke(ctx, Revocation{Serial: "c3", User: "alice", At: time.Now()}, "alice", rev-1); !errors.Is(err, ErrConflict) {
		t.Fatalf("revoke at a stale revision: %v", err)
	}
	if err := s.Revoke(ctx, Revocation{Serial: "c3", User: "alice", At: time.Now()}, "alice", rev); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, c, "c3")
	if _, _, err := s.User(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alice after revoke: %v", err)
	}
	if c.Len() != 3 {
		t.Fatalf("cache holds %d revocations, want 3", c.Len())
	}
}

func waitRevoked(t *testing.T, c *RevocationCache, serial string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := c.Revoked(serial); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serial %s not in the cache after 5 s", serial)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTokensListDelete: tokens are listed without secrets and can be deleted.
func TestTokensListDelete(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.PutToken(ctx, "abcdef", JoinToken{SecretHash: "h", Expires: time.Now().Add(time.Minute), Creator: "root"}); err != nil {
		t.Fatal(err)
	}
	toks, err := s.Tokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].ID != "abcdef" || toks[0].Creator != "root" {
		t.Fatalf("tokens: %+v %v", toks, err)
	}
	if err := s.DeleteToken(ctx, "abcdef"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteToken(ctx, "abcdef"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

package pidtable

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestUpdateRefusesNewerRecord: a record with a field this version does not
// know is readable, but a read-modify-write refuses it and changes nothing.
func TestUpdateRefusesNewerRecord(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	p, err := s.Create(ctx, Proc{Node: "n1", User: "u", Argv: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	val := `{"gpid":` + itoa(p.GPID) + `,"node":"n1","epoch":1,"state":"running","user":"u","argv":["true"],"created":"2026-01-01T00:00:00Z","from_the_future":{"x":1}}`
	if _, err := s.c.Put(ctx, ProcKey(p.GPID), val); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.Get(ctx, p.GPID); err != nil || got.State != Running {
		t.Fatalf("read of a newer record: %+v %v", got, err)
	}
	if snap, err := s.Snapshot(ctx); err != nil || len(snap.Procs) != 1 {
		t.Fatalf("snapshot with a newer record: %v", err)
	}
	_, _, err = s.Transition(ctx, p.GPID, End, "n1", func(p *Proc) error { p.State = Exited; return nil })
	if !errors.Is(err, ErrNewerRecord) || !strings.Contains(err.Error(), "upgrade this agent") {
		t.Fatalf("update of a newer record: %v", err)
	}
	resp, _ := s.c.Get(ctx, ProcKey(p.GPID))
	if string(resp.Kvs[0].Value) != val {
		t.Fatalf("record changed: %s", resp.Kvs[0].Value)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestDecodeProcRejects(t *testing.T) {
	for _, b := range []string{``, `[]`, `{}`, `{"gpid":1}`, `{"gpid":1,"node":"n"} {"gpid":2}`, `{"gpid":-1,"node":"n"}`, `{"gpid":1,"node":"n","argv":"x"}`, `{"gpid":1,"node":"n"` + strings.Repeat(" ", maxRecord) + `}`} {
		if _, err := DecodeProc([]byte(b)); err == nil {
			t.Errorf("DecodeProc(%.40q) succeeded", b)
		}
	}
	if p, err := DecodeProc([]byte(`{"gpid":7,"node":"n","new_field":1}`)); err != nil || p.GPID != 7 {
		t.Fatalf("unknown field on read: %v", err)
	}
}

func TestTokens(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.PutToken(ctx, "abc123", JoinToken{SecretHash: "h", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutToken(ctx, "abc123", JoinToken{SecretHash: "h2", Expires: time.Now().Add(time.Hour)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second token with the same id: %v", err)
	}
	if tk, err := s.Token(ctx, "abc123"); err != nil || tk.SecretHash != "h" {
		t.Fatalf("token: %+v %v", tk, err)
	}
	if _, err := s.Token(ctx, "ffffff"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing token: %v", err)
	}
	if err := s.PutToken(ctx, "dead00", JoinToken{Expires: time.Now()}); err == nil {
		t.Fatal("expired token stored")
	}
}

func FuzzDecodeProc(f *testing.F) {
	f.Add([]byte(`{"gpid":1,"node":"n1","epoch":1,"state":"running","user":"u","uid":1000,"argv":["sleep","1"],"created":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"gpid":1,"node":"n","migration":{"id":"x","target":"n2"},"exit_code":3}`))
	f.Add([]byte(`{"gpid":1,"node":"n","zzz":[1,2]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeProc(b)
		if err != nil {
			return
		}
		if p.GPID == 0 || p.Node == "" {
			t.Fatalf("accepted a record without gpid or node: %q", b)
		}
		if _, err := decodeProcForUpdate(b); err != nil && !errors.Is(err, ErrNewerRecord) {
			t.Fatalf("strict decode of an accepted record: %v", err)
		}
	})
}

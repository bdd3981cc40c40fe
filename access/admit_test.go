package access

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// fakeTable is a process table whose Find fails the first getFails times
// with a transient error (as a timed-out etcd request does).
type fakeTable struct {
	proc     pidtable.Proc
	getFails int
	gets     int
}

var errTransient = errors.New("etcdserver: request timed out")

func (f *fakeTable) Find(_ context.Context, gpid uint64) (pidtable.Proc, int64, error) {
	f.gets++
	if f.gets <= f.getFails {
		return pidtable.Proc{}, 0, fmt.Errorf("pidtable: get gpid %d: %w", gpid, errTransient)
	}
	if gpid != f.proc.GPID {
		return pidtable.Proc{}, 0, fmt.Errorf("%w: gpid %d", pidtable.ErrNotFound, gpid)
	}
	return f.proc, 1, nil
}

// TestWaitFailsClosed: guard admits a caller to a job's routes (wait among
// them) on the job's record; when the record cannot be read, it refuses, so
// the handler never runs (wait used to skip the check and wait, handing
// another user's exit status to the caller).
func TestWaitFailsClosed(t *testing.T) {
	code := 3
	bobs := pidtable.Proc{GPID: 7, User: "bob", State: pidtable.Exited, ExitCode: &code}
	alice, bob, admin := Caller{User: "alice"}, Caller{User: "bob"}, Caller{User: "root", Admin: true}
	cases := []struct {
		name     string
		who      Caller
		gpid     uint64
		getFails int
		ok       bool
		is       error    // errors.Is the answer, if set
		code     api.Code // api code of the answer, if set
	}{
		{"owner", bob, 7, 0, true, nil, ""},
		{"admin", admin, 7, 0, true, nil, ""},
		{"another user", alice, 7, 0, false, nil, api.CodeForbidden},
		{"another user, record unreadable", alice, 7, 1, false, errTransient, ""},
		{"owner, record unreadable", bob, 7, 1, false, errTransient, ""},
		{"no such gpid", bob, 8, 0, false, nil, api.CodeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &fakeTable{proc: bobs, getFails: tc.getFails}
			p, err := AdmitJob(context.Background(), st, tc.who, tc.gpid)
			if tc.ok {
				if err != nil || p.ExitCode == nil || *p.ExitCode != code {
					t.Fatalf("got %+v, %v; want the ended job", p, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %+v, no error; want a refusal", p)
			}
			if p.ExitCode != nil {
				t.Fatalf("exit status handed out with error %v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("err %v, want %v", err, tc.is)
			}
			if tc.code != "" && !api.IsCode(err, tc.code) {
				t.Fatalf("err %v, want code %s", err, tc.code)
			}
		})
	}
}

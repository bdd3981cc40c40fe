package migrate

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fake records calls and fails at one phase.
type fake struct {
	failAt  Phase
	calls   []string
	dumped  bool
	restore bool
}

var errBoom = errors.New("boom")

func (f *fake) step(p Phase) error {
	f.calls = append(f.calls, string(p))
	if f.failAt == p {
		return errBoom
	}
	return nil
}
func (f *fake) Claim(context.Context) error   { return f.step(Claim) }
func (f *fake) Prepare(context.Context) error { return f.step(Prepare) }
func (f *fake) Dump(context.Context) (int64, error) {
	return 42, f.step(Dump)
}
func (f *fake) Transfer(context.Context) error { return f.step(Transfer) }
func (f *fake) Restore(context.Context) error  { return f.step(Restore) }
func (f *fake) Commit(context.Context) error   { return f.step(Commit) }
func (f *fake) Cleanup(context.Context) error  { return f.step(Cleanup) }
func (f *fake) Resume(context.Context) error   { return f.step(Resume) }
func (f *fake) Rollback(_ context.Context, _ error, dumped, restored bool) error {
	f.calls = append(f.calls, "rollback")
	f.dumped, f.restore = dumped, restored
	return nil
}
func (f *fake) Progress(Phase) {}

func TestRunRollsBackAtEveryPhase(t *testing.T) {
	cases := []struct {
		failAt                 Phase
		wantDumped, wantRestor bool
		rollback               bool
	}{
		{Claim, false, false, false},
		{Prepare, false, false, true},
		{Dump, true, false, true},
		{Transfer, true, false, true},
		{Restore, true, true, true},
		{Commit, true, true, true},
	}
	for _, c := range cases {
		t.Run(string(c.failAt), func(t *testing.T) {
			f := &fake{failAt: c.failAt}
			_, err := Run(context.Background(), f)
			var me *Error
			if !errors.As(err, &me) || me.Phase != c.failAt || !errors.Is(err, errBoom) {
				t.Fatalf("err %v, want *Error at %s wrapping the cause", err, c.failAt)
			}
			rolled := f.calls[len(f.calls)-1] == "rollback"
			if rolled != c.rollback {
				t.Fatalf("calls %v: rollback=%v, want %v", f.calls, rolled, c.rollback)
			}
			if rolled && (f.dumped != c.wantDumped || f.restore != c.wantRestor) {
				t.Fatalf("rollback(dumped=%v, restored=%v), want (%v, %v)", f.dumped, f.restore, c.wantDumped, c.wantRestor)
			}
			if strings.Contains(strings.Join(f.calls, ","), "cleanup") {
				t.Fatalf("cleanup ran after a failure: %v", f.calls)
			}
		})
	}
}

func TestRunSuccessAndCleanupFailure(t *testing.T) {
	f := &fake{}
	st, err := Run(context.Background(), f)
	if err != nil || st.ImageBytes != 42 || strings.Join(f.calls, ",") != "claim,prepare,dump,transfer,restore,commit,resume,cleanup" {
		t.Fatalf("err %v stats %+v calls %v", err, st, f.calls)
	}
	f = &fake{failAt: Cleanup}
	if _, err := Run(context.Background(), f); err == nil || strings.Contains(strings.Join(f.calls, ","), "rollback") {
		t.Fatalf("cleanup failure: err %v calls %v (must not roll back after commit)", err, f.calls)
	}
}

// uncertain fails the commit with ErrCommitUncertain.
type uncertain struct{ fake }

func (u *uncertain) Commit(context.Context) error { return ErrCommitUncertain }

func TestUncertainCommitIsNotRolledBack(t *testing.T) {
	u := &uncertain{}
	_, err := Run(context.Background(), u)
	if !errors.Is(err, ErrCommitUncertain) {
		t.Fatalf("err %v", err)
	}
	for _, c := range u.calls {
		if c == "rollback" {
			t.Fatal("rolled back although the commit may have happened: could run twice")
		}
	}
}

// TestErrorTargetNotTold: a rollback whose only shortfall is a target that
// could not be told still says the job runs on its source again; any other
// rollback error is quoted as such.
func TestErrorTargetNotTold(t *testing.T) {
	nt := &TargetNotTold{Target: "node2", Err: errors.New("deadline")}
	e := &Error{Phase: Commit, Err: errors.New("etcd"), RollbackErr: errors.Join(nt)}
	if msg := e.Error(); !strings.Contains(msg, "running on its source node again") || !strings.Contains(msg, "node node2 could not be told") {
		t.Errorf("only the target not told: %q", msg)
	}
	e.RollbackErr = errors.Join(nt, errors.New("record not updated"))
	if msg := e.Error(); strings.Contains(msg, "running on its source node again") || !strings.Contains(msg, "rollback: ") {
		t.Errorf("another rollback error too: %q", msg)
	}
}

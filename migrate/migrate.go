package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Phase names a step of a migration.
type Phase string

// Phases, in order.
const (
	Claim    Phase = "claim"
	Prepare  Phase = "prepare"
	Dump     Phase = "dump"
	Transfer Phase = "transfer"
	Restore  Phase = "restore"
	Commit   Phase = "commit"
	Resume   Phase = "resume"
	Cleanup  Phase = "cleanup"
)

// Steps are the side effects of a migration, implemented by the source agent.
// Each returns an error to stop the migration; Run then rolls back.
type Steps interface {
	// Claim marks the job as migrating (refusing if it is not running).
	Claim(ctx context.Context) error
	// Prepare asks the target to check it can run the job and get ready.
	Prepare(ctx context.Context) error
	// Dump checkpoints the job, leaving the source copy stopped.
	Dump(ctx context.Context) (imageBytes int64, err error)
	// Transfer streams the images to the target.
	Transfer(ctx context.Context) error
	// Restore has the target restore the job; the target copy then runs.
	Restore(ctx context.Context) error
	// Commit makes the target the owner in one compare-and-swap transaction.
	Commit(ctx context.Context) error
	// Resume starts the target copy, which the restore left stopped. A failure
	// is reported, not rolled back: the target resumes on its own once it sees
	// the commit.
	Resume(ctx context.Context) error
	// Cleanup kills the stopped source copy and removes images; errors are
	// reported but the migration has happened.
	Cleanup(ctx context.Context) error

	// Rollback undoes a migration that failed before commit, for cause: the
	// target discards its copy, the source copy resumes (if dumped), and the
	// record is released (saying why, in the same write).
	Rollback(ctx context.Context, cause error, dumped, restored bool) error
	// Progress reports the phase being entered.
	Progress(p Phase)
}

// Stats are the figures of a finished migration.
type Stats struct {
	// Frozen is how long the job did not run: from the start of the dump to the
	// end of the restore.
	Frozen time.Duration `json:"frozen_ns"`
	// ImageBytes is the size of the images shipped.
	ImageBytes int64         `json:"image_bytes"`
	Dump       time.Duration `json:"dump_ns"`
	Transfer   time.Duration `json:"transfer_ns"`
	Restore    time.Duration `json:"restore_ns"`
	Total      time.Duration `json:"total_ns"`
}

// Error is a failed migration: the phase it failed in, the cause, and whether
// the rollback succeeded (when it did not, RollbackErr says what is left).
type Error struct {
	Phase       Phase
	Err         error
	RollbackErr error
}

func (e *Error) Error() string {
	var end *JobEnded
	if errors.As(e.RollbackErr, &end) {
		return fmt.Sprintf("gpid %d ended during the migration: it %s; nothing was moved (the migration stopped during %s: %v)", end.GPID, end.How, e.Phase, e.Err)
	}
	msg := fmt.Sprintf("migration failed during %s: %v", e.Phase, e.Err)
	if e.RollbackErr != nil && onlyTargetNotTold(e.RollbackErr) {
		// The only thing the rollback could not do is tell the target: the
		// job runs on its source all the same.
		return msg + "; the job is running on its source node again (" + e.RollbackErr.Error() + ")"
	}
	if e.RollbackErr != nil {
		return msg + fmt.Sprintf("; rollback: %v", e.RollbackErr)
	}
	if e.Phase == Claim {
		return msg
	}
	return msg + "; the job is running on its source node again"
}

func (e *Error) Unwrap() error { return e.Err }

// JobEnded is what a rollback returns when the job ended during the migration
// (it exited, was killed, or was found lost): there is nothing to move and
// nothing to resume; its record holds its end.
type JobEnded struct {
	GPID uint64
	// How says how it ended, e.g. "exited with status 137".
	How string
}

func (e *JobEnded) Error() string { return fmt.Sprintf("gpid %d %s", e.GPID, e.How) }

// TargetNotTold is a rollback's only shortfall when the target could not be
// told to discard what it prepared: the target does so by itself once it
// reads the record (or at its agent's restart), and the job runs on its
// source again all the same.
type TargetNotTold struct {
	Target string
	Err    error
}

// onlyTargetNotTold says whether err is made of *TargetNotTold errors only.
func onlyTargetNotTold(err error) bool {
	if _, ok := err.(*TargetNotTold); ok {
		return true
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyTargetNotTold(e) {
				return false
			}
		}
		return len(j.Unwrap()) > 0
	}
	return false
}

func (e *TargetNotTold) Error() string {
	return fmt.Sprintf("node %s could not be told to discard its part (%v); it does so by itself once it sees the migration rolled back, or when its agent restarts", e.Target, e.Err)
}

// ErrCommitUncertain wraps a commit whose outcome is unknown (e.g. etcd timed
// out): neither copy may be resumed or killed until the record is read again.
var ErrCommitUncertain = errors.New("migrate: commit outcome unknown")

// Run drives a migration through its phases, rolling back on failure before
// commit. After a successful commit the migration stands even if cleanup fails.
func Run(ctx context.Context, s Steps) (Stats, error) {
	var st Stats
	start := time.Now()
	dumped, restored := false, false
	fail := func(p Phase, err error) (Stats, error) {
		e := &Error{Phase: p, Err: err}
		if p != Claim {
			// Roll back even if ctx is cancelled or timed out: that is often why we fail.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			e.RollbackErr = s.Rollback(rctx, e, dumped, restored)
		}
		return st, e
	}
	s.Progress(Claim)
	if err := s.Claim(ctx); err != nil {
		return fail(Claim, err)
	}
	s.Progress(Prepare)
	if err := s.Prepare(ctx); err != nil {
		return fail(Prepare, err)
	}
	s.Progress(Dump)
	frozenAt := time.Now()
	n, err := s.Dump(ctx)
	st.Dump = time.Since(frozenAt)
	if err != nil {
		// CRIU leaves the tree running when a dump fails, but resuming is harmless.
		dumped = true
		return fail(Dump, err)
	}
	dumped, st.ImageBytes = true, n
	s.Progress(Transfer)
	t := time.Now()
	if err := s.Transfer(ctx); err != nil {
		return fail(Transfer, err)
	}
	st.Transfer = time.Since(t)
	s.Progress(Restore)
	t = time.Now()
	err = s.Restore(ctx)
	st.Restore = time.Since(t)
	if err != nil {
		restored = true // a partial restore must be discarded too
		return fail(Restore, err)
	}
	restored = true
	s.Progress(Commit)
	if err := s.Commit(ctx); err != nil {
		if errors.Is(err, ErrCommitUncertain) {
			return st, &Error{Phase: Commit, Err: err, RollbackErr: errors.New("not attempted: the commit may have happened")}
		}
		return fail(Commit, err)
	}
	s.Progress(Resume)
	resumeErr := s.Resume(context.WithoutCancel(ctx))
	st.Frozen = time.Since(frozenAt)
	s.Progress(Cleanup)
	if err := errors.Join(resumeErr, s.Cleanup(context.WithoutCancel(ctx))); err != nil {
		st.Total = time.Since(start)
		return st, fmt.Errorf("migrate: migrated, but: %w", err)
	}
	st.Total = time.Since(start)
	return st, nil
}

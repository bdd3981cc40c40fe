package migrate

// The commit of a migration: one compare-and-swap of the job's record, at the
// revision the migration last wrote, that hands the job to the target. A
// commit whose transaction went unanswered is settled by a write that makes
// its late apply impossible before either copy of the job moves.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ssi-cluster/ssi/failpoint"
	"github.com/ssi-cluster/ssi/pidtable"
)

func (m *migration) Commit(ctx context.Context) error {
	defer m.tl.since("commit", time.Now())
	cctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	_, rev, err := m.mg.store.TransitionAt(cctx, m.gpid, m.rev, pidtable.MigrationCommit, m.mg.cfg.Name, func(p *pidtable.Proc) error {
		if p.Migration == nil || p.Migration.ID != m.id {
			return fmt.Errorf("%w: it is %s", errMigrationGone, p.State)
		}
		p.Node, p.Epoch, p.State = m.target.Name, p.Epoch+1, pidtable.Running
		p.PID, p.InitPID = m.restored.MainPID, m.restored.Init.PID
		p.MigrationError, p.MigrationFailed = "", time.Time{}
		p.Arrived = time.Now().UTC()
		return nil
	})
	if err == nil && failpoint.Hit("migrate/source/commit-applied") == nil && failpoint.Hit("migrate/source/commit-answer-lost") != nil {
		// Test builds only: the commit was applied and its answer is taken
		// as lost, as when etcd applies a write and then stops answering.
		// m.rev stays the commit's guard, which the release below needs.
		err = pidtable.ErrOutcomeUnknown
	} else if err == nil {
		m.rev = rev
		return failpoint.Hit("migrate/source/after-commit")
	}
	if !errors.Is(err, pidtable.ErrOutcomeUnknown) {
		if cctx.Err() != nil {
			// The record could not be read: the commit was never sent.
			return fmt.Errorf("etcd did not answer within %s, so the commit was not made: %w", etcdStepTimeout, err)
		}
		return err // not applied, and it never will be: roll back
	}
	// The commit was sent and not answered: etcd may still apply it. Settle
	// it by a write that makes a late apply fail: the release, a
	// compare-and-swap at the very revision the commit was guarded by. Only
	// once one of the two is known to have happened does either copy move.
	committed, serr := m.settleCommit(ctx)
	switch {
	case serr != nil:
		go m.settleLater()
		return fmt.Errorf("%w: %w", ErrCommitUncertain, errors.Join(err, serr))
	case committed:
		return nil
	}
	return fmt.Errorf("the commit did not happen (released instead after it went unanswered): %w", err)
}

// settleCommit decides a commit whose outcome is unknown, until ctx ends:
// committed is true if the record names the target at the commit's epoch;
// false once the release at the commit's revision won (m.released) or the
// record was changed by someone else (the commit, guarded by that revision,
// then can never apply).
func (m *migration) settleCommit(ctx context.Context) (committed bool, err error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
		_, rev, rerr := m.mg.store.TransitionAt(cctx, m.gpid, m.rev, pidtable.MigrationRelease, m.mg.cfg.Name, func(p *pidtable.Proc) error {
			p.State = pidtable.Running
			p.MigrationError, p.MigrationFailed = "the commit went unanswered (etcd unreachable); released instead", time.Now().UTC()
			return nil
		})
		var got pidtable.Proc
		var gerr error
		if errors.Is(rerr, pidtable.ErrChanged) {
			got, _, gerr = m.mg.store.Get(cctx, m.gpid)
		}
		cancel()
		switch {
		case rerr == nil:
			m.rev, m.released = rev, true
			return false, nil
		case errors.Is(rerr, pidtable.ErrChanged) && gerr == nil:
			// Only the commit hands the record to the target.
			return got.Node == m.target.Name, nil
		}
		if ctx.Err() != nil {
			return false, fmt.Errorf("etcd did not answer: %w", errors.Join(rerr, gerr, ctx.Err()))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// settleLater goes on settling a commit that stayed unknown past the
// migration's bound, and then carries out the outcome: the source copy is
// killed (committed: the target resumes its copy by itself) or resumed
// (released: the target discards its copy once it reads the record).
func (m *migration) settleLater() {
	ctx, cancel := context.WithTimeout(m.mg.life, time.Hour)
	defer cancel()
	committed, err := m.settleCommit(ctx)
	switch {
	case err != nil:
		m.mg.log.Error("commit outcome still unknown after an hour; the job stays frozen on both nodes until the agent restarts", "gpid", m.gpid, "err", err)
	case committed:
		m.mg.log.Warn("an unanswered commit turned out applied; removing the source copy", "gpid", m.gpid)
		m.mg.jobs.Forget(m.j)
	default:
		m.mg.log.Warn("an unanswered commit was settled by releasing the job; it runs here again", "gpid", m.gpid)
		resume(m.j)
	}
	if err == nil {
		// Either way the dump's images here are no longer needed (the
		// target restored from its own copy of them).
		if rerr := os.RemoveAll(m.images); rerr != nil {
			m.mg.log.Warn("remove the migration's images", "gpid", m.gpid, "err", rerr)
		}
	}
	m.mg.jobs.ClearBusy(m.j)
}

package migrate

// Rollback of a migration that failed before its commit, on the source: the
// target discards its part, the source copy runs again, and the record is
// released saying why.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

func (m *migration) Rollback(ctx context.Context, cause error, dumped, restored bool) error {
	var errs []error
	if m.prepared {
		if err := m.call(ctx, "abort", api.RestoreRequest{ID: m.id}, nil); err != nil {
			errs = append(errs, &TargetNotTold{Target: m.target.Name, Err: err})
		}
	}
	if m.lazy != nil {
		m.lazy.Kill() // before the resume: CRIU still holds the tree
	}
	if m.j != nil {
		killOrphanLazyDump(m.j.Dir())
	}
	if m.handedOver {
		// The source copy was killed to hand its locks over: bring the job
		// back from its images. Without them there is no job left to resume.
		if err := m.restoreHere(ctx); err != nil {
			m.lose(ctx, fmt.Sprintf("its source copy was handed over for a move (it held file locks), and after the move failed (%v) it could not be restored on %s from its images: %v", cause, m.mg.cfg.Name, err))
			return errors.Join(append(errs, m.ended(ctx))...)
		}
	}
	if dumped {
		m.mg.jobs.ReleaseStdin(m.j)
		resume(m.j)
	}
	if m.images != "" {
		_ = os.RemoveAll(m.images)
	}
	why := cause.Error() // now: cause may be annotated with this rollback's outcome later
	var err error
	if !m.released { // settleCommit may have released it already
		err = m.release(ctx, why)
	}
	switch {
	case err == nil:
		return errors.Join(append(errs, m.checkResumed(ctx))...)
	case errors.Is(err, errMigrationGone):
		// The record moved on without this migration: the job ended meanwhile
		// (finish recorded it) and is not resumed, or someone else holds it.
		if end := m.ended(ctx); end != nil {
			return errors.Join(append(errs, end)...)
		}
		errs = append(errs, err)
	default:
		// etcd unreachable: the job runs again here, but its record still says
		// migrating. Keep trying until etcd answers (the record then also lets
		// the target discard its part).
		errs = append(errs, fmt.Errorf("the job runs on %s again, but its record could not be updated yet (%w); retrying in the background", m.mg.cfg.Name, err))
		go func() {
			ctx, cancel := context.WithTimeout(m.mg.life, time.Hour)
			defer cancel()
			for ctx.Err() == nil {
				time.Sleep(time.Second)
				if err := m.release(ctx, why); err == nil || errors.Is(err, errMigrationGone) {
					m.mg.log.Info("released the record of a rolled-back migration", "gpid", m.gpid, "err", err)
					return
				}
			}
			m.mg.log.Error("could not release the record of a rolled-back migration within an hour", "gpid", m.gpid)
		}()
	}
	return errors.Join(errs...)
}

// checkResumed makes sure the job a rollback released runs again on this node
// before anyone is told so: a job that ended while it was being moved (its
// main process gone) is waited for until its end is recorded, and reported
// as ended.
func (m *migration) checkResumed(ctx context.Context) error {
	if m.j == nil || (m.j.State().Init.Alive() && !gone(m.j.State().MainPID)) {
		return nil
	}
	select {
	case <-m.j.Done(): // finish recorded the end
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	if end := m.ended(ctx); end != nil {
		return end
	}
	return fmt.Errorf("the job's processes on %s are gone, and its end is not recorded yet", m.mg.cfg.Name)
}

// ended reads the job's record and returns a *JobEnded if it has ended.
func (m *migration) ended(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	p, _, err := m.mg.store.Get(ctx, m.gpid)
	if err != nil || !p.State.Ended() {
		return nil
	}
	return &JobEnded{GPID: m.gpid, How: p.DescribeEnd()}
}

// gone reports whether process pid has exited (absent or a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state letter follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// errMigrationGone: the record no longer names this migration.
var errMigrationGone = errors.New("record no longer names the migration")

// release returns the record of a rolled-back migration to running, saying
// why in the same write: a client that lost the progress stream reads it
// there. (A refused second migrate never writes the record: that would break
// the CAS of the one in flight.)
func (m *migration) release(ctx context.Context, why string) error {
	ctx, cancel := context.WithTimeout(ctx, etcdStepTimeout)
	defer cancel()
	_, _, err := m.mg.store.Transition(ctx, m.gpid, pidtable.MigrationRelease, m.mg.cfg.Name, func(p *pidtable.Proc) error {
		if p.Node != m.mg.cfg.Name || p.Migration == nil || p.Migration.ID != m.id {
			return fmt.Errorf("%w: gpid %d is %s on %s", errMigrationGone, p.GPID, p.State, p.Node)
		}
		p.State, p.Migration = pidtable.Running, nil
		p.MigrationError, p.MigrationFailed = why, time.Now().UTC()
		if m.handedOver { // restored from its images: new host PIDs
			p.PID, p.InitPID = m.j.State().MainPID, m.j.State().Init.PID
		}
		return nil
	})
	return err
}

// RollbackOrphan resolves a migration this node was the source of when
// its agent died: the record still names this node (no commit), so the target's
// copy, if any, is discarded and the stopped source copy resumed.
//
// handedOver is the mark of a source copy killed to hand its locks over:
// the job is then restored from its images (handover.go).
func (mg *Migrator) RollbackOrphan(ctx context.Context, p pidtable.Proc, j Job, handedOver *MovedMark) {
	m := &migration{mg: mg, gpid: p.GPID, j: j, prepared: p.Migration != nil, send: func(api.MigrateEvent) {}}
	if handedOver != nil {
		m.handedOver, m.keys, m.images = true, handedOver.Keys, mg.ImagesDir("out", p.GPID)
	}
	if p.Migration != nil {
		m.id = p.Migration.ID
		snap, err := mg.store.NodesSnapshot(ctx)
		if err == nil {
			m.target, _ = snap.Node(p.Migration.Target)
		}
	}
	if m.target.Addr == "" {
		m.prepared = false
	}
	err := m.Rollback(ctx, errors.New("the source agent restarted during the migration; rolled back"), true, false)
	mg.log.Warn("rolled back a migration interrupted by an agent restart", "gpid", p.GPID, "err", err)
}

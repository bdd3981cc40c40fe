package pidtable

import (
	"context"
	"fmt"
)

// FailoverClaim hands gpid, whose record names dead, to node by, which
// restores it from checkpoint ckpt: the record becomes Starting on by with
// epoch+1 (the FailoverClaim transition). The transaction holds only while
// dead has no status key (its lease is gone: its agent stopped renewing it
// and has fenced its jobs, see package failover) and the record is at the
// revision read. It returns the record written and its revision.
func (s *Store) FailoverClaim(ctx context.Context, gpid uint64, dead, by, ckpt string) (Proc, int64, error) {
	return s.whileGone(ctx, gpid, dead, FailoverClaim, by, "failover of", func(p *Proc) {
		p.FailedOver, p.FailedOverFrom = p.FailedOver+1, p.Node
		p.Node, p.Epoch, p.State = by, p.Epoch+1, Starting
		p.PID, p.InitPID, p.Checkpoint, p.RestoredFrom = 0, 0, "", ckpt
	})
}

// HandoverClaim hands gpid, running on from, to node by, which restores it
// from checkpoint ckpt on from's request: from has killed its copy (a
// drain's fallback for a job that cannot move live; ssi migrate
// --from-checkpoint). The record becomes Starting on by with epoch+1 (the
// HandoverClaim transition), only if it still says the job runs on from at
// epoch; otherwise ErrChanged. The caller checks that from asked.
func (s *Store) HandoverClaim(ctx context.Context, gpid uint64, from string, epoch uint64, by, ckpt string) (Proc, int64, error) {
	return s.Transition(ctx, gpid, HandoverClaim, by, func(p *Proc) error {
		if p.Node != from || p.State != Running || p.Epoch != epoch {
			return fmt.Errorf("%w: handover of gpid %d from %s (epoch %d): it is %s on %s (epoch %d)", ErrChanged, gpid, from, epoch, p.State, p.Node, p.Epoch)
		}
		p.Node, p.Epoch, p.State = by, p.Epoch+1, Starting
		p.PID, p.InitPID, p.Checkpoint, p.RestoredFrom = 0, 0, "", ckpt
		return nil
	})
}

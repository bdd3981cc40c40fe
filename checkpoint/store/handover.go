package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/pidtable"
)

// A handover moves a job that cannot be moved live (every live move of a
// drain failed; ssi migrate --from-checkpoint) by restoring its newest
// checkpoint on another node under the same gpid; the work it did since
// that checkpoint is done again. It runs on the job's node (Handover) and
// the target (TakeOver), in this order:
//
//  1. the source picks the newest ready checkpoint of the job held by a
//     Ready node (itself included: the target fetches it from there);
//  2. it reserves the job (no migration, checkpoint or second handover
//     meanwhile) and kills it, waiting for its end, which is not recorded as
//     an exit (the job's directory is marked moved, as after a migration);
//  3. it asks the target, which claims the record at the epoch the source
//     read (pidtable.Store.HandoverClaim: running here, starting there,
//     epoch+1), then restores the checkpoint.
//
// So there are never two copies (the copy here is dead before the record
// names the target), and the record goes from running to starting without
// ending (an `ssi wait` waits on). If the target refuses before its claim,
// the source records the job lost, with the reason; if its restore fails
// after the claim, the target does (as a failover's restore does).

// AskTakeOver has node to restore checkpoint c as the job the record names
// on this node at epoch (the TakeOver of that node, over the agents' API).
type AskTakeOver func(ctx context.Context, to string, c pidtable.Checkpoint, epoch uint64) (api.CheckpointRestoreResult, error)

// Handover kills p, a job running here, and has node to restore it from its
// newest checkpoint (see above). It returns the figures as a migration's:
// FrozenMS is the time the job ran nowhere.
func (s *Store) Handover(ctx context.Context, p pidtable.Proc, to string, ask AskTakeOver) (*api.MigrateStats, error) {
	start := time.Now()
	if p.Node != s.cfg.Node || p.State != pidtable.Running {
		return nil, errdefs.Conflictf("gpid %d is %s on %s, not running on %s", p.GPID, p.State, p.Node, s.cfg.Node)
	}
	cs, err := s.cfg.Table.Checkpoints(ctx, "")
	if err != nil {
		return nil, err
	}
	snap, err := s.cfg.Table.NodesSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	c, ok := Newest(cs, p.GPID, snap.Ready)
	if !ok {
		return nil, errdefs.Conflictf("gpid %d has no ready checkpoint held by a Ready node to restore from (ssi checkpoints); it keeps running on %s", p.GPID, s.cfg.Node)
	}
	j, err := s.cfg.Jobs.MarkBusy(p.GPID, "being handed over to "+to)
	if err != nil {
		return nil, err
	}
	defer s.cfg.Jobs.ClearBusy(j)
	// Here from now on for the phantom check, though its process is gone.
	s.cfg.Jobs.MarkOutgoing(p.GPID, "handover")
	log := s.log.With("gpid", p.GPID, "checkpoint", c.Name, "to", to)
	log.Info("handover: killing the job to restore its checkpoint elsewhere", "taken", c.Created)
	killed := time.Now()
	s.cfg.Jobs.Forget(j)
	select {
	case <-j.Done():
	default:
		// Forget gave up waiting: the copy may still run, so no other node
		// may restore it. The job stays recorded here; its next end is
		// recorded as usual.
		return nil, errdefs.Unavailablef("gpid %d did not die when killed for its handover to %s; it was not restored elsewhere", p.GPID, to)
	}
	res, err := ask(ctx, to, c, p.Epoch)
	if err != nil {
		s.lostInHandover(context.WithoutCancel(ctx), p, c, to, err)
		return nil, fmt.Errorf("gpid %d was stopped on %s to be restored from checkpoint %s on %s, which failed: %w", p.GPID, s.cfg.Node, c.Name, to, err)
	}
	total := time.Since(start)
	st := &api.MigrateStats{
		GPID: p.GPID, From: s.cfg.Node, To: to, Checkpoint: c.Name,
		FrozenMS:   ms(time.Since(killed)),
		ImageBytes: res.ImageBytes, TransferMS: res.TransferMS, RestoreMS: res.RestoreMS, TotalMS: ms(total),
		Note: fmt.Sprintf("restored from checkpoint %s, taken %s (%s before the move): the work since then is done again",
			c.Name, c.Created.Format(time.RFC3339), killed.Sub(c.Created).Round(time.Second)),
	}
	log.Info("handover: restored elsewhere", "ran_nowhere", time.Since(killed), "total", total)
	return st, nil
}

// lostInHandover records p lost when its target refused it before claiming
// it (a target that claimed it records the failure itself).
func (s *Store) lostInHandover(ctx context.Context, p pidtable.Proc, c pidtable.Checkpoint, to string, cause error) {
	_, _, err := s.cfg.Table.Transition(ctx, p.GPID, pidtable.End, s.cfg.Node, func(q *pidtable.Proc) error {
		if q.Node != s.cfg.Node || q.State != pidtable.Running || q.Epoch != p.Epoch {
			return pidtable.ErrChanged // claimed by the target: its to record
		}
		q.State = pidtable.Lost
		q.Error = fmt.Sprintf("stopped on %s to be restored from checkpoint %s on %s, which refused it (%v); restore it with ssi restore %s", s.cfg.Node, c.Name, to, cause, c.Name)
		return nil
	})
	if err != nil && !errors.Is(err, pidtable.ErrChanged) {
		s.log.Warn("handover: record the job lost", "gpid", p.GPID, "err", err)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

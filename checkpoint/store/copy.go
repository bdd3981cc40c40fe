package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/pidtable"
)

// CopySuffix ends the name of a copy of a checkpoint (Copy).
const CopySuffix = ".copy"

// Copy fetches checkpoint c from holder and keeps a copy of it here, under
// c's name with CopySuffix, recorded with CopyOf: a second node holds the
// job's state, so that its node's death does not take every checkpoint
// with it. Copying a copy is refused.
func (s *Store) Copy(ctx context.Context, c pidtable.Checkpoint, holder pidtable.Node) (pidtable.Checkpoint, error) {
	switch {
	case c.CopyOf != "":
		return pidtable.Checkpoint{}, errdefs.Invalidf("checkpoint %s is a copy of %s already; copy the original", c.Name, c.CopyOf)
	case c.Node == s.cfg.Node:
		return pidtable.Checkpoint{}, errdefs.Invalidf("checkpoint %s is held by node %s already: a copy belongs on another node", c.Name, c.Node)
	case c.State != pidtable.Ready:
		return pidtable.Checkpoint{}, errdefs.Conflictf("checkpoint %s is %s, not ready", c.Name, c.State)
	}
	cp := c
	cp.Name, cp.Node, cp.CopyOf, cp.State = c.Name+CopySuffix, s.cfg.Node, c.Name, pidtable.Saving
	if err := pidtable.ValidCheckpointName(cp.Name); err != nil {
		return pidtable.Checkpoint{}, errdefs.Invalidf("copy of %s: %v", c.Name, err)
	}
	crev, err := s.cfg.Table.CreateCheckpoint(ctx, cp)
	if errors.Is(err, pidtable.ErrExists) {
		return pidtable.Checkpoint{}, errdefs.Conflictf("checkpoint %s has a copy already (%s)", c.Name, cp.Name)
	}
	if err != nil {
		return pidtable.Checkpoint{}, err
	}
	dir := s.Dir(cp.Name)
	fail := func(cause error) (pidtable.Checkpoint, error) {
		ctx := context.WithoutCancel(ctx)
		_ = os.RemoveAll(dir)
		if err := s.cfg.Table.DeleteCheckpoint(ctx, cp.Name, crev); err != nil {
			s.log.Warn("remove record of failed copy", "checkpoint", cp.Name, "err", err)
		}
		return pidtable.Checkpoint{}, fmt.Errorf("copy checkpoint %s from %s: %w", c.Name, holder.Name, cause)
	}
	n, err := s.fetch(ctx, holder, c, filepath.Join(dir, "images"), dir)
	if err != nil {
		return fail(err)
	}
	cp.State, cp.Size = pidtable.Ready, n
	if _, err := s.cfg.Table.SwapCheckpoint(ctx, cp, crev); err != nil {
		return fail(err)
	}
	s.log.Info("copied checkpoint", "checkpoint", c.Name, "from", holder.Name, "bytes", n)
	return cp, nil
}

// PruneAuto removes the automatic checkpoints of gpid held here beyond the
// newest keep, originals and copies counted apart, and returns the names
// removed.
func (s *Store) PruneAuto(ctx context.Context, gpid uint64, keep int) ([]string, error) {
	all, err := s.cfg.Table.Checkpoints(ctx, s.cfg.Node)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, copies := range []bool{false, true} {
		var mine []pidtable.Checkpoint
		for _, c := range all {
			if c.Auto && c.GPID == gpid && (c.CopyOf != "") == copies && c.State == pidtable.Ready {
				mine = append(mine, c)
			}
		}
		slices.SortFunc(mine, func(a, b pidtable.Checkpoint) int { return b.Created.Compare(a.Created) })
		for _, c := range mine[min(keep, len(mine)):] {
			_, rev, err := s.cfg.Table.GetCheckpoint(ctx, c.Name)
			if err == nil {
				err = s.cfg.Table.DeleteCheckpoint(ctx, c.Name, rev)
			}
			if err != nil && !errors.Is(err, pidtable.ErrNotFound) {
				errs = append(errs, err)
				continue
			}
			if err := s.Remove(c.Name); err != nil {
				errs = append(errs, err)
			}
			removed = append(removed, c.Name)
		}
	}
	return removed, errors.Join(errs...)
}

// Newest returns the newest ready checkpoint of gpid among cs held by a node
// ok accepts (a live one), originals and copies alike.
func Newest(cs []pidtable.Checkpoint, gpid uint64, ok func(node string) bool) (pidtable.Checkpoint, bool) {
	var best pidtable.Checkpoint
	found := false
	for _, c := range cs {
		if c.GPID != gpid || c.State != pidtable.Ready || !ok(c.Node) {
			continue
		}
		if !found || cmp.Or(c.Created.Compare(best.Created), cmp.Compare(c.Name, best.Name)) > 0 {
			best, found = c, true
		}
	}
	return best, found
}

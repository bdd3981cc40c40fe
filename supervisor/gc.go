package supervisor

import (
	"context"
	"os"
	"strconv"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// GC forgets what this node no longer needs: the directories of jobs whose
// record names another node (they live elsewhere now, e.g. restored from a
// checkpoint on another node), and the records and directories of jobs that
// ended more than the retention ago. records returns the records that name
// this node.
func (s *Supervisor) GC(ctx context.Context, records func(context.Context) ([]pidtable.Proc, error)) {
	// Directories are listed before the records: a job directory is made only
	// after its record names this node, so a directory listed here whose
	// record does not (below) belongs to a job that lives elsewhere now.
	entries, _ := os.ReadDir(s.cfg.JobsDir)
	procs, err := records(ctx)
	if err != nil {
		return
	}
	ours := make(map[uint64]bool, len(procs))
	for _, p := range procs {
		ours[p.GPID] = true
	}
	for _, e := range entries {
		gpid, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil || ours[gpid] {
			continue
		}
		busy := s.Job(gpid) != nil || s.cfg.Incoming(gpid)
		// Young directories may be an incoming migration being prepared (its
		// record names the source until commit).
		if fi, err := e.Info(); busy || err != nil || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		s.RemoveDir(gpid)
		s.log.Debug("gc: removed the directory of a job owned elsewhere", "gpid", gpid)
	}
	cutoff := time.Now().Add(-s.cfg.Retention)
	for _, p := range procs {
		if !p.State.Ended() || p.Ended.After(cutoff) {
			continue
		}
		if err := s.cfg.Table.Delete(ctx, p.GPID, s.cfg.Node); err != nil {
			s.log.Warn("gc: delete record", "gpid", p.GPID, "err", err)
			continue
		}
		s.RemoveDir(p.GPID)
		s.log.Debug("gc: forgot ended job", "gpid", p.GPID)
	}
}

package supervisor

import (
	"os"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/shim"
)

// movedDirDelay is how long the directory of a job that moved away stays,
// for followers of its output to notice and reconnect to the new owner.
const movedDirDelay = 30 * time.Second

// Forget ends this node's part in a job that now runs elsewhere: mark its
// directory moved (so the shim reports no exit and followers reconnect to
// the new owner), kill the stopped copy, remove its cgroup, and drop the
// directory once followers had time to notice.
func (s *Supervisor) Forget(j *Job) {
	_ = shim.WriteJSON(j.dir, shim.MovedFile, migrate.MovedMark{Time: time.Now().UTC()})
	j.Kill()
	select {
	case <-j.done:
	case <-time.After(10 * time.Second):
		s.log.Warn("source shim of a migrated job did not exit", "gpid", j.gpid)
	}
	if j.cgroup != nil {
		if err := j.cgroup.Destroy(); err != nil {
			s.log.Warn("remove cgroup of migrated job", "gpid", j.gpid, "err", err)
		}
	}
	time.AfterFunc(movedDirDelay, func() { s.removeMovedDir(j.gpid) })
}

// Abandon undoes a launch that failed before the job's record said it runs
// here (a restore that failed half-way): its copy is marked moved, so that
// its end is not recorded as the job's exit, and killed; Abandon waits for
// its end (10 s at most).
func (s *Supervisor) Abandon(j *Job) {
	_ = shim.WriteJSON(j.dir, shim.MovedFile, migrate.MovedMark{Time: time.Now().UTC()})
	j.Kill()
	select {
	case <-j.done:
	case <-time.After(10 * time.Second):
	}
}

// removeMovedDir removes the directory a migrated job left here, unless the
// job has come back meanwhile (the balancer may move it back within the
// delay Forget waits): its directory then has the same path and belongs to
// the job running here, and removing it would lose the job's exit status and
// output (found by the balancer benchmark: a job moved back and forth was
// recorded lost). NewDir makes the new directory under dirMu, and a new
// directory has no moved file.
func (s *Supervisor) removeMovedDir(gpid uint64) {
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	back := s.Job(gpid) != nil || s.cfg.Incoming(gpid)
	dir := s.Dir(gpid)
	if _, err := os.Stat(filepath.Join(dir, shim.MovedFile)); back || err != nil {
		return
	}
	_ = os.RemoveAll(dir)
}

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// Recover returns the job of record p (a record of this node, not ended) as
// this node's directory and cgroup hold it after an agent restart. A job
// whose shim still runs is registered, alive, and must then be watched
// (Watch) once the caller has dealt with the state its record was left in;
// for one whose shim is gone, the caller records its end (Finish) or
// resolves it otherwise (Release).
func (s *Supervisor) Recover(p pidtable.Proc) (j *Job, alive bool) {
	j = &Job{gpid: p.GPID, dir: s.Dir(p.GPID), cpus: p.CPUs, memory: p.Memory, done: make(chan struct{})}
	j.cgroup, _ = isolate.OpenCgroup(isolate.CgroupPath(s.cfg.CgroupParent, s.cfg.Node, p.GPID))
	if shim.ReadJSON(j.dir, shim.StateFile, &j.state) != nil || !j.state.Shim.Alive() {
		return j, false
	}
	s.mu.Lock()
	s.jobs[p.GPID] = j
	s.mu.Unlock()
	return j, true
}

// Watch records the end of a job Recover or Register registered when its
// shim exits.
func (s *Supervisor) Watch(j *Job) { s.watch(j, nil) }

// Release marks a recovered job that has no process as done, for a caller
// that resolves it otherwise (a rollback that restores it anew).
func (s *Supervisor) Release(j *Job) { close(j.done) }

// MarkRunning records a recovered job that was still starting (its agent
// stopped between the launch and the record) as running.
func (s *Supervisor) MarkRunning(ctx context.Context, j *Job) error {
	_, _, err := s.cfg.Table.Transition(ctx, j.gpid, pidtable.Start, s.cfg.Node, func(p *pidtable.Proc) error {
		now := time.Now().UTC()
		p.State, p.PID, p.InitPID, p.Started, p.Arrived = pidtable.Running, j.state.MainPID, j.state.Init.PID, now, now
		return nil
	})
	return err
}

// RemoveUnknown removes the directories of jobs that no record of this node
// names (known lists those that one does): leftovers of aborted starts and
// of jobs whose records were removed while the agent was away.
func (s *Supervisor) RemoveUnknown(known map[uint64]bool) error {
	entries, err := os.ReadDir(s.cfg.JobsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("supervisor: list jobs: %w", err)
	}
	for _, e := range entries {
		gpid, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil || known[gpid] {
			continue
		}
		s.RemoveDir(gpid)
	}
	return nil
}

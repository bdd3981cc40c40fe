package agent

// What package migrate needs from the agent: its jobs (migrationHost, an
// adapter over the agent's job registry), and what the agent does to the jobs
// a migration moved away or interrupted.

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// newMigrator returns this agent's part in migrations, for the agent's life
// ctx; the store, the PKI and CRIU's probe must be set up.
func (a *Agent) newMigrator(ctx context.Context) *migrate.Migrator {
	h := migrationHost{a}
	return migrate.New(ctx, migrate.Config{
		Name: a.cfg.Name, Advertise: a.cfg.Advertise, DataDir: a.cfg.DataDir, CgroupParent: a.cfg.CgroupParent,
		CRIUPath: a.criuPath, CRIUErr: a.criuErr, ShimExe: a.cfg.ShimExe,
		Scheme: a.scheme(), Client: &http.Client{Transport: a.peer},
		Store: a.store, Jobs: h, CPU: h, Log: a.log,
	})
}

// The agent's jobs are migrate.Jobs.
func (j *job) GPID() uint64            { return j.gpid }
func (j *job) Dir() string             { return j.dir }
func (j *job) State() shim.State       { return j.state }
func (j *job) Cgroup() *isolate.Cgroup { return j.cgroup }
func (j *job) Done() <-chan struct{}   { return j.done }
func (j *job) Resources() (cpus float64, memory int64) {
	return j.cpus, j.memory
}

// migrationHost is the agent as package migrate sees it: migrate.Jobs and
// migrate.CPU.
type migrationHost struct{ a *Agent }

// asJob is the agent's job behind a migrate.Job (nil for nil).
func asJob(j migrate.Job) *job {
	jj, _ := j.(*job)
	return jj
}

func (h migrationHost) Job(gpid uint64) migrate.Job {
	if j := h.a.localJob(gpid); j != nil {
		return j
	}
	return nil
}

func (h migrationHost) MarkBusy(gpid uint64, what string) (migrate.Job, error) {
	j, err := h.a.markBusy(gpid, what)
	if err != nil {
		return nil, err
	}
	return j, nil
}

func (h migrationHost) ClearBusy(j migrate.Job) { h.a.clearBusy(asJob(j)) }

func (h migrationHost) MarkOutgoing(gpid uint64, id string) {
	h.a.mu.Lock()
	h.a.outgoing[gpid] = id
	h.a.mu.Unlock()
}

func (h migrationHost) HoldStdin(ctx context.Context, j migrate.Job) error {
	return h.a.holdStdin(ctx, asJob(j))
}

func (h migrationHost) ReleaseStdin(j migrate.Job) { h.a.releaseStdin(asJob(j)) }

func (h migrationHost) Adopt(r migrate.Restored) migrate.Job {
	j := &job{gpid: r.GPID, dir: r.Dir, state: r.State, cgroup: r.Cgroup, cpus: r.CPUs, memory: r.Memory, arrivedFrom: r.ArrivedFrom, done: make(chan struct{})}
	if old := asJob(r.Replaces); old != nil {
		j.token, j.busy = old.token, old.busy
	}
	h.a.mu.Lock()
	h.a.jobs[r.GPID] = j
	h.a.mu.Unlock()
	go h.a.watch(j, r.Cmd)
	return j
}

func (h migrationHost) Forget(j migrate.Job) { h.a.forgetMigrated(asJob(j)) }

// NewDir replaces the directory of an earlier stay of the job here; dirMu
// keeps removeMovedDir from removing the new one.
func (h migrationHost) NewDir(gpid uint64) (string, error) {
	a := h.a
	dir := a.jobDir(gpid)
	a.dirMu.Lock()
	defer a.dirMu.Unlock()
	a.removeJobDir(gpid)
	return dir, os.MkdirAll(dir, 0o700)
}

func (h migrationHost) Limits(cpus float64, memory int64) isolate.Limits {
	return h.a.limits(cpus, memory)
}

func (h migrationHost) StatusChanged()           { h.a.kickStatus() }
func (h migrationHost) Flags() ([]string, error) { return h.a.cpu.flags() }
func (h migrationHost) Check(src []string) error { return h.a.checkCPU(src) }

// killJob kills a job's init, and with it its PID namespace (unless it is
// gone already: its PID may have been reused).
func killJob(j *job) {
	if j.state.Init.Alive() {
		_ = unix.Kill(j.state.Init.PID, unix.SIGKILL)
	}
}

// resume continues a job left stopped by a dump or a restore.
func resume(j *job) { j.cgroup.Signal(unix.SIGCONT) }

// forgetMigrated ends this node's part in a job that now runs elsewhere: mark
// its directory moved (so the shim reports no exit and followers reconnect to
// the new owner), kill the stopped copy, remove its cgroup, and drop the
// directory once followers had time to notice.
func (a *Agent) forgetMigrated(j *job) {
	_ = shim.WriteJSON(j.dir, shim.MovedFile, migrate.MovedMark{Time: time.Now().UTC()})
	killJob(j)
	select {
	case <-j.done:
	case <-time.After(10 * time.Second):
		a.log.Warn("source shim of a migrated job did not exit", "gpid", j.gpid)
	}
	if j.cgroup != nil {
		if err := j.cgroup.Destroy(); err != nil {
			a.log.Warn("remove cgroup of migrated job", "gpid", j.gpid, "err", err)
		}
	}
	time.AfterFunc(30*time.Second, func() { a.removeMovedDir(j.gpid) })
}

// removeMovedDir removes the directory a migrated job left here, unless the
// job has come back meanwhile (the balancer may move it back within the 30 s
// forgetMigrated waits): its directory then has the same path and belongs to
// the job running here, and removing it would lose the job's exit status and
// output (found by the balancer benchmark: a job moved back and forth was
// recorded lost). prepare makes the new directory under dirMu, and a new
// directory has no moved file.
func (a *Agent) removeMovedDir(gpid uint64) {
	a.dirMu.Lock()
	defer a.dirMu.Unlock()
	a.mu.Lock()
	back := a.jobs[gpid] != nil
	a.mu.Unlock()
	if _, in := a.mig.IncomingSource(gpid); in {
		back = true
	}
	dir := a.jobDir(gpid)
	if _, err := os.Stat(filepath.Join(dir, shim.MovedFile)); back || err != nil {
		return
	}
	_ = os.RemoveAll(dir)
}

// probeCRIU finds, at agent start, whether this node can checkpoint jobs (checkpoint.Probe).
func (a *Agent) probeCRIU(ctx context.Context) {
	a.criuPath = checkpoint.DefaultCRIUPath
	info, err := checkpoint.Probe(ctx, a.criuPath)
	a.criuErr = err
	if err != nil {
		a.log.Warn("CRIU unusable: this node can run jobs but not migrate them", "err", err)
		return
	}
	a.log.Info("CRIU ready", "version", strconv.Itoa(info.Version))
}

// resumeHandedOver is reconcile's part for a job whose agent died between
// handing its locks over and the end of its migration: the record still
// names this node, so the migration did not commit; it is rolled back from
// the job's images (migrate.Migrator.RollbackOrphan). It reports whether dir
// held such a job.
func (a *Agent) resumeHandedOver(ctx context.Context, p pidtable.Proc, j *job) bool {
	var mark migrate.MovedMark
	if p.State != pidtable.Migrating || shim.ReadJSON(j.dir, shim.MovedFile, &mark) != nil || !mark.HandOver {
		return false
	}
	close(j.done) // its shim is gone
	a.mig.RollbackOrphan(ctx, p, j, &mark)
	return true
}

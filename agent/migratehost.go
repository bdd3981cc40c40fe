package agent

// What package migrate needs from the agent: its jobs (migrationHost, an
// adapter over the agent's job registry), and what the agent does to the jobs
// a migration moved away or interrupted.

import (
	"context"
	"net/http"
	"strconv"

	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
	"github.com/ssi-cluster/ssi/supervisor"
)

// newMigrator returns this agent's part in migrations, for the agent's life
// ctx; the store, the PKI and CRIU's probe must be set up.
func (a *Agent) newMigrator(ctx context.Context) *migrate.Migrator {
	h := migrationHost{a}
	return migrate.New(ctx, migrate.Config{
		Name: a.cfg.Name, Advertise: a.cfg.Advertise, Version: a.cfg.Version, DataDir: a.cfg.DataDir, CgroupParent: a.cfg.CgroupParent,
		CRIUPath: a.criuPath, CRIUErr: a.criuErr, ShimExe: a.cfg.ShimExe,
		Scheme: a.scheme(), Client: &http.Client{Transport: a.peer},
		Store: a.store, Jobs: h, CPU: h, Log: a.log,
	})
}

// migrationHost is the agent as package migrate sees it: its jobs (the
// supervisor's, as migrate.Jobs) and this machine's CPU (migrate.CPU).
type migrationHost struct{ a *Agent }

// migrationJob is j as a migrate.Job: nil for nil.
func migrationJob(j *supervisor.Job) migrate.Job {
	if j == nil {
		return nil
	}
	return j
}

// asJob is the supervisor's job behind a migrate.Job (nil for nil).
func asJob(j migrate.Job) *supervisor.Job {
	jj, _ := j.(*supervisor.Job)
	return jj
}

func (h migrationHost) Job(gpid uint64) migrate.Job { return migrationJob(h.a.sup.Job(gpid)) }

func (h migrationHost) MarkBusy(gpid uint64, what string) (migrate.Job, error) {
	j, err := h.a.sup.MarkBusy(gpid, what)
	return migrationJob(j), err
}

func (h migrationHost) ClearBusy(j migrate.Job)             { h.a.sup.ClearBusy(asJob(j)) }
func (h migrationHost) MarkOutgoing(gpid uint64, id string) { h.a.sup.MarkOutgoing(gpid, id) }
func (h migrationHost) HoldStdin(ctx context.Context, j migrate.Job) error {
	return h.a.sup.HoldStdin(ctx, asJob(j))
}
func (h migrationHost) ReleaseStdin(j migrate.Job) { h.a.sup.ReleaseStdin(asJob(j)) }

func (h migrationHost) Adopt(r migrate.Restored) migrate.Job {
	l := supervisor.Launched{
		GPID: r.GPID, Dir: r.Dir, State: r.State, Cgroup: r.Cgroup, CPUs: r.CPUs, Memory: r.Memory,
		ArrivedFrom: r.ArrivedFrom, Replaces: asJob(r.Replaces),
	}
	if r.Cmd != nil {
		l.Wait = r.Cmd.Wait
	}
	return h.a.sup.Add(l)
}

func (h migrationHost) Forget(j migrate.Job)                     { h.a.sup.Forget(asJob(j)) }
func (h migrationHost) NewDir(gpid uint64) (string, error)       { return h.a.sup.NewDir(gpid) }
func (h migrationHost) Limits(c float64, m int64) isolate.Limits { return h.a.sup.Limits(c, m) }
func (h migrationHost) StatusChanged()                           { h.a.kickStatus() }
func (h migrationHost) Flags() ([]string, error)                 { return h.a.cpu.flags() }
func (h migrationHost) Check(src []string) error                 { return h.a.checkCPU(src) }

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
func (a *Agent) resumeHandedOver(ctx context.Context, p pidtable.Proc, j *supervisor.Job) bool {
	var mark migrate.MovedMark
	if p.State != pidtable.Migrating || shim.ReadJSON(j.Dir(), shim.MovedFile, &mark) != nil || !mark.HandOver {
		return false
	}
	a.sup.Release(j) // its shim is gone
	a.mig.RollbackOrphan(ctx, p, j, &mark)
	return true
}

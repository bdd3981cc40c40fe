package migrate

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// fakeJob is a job whose init is this test process (alive).
type fakeJob struct {
	gpid uint64
	st   shim.State
	done chan struct{}
}

func (j *fakeJob) GPID() uint64                { return j.gpid }
func (j *fakeJob) Dir() string                 { return "" }
func (j *fakeJob) State() shim.State           { return j.st }
func (j *fakeJob) Cgroup() *isolate.Cgroup     { return nil }
func (j *fakeJob) Done() <-chan struct{}       { return j.done }
func (j *fakeJob) Resources() (float64, int64) { return 0, 0 }
func newFakeJob(t *testing.T, gpid uint64) *fakeJob {
	id, err := shim.Identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return &fakeJob{gpid: gpid, st: shim.State{Init: id, MainPID: id.PID}, done: make(chan struct{})}
}

// fakeJobs is an in-memory job registry that records what a migration asked.
type fakeJobs struct {
	jobs    map[uint64]Job
	busyErr error
	calls   []string
}

func (f *fakeJobs) Job(gpid uint64) Job {
	if j, ok := f.jobs[gpid]; ok {
		return j
	}
	return nil
}

func (f *fakeJobs) MarkBusy(gpid uint64, what string) (Job, error) {
	f.calls = append(f.calls, "busy "+what)
	if f.busyErr != nil {
		return nil, f.busyErr
	}
	return f.Job(gpid), nil
}

func (f *fakeJobs) ClearBusy(j Job) {
	if j == nil {
		f.calls = append(f.calls, "clear nil")
		return
	}
	f.calls = append(f.calls, "clear")
}
func (f *fakeJobs) MarkOutgoing(uint64, string)          { f.calls = append(f.calls, "outgoing") }
func (f *fakeJobs) HoldStdin(context.Context, Job) error { return nil }
func (f *fakeJobs) ReleaseStdin(Job)                     {}
func (f *fakeJobs) Adopt(Restored) Job                   { return nil }
func (f *fakeJobs) Forget(Job)                           {}
func (f *fakeJobs) NewDir(uint64) (string, error)        { return "", errors.New("no dirs here") }
func (f *fakeJobs) Limits(float64, int64) isolate.Limits { return isolate.Limits{} }
func (f *fakeJobs) StatusChanged()                       {}

// TestMigrateRefusedAtClaim: a job the registry refuses to reserve (it is
// being checkpointed) is not moved, nothing is written, and the refusal is
// the registry's, reported as the claim's.
func TestMigrateRefusedAtClaim(t *testing.T) {
	jobs := &fakeJobs{jobs: map[uint64]Job{7: newFakeJob(t, 7)}, busyErr: errdefs.Conflictf("gpid 7 is already being checkpointed; retry when that is done")}
	mg := New(context.Background(), Config{Name: "node1", Jobs: jobs})
	var events []api.MigrateEvent
	_, err := mg.Migrate(context.Background(), pidtable.Proc{GPID: 7, Node: "node1", State: pidtable.Running}, pidtable.Node{Name: "node2"}, false, func(ev api.MigrateEvent) { events = append(events, ev) })
	var me *Error
	if !errors.As(err, &me) || me.Phase != Claim || !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("err = %v, want a conflict at claim", err)
	}
	if want := "migration failed during claim: gpid 7 is already being checkpointed; retry when that is done"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if got := strings.Join(jobs.calls, ","); got != "busy being migrated to node2,clear nil" {
		t.Errorf("calls %q", got)
	}
	if len(events) != 1 || events[0].Phase != string(Claim) {
		t.Errorf("progress %+v, want the claim only", events)
	}
}

// TestCheckTarget: requests refused before anything is touched.
func TestCheckTarget(t *testing.T) {
	mg := New(context.Background(), Config{Name: "node1", Jobs: &fakeJobs{}, CRIUErr: errors.New("criu: no such file")})
	running := pidtable.Proc{GPID: 7, Node: "node1", State: pidtable.Running}
	exit := 3
	for _, tc := range []struct {
		name string
		p    pidtable.Proc
		node string
		want string
	}{
		{"no target", running, "", "no target node given"},
		{"same node", running, "node1", "gpid 7 already runs on node1"},
		{"migrating", pidtable.Proc{GPID: 7, Node: "node1", State: pidtable.Migrating, Migration: &pidtable.Migration{Target: "node3", Started: time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC)}}, "node2", "gpid 7 is already being migrated to node3 (since 10:00:00); wait for it to finish"},
		{"ended", pidtable.Proc{GPID: 7, Node: "node1", State: pidtable.Exited, ExitCode: &exit}, "node2", "gpid 7 has already exited with status 3"},
		{"tty", pidtable.Proc{GPID: 7, Node: "node1", State: pidtable.Running, TTY: true}, "node2", "gpid 7 has a terminal"},
		{"no criu", running, "node2", "node node1 cannot checkpoint jobs: criu: no such file"},
	} {
		_, err := mg.CheckTarget(context.Background(), tc.p, tc.node)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestResumeAndAbortWithoutMigration: a late resume of a job that runs here
// already is fine, an abort of nothing is fine; a caller that does not drive
// the migration is refused.
func TestResumeAndAbortWithoutMigration(t *testing.T) {
	jobs := &fakeJobs{jobs: map[uint64]Job{8: newFakeJob(t, 8)}}
	mg := New(context.Background(), Config{Name: "node2", Jobs: jobs})
	mg.ExpectIncoming(9, "m1", "node1")
	ctx := context.Background()
	if err := mg.ResumeIncoming(ctx, 8, "m0", "node1"); err != nil {
		t.Errorf("resume of a job resumed already: %v", err)
	}
	if err := mg.ResumeIncoming(ctx, 10, "m0", "node1"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("resume of nothing: %v", err)
	}
	if err := mg.AbortIncoming(10, "m0", "node1"); err != nil {
		t.Errorf("abort of nothing: %v", err)
	}
	if err := mg.AbortIncoming(9, "m1", "node3"); !errors.Is(err, errdefs.ErrForbidden) {
		t.Errorf("abort by another node: %v", err)
	}
	if from, ok := mg.IncomingSource(9); !ok || from != "node1" {
		t.Errorf("incoming source %q %v", from, ok)
	}
}

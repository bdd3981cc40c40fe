package supervisor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// The tests here stand a real child process in for a job's shim (its exit is
// what the supervisor watches) and write the files a shim writes by hand;
// the process table is a real, in-process etcd. Starting jobs through the
// real shim is e2e's part.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The embedded etcd's and its client's own goroutines.
		goleak.IgnoreTopFunction("go.etcd.io/etcd/client/v3.(*watchGRPCStream).run"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver.(*EtcdServer).Start"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/pkg/v3/schedule.(*fifo).run"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/embed.(*Etcd).serveClients"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/client/pkg/v3/logutil.(*MergeLogger).outputLoop"),
	)
}

type fixture struct {
	t     *testing.T
	store *pidtable.Store
	sup   *Supervisor
	stop  context.CancelFunc
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ec := etcdtest.Client(t)
	store := pidtable.New(ec)
	// node1 is registered and Ready: records are created only on such nodes.
	lease, err := ec.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.RegisterNode(t.Context(), pidtable.Node{Name: "node1", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := store.PublishStatus(t.Context(), "node1", pidtable.NodeStatus{Instance: "i"}, lease.ID); err != nil {
		t.Fatal(err)
	}
	life, stop := context.WithCancel(context.Background())
	sup := New(life, Config{
		Node: "node1", JobsDir: t.TempDir(), Table: store, Retention: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(func() { stop(); sup.Wait() })
	return &fixture{t: t, store: store, sup: sup, stop: stop}
}

// job makes a running record of node1 and a directory for it, with a child
// process as its shim and init; the returned func ends the "shim".
func (f *fixture) job(ctx context.Context) (pidtable.Proc, *exec.Cmd) {
	f.t.Helper()
	p, err := f.store.Create(ctx, pidtable.Proc{Node: "node1", User: "root", Argv: []string{"sleep"}})
	if err != nil {
		f.t.Fatal(err)
	}
	if p, _, err = f.store.Transition(ctx, p.GPID, pidtable.Start, "node1", func(q *pidtable.Proc) error {
		q.State, q.Started = pidtable.Running, time.Now().UTC()
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	id, err := shim.Identify(cmd.Process.Pid)
	if err != nil {
		f.t.Fatal(err)
	}
	dir := f.sup.Dir(p.GPID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := shim.WriteJSON(dir, shim.StateFile, shim.State{Shim: id, Init: id, MainPID: id.PID}); err != nil {
		f.t.Fatal(err)
	}
	return p, cmd
}

func (f *fixture) waitRecord(ctx context.Context, gpid uint64, ok func(pidtable.Proc) bool) pidtable.Proc {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, _, err := f.store.Get(ctx, gpid)
		if err == nil && ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("record of gpid %d: %+v (%v)", gpid, p, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExitRecorded: when a supervised job's shim exits, its end is recorded
// from its exit file: the code, or lost with the reason when the shim left
// none; the job leaves the registry and its Done closes.
func TestExitRecorded(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	for _, c := range []struct {
		name     string
		exit     *shim.Exit
		want     pidtable.State
		wantCode int
	}{
		{"exit 3", &shim.Exit{Code: 3}, pidtable.Exited, 3},
		{"no exit file", nil, pidtable.Lost, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, cmd := f.job(ctx)
			j, alive := f.sup.Recover(p)
			if !alive {
				t.Fatal("a job whose shim runs was not recovered alive")
			}
			f.sup.Watch(j)
			if c.exit != nil {
				if err := shim.WriteJSON(j.Dir(), shim.ExitFile, c.exit); err != nil {
					t.Fatal(err)
				}
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			select {
			case <-j.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("Done not closed after the shim exited")
			}
			got := f.waitRecord(ctx, p.GPID, func(q pidtable.Proc) bool { return q.State.Ended() })
			if got.State != c.want || (c.exit != nil && (got.ExitCode == nil || *got.ExitCode != c.wantCode)) {
				t.Fatalf("recorded %s code %v error %q, want %s %d", got.State, got.ExitCode, got.Error, c.want, c.wantCode)
			}
			if c.exit == nil && got.Error == "" {
				t.Error("a lost job was recorded without a reason")
			}
			if f.sup.Job(p.GPID) != nil || f.sup.Count() != 0 {
				t.Error("an ended job is still in the registry")
			}
		})
	}
}

// TestMovedCopyEndsLocally: the end of a copy marked moved (the job runs
// elsewhere now) is not recorded as the job's exit.
func TestMovedCopyEndsLocally(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	p, cmd := f.job(ctx)
	j, _ := f.sup.Recover(p)
	f.sup.Watch(j)
	if err := shim.WriteJSON(j.Dir(), shim.MovedFile, migrate.MovedMark{Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Kill()
	<-j.Done()
	got, _, err := f.store.Get(ctx, p.GPID)
	if err != nil || got.State != pidtable.Running {
		t.Fatalf("the record of a job that moved away changed: %s (%v)", got.State, err)
	}
}

// TestSignalRefusals: a signal is refused with the kind that tells the
// client what to do: busy (retry) while the job is held for a dump or its
// locks are handed over, conflict when it does not run here; a busy job
// cannot be reserved twice.
func TestSignalRefusals(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	p, _ := f.job(ctx)
	j, _ := f.sup.Recover(p)
	if err := f.sup.Signal(p.GPID+1000, syscall.SIGTERM); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("signal to a job not here: %v, want a conflict", err)
	}
	if _, err := f.sup.MarkBusy(p.GPID, "being migrated"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sup.MarkBusy(p.GPID, "being checkpointed"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second reservation: %v, want a conflict", err)
	}
	if err := f.sup.Signal(p.GPID, syscall.SIGTERM); !errors.Is(err, errdefs.ErrBusy) {
		t.Errorf("signal to a busy job: %v, want busy", err)
	}
	f.sup.ClearBusy(j)
	// Handed over: no process here for a while, but no phantom either.
	f.sup.MarkOutgoing(p.GPID+1, "m1")
	if err := f.sup.Signal(p.GPID+1, syscall.SIGTERM); !errors.Is(err, errdefs.ErrBusy) {
		t.Errorf("signal to a job whose locks are handed over: %v, want busy", err)
	}
	if !f.sup.Here(p.GPID+1) || !f.sup.Here(p.GPID) || f.sup.Here(p.GPID+2) {
		t.Error("Here does not list the outgoing and the supervised jobs only")
	}
	if err := f.sup.Signal(p.GPID, syscall.SIGCONT); err != nil {
		t.Errorf("signal to a running job: %v", err)
	}
}

// TestRecoverGone: a job whose shim is gone is not registered; Finish then
// records it lost (no exit file) or exited.
func TestRecoverGone(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	p, cmd := f.job(ctx)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := shim.WriteJSON(f.sup.Dir(p.GPID), shim.ExitFile, shim.Exit{Code: 0}); err != nil {
		t.Fatal(err)
	}
	j, alive := f.sup.Recover(p)
	if alive || f.sup.Job(p.GPID) != nil {
		t.Fatal("a job whose shim is gone was registered")
	}
	f.sup.Finish(ctx, j)
	if got := f.waitRecord(ctx, p.GPID, func(q pidtable.Proc) bool { return q.State.Ended() }); got.State != pidtable.Exited {
		t.Fatalf("recorded %s, want exited", got.State)
	}
}

// TestGC: records of jobs that ended before the retention are deleted with
// their directories; recent ends, running jobs and young directories of
// jobs owned elsewhere stay; old directories of jobs owned elsewhere go.
func TestGC(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	old, cmd := f.job(ctx)
	_ = cmd.Process.Kill()
	recent, cmd2 := f.job(ctx)
	_ = cmd2.Process.Kill()
	running, _ := f.job(ctx)
	end := func(gpid uint64, at time.Time) {
		if _, _, err := f.store.Transition(ctx, gpid, pidtable.End, "node1", func(q *pidtable.Proc) error {
			code := 0
			q.State, q.ExitCode, q.Ended = pidtable.Exited, &code, at
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	end(old.GPID, time.Now().Add(-2*time.Hour))
	end(recent.GPID, time.Now())
	elsewhereOld, elsewhereNew := uint64(900001), uint64(900002)
	for _, g := range []uint64{elsewhereOld, elsewhereNew} {
		if err := os.MkdirAll(f.sup.Dir(g), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(f.sup.Dir(elsewhereOld), past, past); err != nil {
		t.Fatal(err)
	}
	f.sup.GC(ctx, func(ctx context.Context) ([]pidtable.Proc, error) { return f.store.Procs(ctx, "node1") })
	if _, _, err := f.store.Get(ctx, old.GPID); !errors.Is(err, pidtable.ErrNotFound) {
		t.Errorf("record of a job ended 2 h ago: %v, want it gone", err)
	}
	for _, g := range []uint64{recent.GPID, running.GPID} {
		if _, _, err := f.store.Get(ctx, g); err != nil {
			t.Errorf("record of gpid %d: %v, want it kept", g, err)
		}
	}
	exists := func(g uint64) bool { _, err := os.Stat(f.sup.Dir(g)); return err == nil }
	if exists(old.GPID) || exists(elsewhereOld) {
		t.Error("the directories of a forgotten job and of an old one owned elsewhere stay")
	}
	if !exists(recent.GPID) || !exists(running.GPID) || !exists(elsewhereNew) {
		t.Error("a directory that must stay was removed")
	}
}

// TestWatchersStopWithLife: the supervisor's goroutines end when its life
// does, while the jobs run on (the next agent adopts them).
func TestWatchersStopWithLife(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	p, cmd := f.job(ctx)
	j, _ := f.sup.Recover(p)
	f.sup.Watch(j)
	f.stop()
	done := make(chan struct{})
	go func() { f.sup.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a watcher outlived the supervisor's life")
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the job's process did not survive: %v", err)
	}
	if got, _, _ := f.store.Get(ctx, p.GPID); got.State != pidtable.Running {
		t.Fatalf("record %s after the supervisor stopped, want running", got.State)
	}
}

// TestRemoveUnknown: directories that no record names are removed at
// reconcile; known ones stay.
func TestRemoveUnknown(t *testing.T) {
	f := newFixture(t)
	for _, g := range []uint64{1, 2} {
		if err := os.MkdirAll(f.sup.Dir(g), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.sup.cfg.JobsDir, "notajob"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.sup.RemoveUnknown(map[uint64]bool{1: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.sup.Dir(1)); err != nil {
		t.Error("a known job's directory was removed")
	}
	if _, err := os.Stat(f.sup.Dir(2)); err == nil {
		t.Error("an unknown job's directory stays")
	}
}

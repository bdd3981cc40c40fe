package pidtable

import (
	"context"
	"errors"
	"testing"
)

// legal lists, independently of the table in lifecycle.go, every change of
// state each transition may make. Everything else must be refused.
var legal = map[Transition][][2]State{
	Edit: {
		{Starting, Starting}, {Running, Running}, {Migrating, Migrating}, {Checkpointing, Checkpointing},
		{Exited, Exited}, {Lost, Lost}, {Checkpointed, Checkpointed},
	},
	Start: {{Starting, Running}},
	End: {
		{Starting, Exited}, {Starting, Lost}, {Running, Exited}, {Running, Lost},
		{Migrating, Exited}, {Migrating, Lost}, {Checkpointing, Exited}, {Checkpointing, Lost},
	},
	MigrationClaim:    {{Running, Migrating}},
	MigrationRelease:  {{Migrating, Running}},
	MigrationCommit:   {{Migrating, Running}},
	CheckpointClaim:   {{Running, Checkpointing}},
	CheckpointRelease: {{Checkpointing, Running}},
	CheckpointStop:    {{Checkpointing, Checkpointed}},
	RestoreClaim:      {{Exited, Starting}, {Lost, Starting}, {Checkpointed, Starting}},
	RestoreUndo:       {{Starting, Exited}, {Starting, Lost}, {Starting, Checkpointed}},
	Abandon:           {{Starting, Lost}, {Running, Lost}, {Migrating, Lost}, {Checkpointing, Lost}},
	FailoverClaim:     {{Starting, Starting}, {Running, Starting}, {Migrating, Starting}, {Checkpointing, Starting}},
	HandoverClaim:     {{Running, Starting}},
}

// change builds the old and new records of t from one state to another, made
// the way the transition wants (owner, target, epoch), so that only the pair
// of states decides.
func change(t Transition, from, to State) (old, p Proc, by string) {
	old = Proc{GPID: 7, Node: "n1", Epoch: 3, State: from, RestoredFrom: "ck"}
	if from == Migrating {
		old.Migration = &Migration{ID: "m", Target: "n2"}
	}
	p = old
	p.State = to
	if to == Migrating && p.Migration == nil {
		p.Migration = &Migration{ID: "m", Target: "n2"}
	}
	by = "n1"
	switch t {
	case MigrationCommit:
		p.Node, p.Epoch = "n2", old.Epoch+1
	case RestoreClaim, FailoverClaim, HandoverClaim:
		p.Node, p.Epoch, by = "n3", old.Epoch+1, "n3"
	case RestoreUndo:
		p.Epoch = old.Epoch + 1
	}
	return old, p, by
}

// TestLifecycleTable walks every transition over every pair of states.
func TestLifecycleTable(t *testing.T) {
	n := 0
	for tr := range lifecycle {
		ok := map[[2]State]bool{}
		for _, pair := range legal[tr] {
			ok[pair] = true
		}
		for _, from := range States {
			for _, to := range States {
				old, p, by := change(tr, from, to)
				err := checkTransition(tr, by, old, &p)
				if want := ok[[2]State{from, to}]; want != (err == nil) {
					t.Errorf("%s %s -> %s: err=%v, want allowed=%v", tr, from, to, err, want)
				}
				if err != nil && !errors.Is(err, ErrIllegalTransition) {
					t.Errorf("%s %s -> %s: %v is not an ErrIllegalTransition", tr, from, to, err)
				}
				n++
			}
		}
	}
	if n != len(legal)*len(States)*len(States) || len(legal) != len(lifecycle) {
		t.Fatalf("walked %d changes of %d transitions; the test knows %d", n, len(lifecycle), len(legal))
	}
}

// TestEndedIsAbsorbing: from an ended state, no transition but RestoreClaim
// (a new run from a checkpoint) leads to a state that is not ended.
func TestEndedIsAbsorbing(t *testing.T) {
	for tr := range lifecycle {
		for _, from := range ended {
			for _, to := range States {
				old, p, by := change(tr, from, to)
				if checkTransition(tr, by, old, &p) == nil && !to.Ended() && tr != RestoreClaim {
					t.Errorf("%s turns an %s job into %s", tr, from, to)
				}
			}
		}
	}
}

func TestTransitionActors(t *testing.T) {
	for _, c := range []struct {
		name string
		tr   Transition
		from State
		to   State
		edit func(old, p *Proc, by *string)
	}{
		{"a non-owner ends a job", End, Running, Exited, func(_, _ *Proc, by *string) { *by = "n2" }},
		{"a non-owner claims a migration", MigrationClaim, Running, Migrating, func(_, _ *Proc, by *string) { *by = "n2" }},
		{"the target commits", MigrationCommit, Migrating, Running, func(_, _ *Proc, by *string) { *by = "n2" }},
		{"a commit to another node", MigrationCommit, Migrating, Running, func(_, p *Proc, _ *string) { p.Node = "n3" }},
		{"a commit keeps the epoch", MigrationCommit, Migrating, Running, func(old, p *Proc, _ *string) { p.Epoch = old.Epoch }},
		{"a release moves the job", MigrationRelease, Migrating, Running, func(_, p *Proc, _ *string) { p.Node, p.Epoch = "n2", p.Epoch+1 }},
		{"an edit changes the epoch", Edit, Running, Running, func(_, p *Proc, _ *string) { p.Epoch++ }},
		{"an edit changes the owner", Edit, Running, Running, func(_, p *Proc, _ *string) { p.Node = "n2" }},
		{"a restore claims for another node", RestoreClaim, Exited, Starting, func(_, _ *Proc, by *string) { *by = "n1" }},
		{"a restore names no checkpoint", RestoreClaim, Exited, Starting, func(_, p *Proc, _ *string) { p.RestoredFrom = "" }},
		{"a migrating record without its migration", MigrationClaim, Running, Migrating, func(_, p *Proc, _ *string) { p.Migration = nil }},
		{"the gpid changes", Edit, Running, Running, func(_, p *Proc, _ *string) { p.GPID++ }},
		{"an undo of a run not restored", RestoreUndo, Starting, Exited, func(old, _ *Proc, _ *string) { old.RestoredFrom = "" }},
		{"an undo keeps the epoch", RestoreUndo, Starting, Exited, func(old, p *Proc, _ *string) { p.Epoch = old.Epoch }},
	} {
		old, p, by := change(c.tr, c.from, c.to)
		c.edit(&old, &p, &by)
		if err := checkTransition(c.tr, by, old, &p); !errors.Is(err, ErrIllegalTransition) {
			t.Errorf("%s: %v, want refused", c.name, err)
		}
	}
}

// TestEndDuringMigration is the race of issue 16 against a real etcd: the
// job ends while it migrates (End clears the migration), so the rollback's
// release and a late commit are both refused and the exit status stays.
func TestEndDuringMigration(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	makeReady(t, s, "n1")
	p, _ := s.Create(ctx, Proc{Node: "n1", State: Running})
	rev := claimMigration(t, s, p.GPID)
	code := 137
	if _, _, err := s.Transition(ctx, p.GPID, End, "n1", func(p *Proc) error { p.State, p.ExitCode = Exited, &code; return nil }); err != nil {
		t.Fatal(err)
	}
	release := func(p *Proc) error { p.State = Running; return nil }
	if _, _, err := s.Transition(ctx, p.GPID, MigrationRelease, "n1", release); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("release over an ended job: %v", err)
	}
	commit := func(p *Proc) error { p.State, p.Node, p.Epoch = Running, "n2", p.Epoch+1; return nil }
	if _, _, err := s.TransitionAt(ctx, p.GPID, rev, MigrationCommit, "n1", commit); !errors.Is(err, ErrChanged) {
		t.Fatalf("commit after the end: %v", err)
	}
	if _, err := s.Update(ctx, p.GPID, func(p *Proc) error { p.State = Running; return nil }); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("an edit revived the job: %v", err)
	}
	got, _, _ := s.Get(ctx, p.GPID)
	if got.State != Exited || got.ExitCode == nil || *got.ExitCode != 137 || got.Migration != nil || got.Ended.IsZero() {
		t.Fatalf("record after the race: %+v", got)
	}
}

package pidtable

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Transition names a change of a record. Every write of a job's record after
// its creation is one of these, and the store checks it against the lifecycle
// table below before the compare-and-swap: a change the table does not allow
// is refused with a *TransitionError (errors.Is ErrIllegalTransition).
//
//	transition         from                                   to                          made by
//	Edit               any                                    the same state              anyone (fields only; never state, node or epoch)
//	Start              starting                               running                     the owner
//	End                starting running migrating             exited lost                 the owner
//	                   checkpointing
//	MigrationClaim     running                                migrating                   the owner (the source)
//	MigrationRelease   migrating                              running                     the owner (a rollback)
//	MigrationCommit    migrating                              running, node := target,    the owner (the source)
//	                                                          epoch+1
//	CheckpointClaim    running                                checkpointing               the owner
//	CheckpointRelease  checkpointing                          running                     the owner
//	CheckpointStop     checkpointing                          checkpointed                the owner
//	RestoreClaim       exited lost checkpointed               starting, node := restorer, the restore of a checkpoint
//	                                                          epoch+1                     (RestoredFrom names it)
//	RestoreUndo        starting (restored from a checkpoint)  exited lost checkpointed,   the owner (a failed restore,
//	                                                          node and epoch+1            putting the ended run back)
//	Abandon            starting running migrating             lost                        anyone, while the owner is NotReady
//	                   checkpointing                                                      (ssi node rm: Store.Abandon checks it)
//	FailoverClaim      starting running migrating             starting, node := restorer, the restore of the job's newest
//	                   checkpointing                          epoch+1                     checkpoint, while the owner is
//	                                                                                      NotReady (Store.FailoverClaim)
//	HandoverClaim      running                                starting, node := restorer, the restore of a checkpoint asked
//	                                                          epoch+1                     by the owner, which killed its copy
//	                                                                                      (Store.HandoverClaim)
//
// The ended states (exited, lost, checkpointed) are absorbing for the run
// that reached them: no transition turns an ended run into a running one. The
// one way out of an ended state is RestoreClaim, `ssi restore` of a
// checkpoint, which starts a new run of the job under the same gpid.
type Transition string

// The transitions of the lifecycle table.
const (
	Edit              Transition = "edit"
	Start             Transition = "start"
	End               Transition = "end"
	MigrationClaim    Transition = "migration-claim"
	MigrationRelease  Transition = "migration-release"
	MigrationCommit   Transition = "migration-commit"
	CheckpointClaim   Transition = "checkpoint-claim"
	CheckpointRelease Transition = "checkpoint-release"
	CheckpointStop    Transition = "checkpoint-stop"
	RestoreClaim      Transition = "restore-claim"
	RestoreUndo       Transition = "restore-undo"
	// Abandon: the owner's node is gone for good (ssi node rm); its jobs
	// that run nowhere are recorded lost by the removing agent. The store
	// makes it only while the owner has no status key (Store.Abandon).
	Abandon Transition = "abandon"
	// FailoverClaim: the owner's node died (its lease is gone) and the job
	// is restored elsewhere from its newest checkpoint under the same gpid;
	// the store makes it only while the owner has no status key
	// (Store.FailoverClaim), and the owner's agent has fenced its copy by
	// then (package failover).
	FailoverClaim Transition = "failover-claim"
	// HandoverClaim: the owner, alive, killed its copy of the job and asked
	// another node to restore it from a checkpoint under the same gpid
	// (ssi migrate --from-checkpoint, a drain's fallback for a job that
	// cannot move live). The restorer makes it on the owner's request
	// (Store.HandoverClaim), so the record goes from running to starting
	// elsewhere and an `ssi wait` never sees the job end.
	HandoverClaim Transition = "handover-claim"
)

// States lists every state, in lifecycle order.
var States = []State{Starting, Running, Migrating, Checkpointing, Exited, Lost, Checkpointed}

// rule is one row of the lifecycle table.
type rule struct {
	from, to []State
	// byTarget: the node making the change becomes the owner (RestoreClaim);
	// otherwise it must be the owner already (unless anyone may: Edit).
	byTarget, byAnyone bool
	// nodeChange: the owner may change, and the epoch grows by one.
	nodeChange bool
	// restored: only for a run restored from a checkpoint (RestoredFrom set).
	restored bool
}

var ended = []State{Exited, Lost, Checkpointed}

// lifecycle is the table. Kept as data so that its test can walk every pair.
var lifecycle = map[Transition]rule{
	Edit:              {from: States, byAnyone: true},
	Start:             {from: []State{Starting}, to: []State{Running}},
	End:               {from: []State{Starting, Running, Migrating, Checkpointing}, to: []State{Exited, Lost}},
	MigrationClaim:    {from: []State{Running}, to: []State{Migrating}},
	MigrationRelease:  {from: []State{Migrating}, to: []State{Running}},
	MigrationCommit:   {from: []State{Migrating}, to: []State{Running}, nodeChange: true},
	CheckpointClaim:   {from: []State{Running}, to: []State{Checkpointing}},
	CheckpointRelease: {from: []State{Checkpointing}, to: []State{Running}},
	CheckpointStop:    {from: []State{Checkpointing}, to: []State{Checkpointed}},
	RestoreClaim:      {from: ended, to: []State{Starting}, byTarget: true, nodeChange: true},
	RestoreUndo:       {from: []State{Starting}, to: ended, nodeChange: true, restored: true},
	Abandon:           {from: []State{Starting, Running, Migrating, Checkpointing}, to: []State{Lost}, byAnyone: true},
	FailoverClaim:     {from: []State{Starting, Running, Migrating, Checkpointing}, to: []State{Starting}, byTarget: true, nodeChange: true},
	HandoverClaim:     {from: []State{Running}, to: []State{Starting}, byTarget: true, nodeChange: true},
}

// ErrIllegalTransition is wrapped by every *TransitionError.
var ErrIllegalTransition = errors.New("pidtable: illegal transition")

// TransitionError is a change the lifecycle table refuses.
type TransitionError struct {
	GPID       uint64
	Transition Transition
	From, To   State
	By         string // the node that tried it
	Reason     string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("pidtable: gpid %d: %s from %s to %s by node %s refused: %s", e.GPID, e.Transition, e.From, e.To, e.By, e.Reason)
}

func (e *TransitionError) Unwrap() error { return ErrIllegalTransition }

// Allowed reports whether the table allows t from one state to another,
// ignoring who makes it and the other fields.
func Allowed(t Transition, from, to State) bool {
	r, ok := lifecycle[t]
	if !ok || !slices.Contains(r.from, from) {
		return false
	}
	if r.to == nil {
		return to == from
	}
	return slices.Contains(r.to, to)
}

// checkTransition reports whether node by may change old into p by t, and
// normalizes p: a record that is not migrating carries no migration, and an
// ended record says when it ended.
func checkTransition(t Transition, by string, old Proc, p *Proc) error {
	refuse := func(format string, args ...any) error {
		return &TransitionError{GPID: old.GPID, Transition: t, From: old.State, To: p.State, By: by, Reason: fmt.Sprintf(format, args...)}
	}
	r, ok := lifecycle[t]
	if !ok {
		return refuse("no such transition")
	}
	if p.GPID != old.GPID {
		return refuse("the gpid changed to %d", p.GPID)
	}
	if !Allowed(t, old.State, p.State) {
		if old.State.Ended() && !p.State.Ended() {
			return refuse("the job has already %s; an ended job never runs again (only ssi restore of a checkpoint starts a new run)", old.State)
		}
		return refuse("the lifecycle table does not allow it")
	}
	switch {
	case r.byAnyone:
	case r.byTarget:
		if p.Node != by {
			return refuse("the restoring node must become the owner (record names %s)", p.Node)
		}
		if p.RestoredFrom == "" {
			return refuse("a restore must name its checkpoint")
		}
	case old.Node != by:
		return refuse("only the owner (%s) may", old.Node)
	}
	switch {
	case r.nodeChange && t == MigrationCommit:
		if old.Migration == nil || p.Node != old.Migration.Target {
			return refuse("a commit must hand the job to its migration's target")
		}
		fallthrough
	case r.nodeChange:
		if p.Epoch != old.Epoch+1 {
			return refuse("a change of owner must increment the epoch (%d to %d)", old.Epoch, p.Epoch)
		}
	case p.Node != old.Node:
		return refuse("the owner may not change (%s to %s)", old.Node, p.Node)
	case p.Epoch != old.Epoch:
		return refuse("the epoch may not change (%d to %d)", old.Epoch, p.Epoch)
	}
	if r.restored && old.RestoredFrom == "" {
		return refuse("only a run restored from a checkpoint can be undone")
	}
	if p.State == Migrating && p.Migration == nil {
		return refuse("a migrating record must name its migration")
	}
	if p.State != Migrating {
		p.Migration = nil
	}
	if p.State.Ended() && !old.State.Ended() && p.Ended.IsZero() {
		p.Ended = time.Now().UTC()
	}
	return nil
}

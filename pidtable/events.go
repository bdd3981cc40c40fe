package pidtable

// The cluster's event log, /ssi/events/<id>: what happened to jobs, nodes and
// the elected controllers, oldest first. The events of a job's lifecycle
// (run, exit, lost, migrate started and rolledback, checkpoint, restore)
// are written by the store itself, in the same transaction as the record
// change that causes them (lifecycleEvent): one more put in a transaction
// that is sent anyway, not one more request. The agents write the others
// (agent/events.go). Every event is on a lease of about EventTTL, shared by
// the events a store writes in a few minutes; the elected housekeeper trims
// the log to the newest MaxEvents (TrimEvents).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const eventsPrefix = prefix + "events/"

// Retention of the event log: an event lives between EventTTL and
// EventTTL+EventTTL/24 (its lease is shared by a bucket of a 24th of the
// TTL), and the elected housekeeper keeps at most MaxEvents, the newest.
const (
	EventTTL  = time.Hour
	MaxEvents = 20000
)

// Event kinds. The names are a stable interface (ssi events -o json, the
// dashboard): a kind is never renamed, and new ones are added.
const (
	EventMove     = "move"     // the balancer started a migration
	EventMoved    = "moved"    // ... which succeeded
	EventFailed   = "failed"   // ... which failed (the job runs on its source)
	EventRejected = "rejected" // considered and not moved, and why
	EventLeader   = "leader"   // an agent became the leader of an elected controller (Role)
	EventConfig   = "config"   // the balancer was switched on or off, or retuned
	EventLost     = "lost"     // a record said a job runs where no process of it exists (agent/heal.go), or its node was removed
	EventFailover = "failover" // a job of a dead node restored elsewhere from its newest checkpoint, or why not; a job fenced by its node
	EventDrain    = "drain"    // a node's drain started, ended or was cancelled; a node was cordoned, uncordoned, relabelled or removed
	// Security events (package access: audit.go, revoke.go): Caller is who acted.
	EventAdmin   = "admin"   // an admin action: user add/rotate/revoke, token create/revoke
	EventRefused = "refused" // requests refused (401/403), Count of them from Caller

	// A job's lifecycle.
	EventRun        = "run"        // the job's process runs (Command, To: its node)
	EventExit       = "exit"       // the job exited (ExitCode; Signal when a signal ended it)
	EventKill       = "kill"       // a signal was sent to the job (Signal, Caller)
	EventMigrate    = "migrate"    // a migration of the job, any cause (Phase: started, done, failed, rolledback)
	EventCheckpoint = "checkpoint" // a checkpoint of the job was saved (Checkpoint, Bytes)
	EventRestore    = "restore"    // the job runs again, restored from a checkpoint (Checkpoint, To)
	EventService    = "service"    // a service changed, or its controller started or stopped a replica
	EventTimer      = "timer"      // a timer's tick was claimed, fired, skipped, missed or caught up; a timer created, updated or removed
	// Nodes (From is the node): Phase joined, ready, notready or left.
	EventNode = "node"
)

// EventKinds lists every kind, for validation and help.
var EventKinds = []string{
	EventRun, EventExit, EventKill, EventLost, EventMigrate, EventCheckpoint, EventRestore,
	EventMove, EventMoved, EventFailed, EventRejected, EventFailover, EventDrain,
	EventNode, EventLeader, EventService, EventTimer, EventConfig, EventAdmin, EventRefused,
}

// Phases of migrate and node events.
const (
	PhaseStarted    = "started"
	PhaseDone       = "done"
	PhaseFailed     = "failed"
	PhaseRolledBack = "rolledback"

	PhaseJoined   = "joined"
	PhaseReady    = "ready"
	PhaseNotReady = "notready"
	PhaseLeft     = "left"
)

// Event is one entry of the cluster's event log, /ssi/events/<id>. Its JSON
// is a stable format (docs/CLI.md, ssi events -o json): fields are added,
// never renamed; an empty field is left out.
type Event struct {
	// ID is the event's key suffix: sortable by time.
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Node is the agent that wrote the event.
	Node string `json:"node"`
	GPID uint64 `json:"gpid,omitempty"`
	// User owns the job the event is about (GPID): a user sees the events
	// of their own jobs only.
	User   string `json:"user,omitempty"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Phase refines the kind: a migration's started, done, failed or
	// rolledback; a node's joined, ready, notready or left.
	Phase string `json:"phase,omitempty"`
	// Command is a run's command line, cut to 200 bytes.
	Command string `json:"command,omitempty"`
	// ExitCode is an exit's status (128+N when signal N ended the job);
	// Signal names the signal of an exit by signal, or of a kill.
	ExitCode *int   `json:"exit_code,omitempty"`
	Signal   string `json:"signal,omitempty"`
	// Checkpoint names the checkpoint of a checkpoint or restore event.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Role names the controller of a leader event: balancer, service,
	// drain, failover or events.
	Role string `json:"role,omitempty"`
	// Gain and Cost are the cost model's figures for a move.
	Gain time.Duration `json:"gain,omitempty"`
	Cost time.Duration `json:"cost,omitempty"`
	// Took is how long a finished move took in all; Frozen how long the job
	// was stopped; Bytes the images shipped (or a checkpoint's size).
	Took   time.Duration `json:"took,omitempty"`
	Frozen time.Duration `json:"frozen,omitempty"`
	Bytes  int64         `json:"bytes,omitempty"`
	// Phases are a finished migration's phase timings: dump, transfer,
	// restore (nanoseconds, like every duration here).
	Phases map[string]time.Duration `json:"phases,omitempty"`
	// Caller is who made the request of an admin, refused or kill event
	// ("admin root", "user alice", "node node2", "anonymous 10.0.0.9"); only
	// admins and the caller see admin and refused events (User is then the
	// caller's user name).
	Caller string `json:"caller,omitempty"`
	// Count is how many refused requests the event stands for.
	Count int `json:"count,omitempty"`
}

// About reports whether the event concerns node: written by it, or naming
// it as From or To.
func (ev Event) About(node string) bool {
	return ev.Node == node || ev.From == node || ev.To == node
}

// EventFilter selects events; a zero field selects all.
type EventFilter struct {
	GPID  uint64
	Node  string   // Event.About
	Kinds []string // any of these
}

// Match reports whether ev passes f.
func (f EventFilter) Match(ev Event) bool {
	return (f.GPID == 0 || ev.GPID == f.GPID) &&
		(f.Node == "" || ev.About(f.Node)) &&
		(len(f.Kinds) == 0 || slices.Contains(f.Kinds, ev.Kind))
}

// ParseEventKinds splits comma lists of kinds and checks each; an unknown
// kind's error names the valid ones.
func ParseEventKinds(lists []string) ([]string, error) {
	var out []string
	for _, l := range lists {
		for k := range strings.SplitSeq(l, ",") {
			k = strings.TrimSpace(k)
			if k == "" {
				continue
			}
			if !slices.Contains(EventKinds, k) {
				return nil, fmt.Errorf("unknown event type %q: want one of %s", k, strings.Join(EventKinds, ", "))
			}
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out, nil
}

// eventKey orders events by time; node and seq keep two writers apart.
func eventKey(ev Event) string { return eventsPrefix + ev.ID }

// NewEventID returns a sortable event ID for an event at t written by node.
func NewEventID(t time.Time, node string, seq uint64) string {
	return fmt.Sprintf("%020d-%s-%06d", t.UnixNano(), node, seq%1000000)
}

// eventWriter is the store's side of the log: the leases its lifecycle
// events are written on (a bucket of EventTTL/24 shares one) and their
// sequence numbers.
type eventWriter struct {
	// off: no lifecycle events (set by the benchmark that measures their cost).
	off    bool
	leases historyLeases
	seq    atomic.Uint64
}

// eventOp returns the put of ev (ID and time set here) on the current event
// lease, fresh forces a new lease. ok is false when no lease could be had:
// the record is then written without its event rather than not at all.
func (s *Store) eventOp(ctx context.Context, ev Event, fresh bool) (op clientv3.Op, ok bool) {
	now := time.Now().UTC()
	lease, err := s.events.leases.lease(ctx, s.c, now, fresh)
	if err != nil {
		return op, false
	}
	if ev.Time.IsZero() {
		ev.Time = now
	}
	ev.ID = NewEventID(ev.Time, ev.Node, s.events.seq.Add(1))
	val, err := json.Marshal(ev)
	if err != nil {
		return op, false
	}
	return clientv3.OpPut(eventKey(ev), string(val), clientv3.WithLease(lease)), true
}

// commitWithEvent commits a transaction guarded by cmps that makes ops, with
// ev's put added when ev is not nil. A lease gone early (ErrLeaseNotFound:
// nothing was applied) is replaced once; without a lease the ops are
// committed alone.
func (s *Store) commitWithEvent(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op, ev *Event) (*clientv3.TxnResponse, error) {
	if ev == nil || s.events.off {
		return s.c.Txn(ctx).If(cmps...).Then(ops...).Commit()
	}
	for fresh := false; ; fresh = true {
		all := ops
		if op, ok := s.eventOp(ctx, *ev, fresh); ok {
			all = append(slices.Clip(ops), op)
		}
		tr, err := s.c.Txn(ctx).If(cmps...).Then(all...).Commit()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && !fresh {
			continue
		}
		return tr, err
	}
}

// lifecycleEvent is the event a transition of a job's record from old to p,
// made by node by, stands for; ok false when it stands for none (an edit, a
// claim by a checkpoint). A migration's commit is none: the source agent
// writes its done event with the migration's figures once it has them
// (agent/eventpoints.go).
func lifecycleEvent(t Transition, by string, old, p Proc) (ev Event, ok bool) {
	ev = Event{Node: by, GPID: p.GPID, User: p.User}
	switch t {
	case Start:
		if p.State != Running {
			return ev, false
		}
		ev.To = p.Node
		if p.RestoredFrom != "" {
			ev.Kind, ev.Checkpoint = EventRestore, p.RestoredFrom
			return ev, true
		}
		ev.Kind, ev.Command = EventRun, commandLine(p.Argv)
		return ev, true
	case End:
		switch p.State {
		case Exited:
			ev.Kind, ev.ExitCode, ev.From = EventExit, p.ExitCode, p.Node
			if p.ExitCode != nil && *p.ExitCode > 128 && *p.ExitCode < 128+65 {
				ev.Signal = SignalName(*p.ExitCode - 128)
			}
			ev.Reason = p.DescribeEnd()
			return ev, true
		case Lost:
			ev.Kind, ev.From, ev.Reason = EventLost, p.Node, p.Error
			return ev, true
		}
	case MigrationClaim:
		ev.Kind, ev.Phase, ev.From = EventMigrate, PhaseStarted, old.Node
		if p.Migration != nil {
			ev.To = p.Migration.Target
		}
		return ev, true
	case MigrationRelease:
		ev.Kind, ev.Phase, ev.From, ev.Reason = EventMigrate, PhaseRolledBack, p.Node, p.MigrationError
		if old.Migration != nil {
			ev.To = old.Migration.Target
		}
		return ev, true
	}
	return ev, false
}

// commandLine is argv as one line, cut to 200 bytes.
func commandLine(argv []string) string {
	s := strings.Join(argv, " ")
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}

// signalNames are the Linux signals by number.
var signalNames = [...]string{1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 5: "TRAP", 6: "ABRT", 7: "BUS", 8: "FPE",
	9: "KILL", 10: "USR1", 11: "SEGV", 12: "USR2", 13: "PIPE", 14: "ALRM", 15: "TERM", 16: "STKFLT", 17: "CHLD",
	18: "CONT", 19: "STOP", 20: "TSTP", 21: "TTIN", 22: "TTOU", 23: "URG", 24: "XCPU", 25: "XFSZ", 26: "VTALRM",
	27: "PROF", 28: "WINCH", 29: "IO", 30: "PWR", 31: "SYS"}

// SignalName is a signal's name without SIG ("KILL"), or "SIG<n>".
func SignalName(n int) string {
	if n > 0 && n < len(signalNames) {
		return signalNames[n]
	}
	return fmt.Sprintf("SIG%d", n)
}

// AddEvent writes ev (its ID set) on lease, so that it expires with the lease.
func (s *Store) AddEvent(ctx context.Context, ev Event, lease clientv3.LeaseID) error {
	if ev.ID == "" {
		return errors.New("pidtable: event without an ID")
	}
	val, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("pidtable: encode event: %w", err)
	}
	if _, err := s.c.Put(ctx, eventKey(ev), string(val), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("pidtable: write event: %w", err)
	}
	return nil
}

// Events returns the events written after etcd revision since (0 for all),
// oldest first, only those of gpid when gpid is not 0, at most limit (0: no
// limit) of the newest ones; and the revision they were read at, the since of
// the next call that follows the log (EventsMatching).
func (s *Store) Events(ctx context.Context, since int64, gpid uint64, limit int) ([]Event, int64, error) {
	return s.EventsMatching(ctx, since, EventFilter{GPID: gpid}, limit)
}

// eventsPage is how many events EventsMatching reads per request.
const eventsPage = 1000

// EventsMatching returns the events written after etcd revision since (0
// for all) that match f, oldest first, at most limit (0: no limit) of the
// newest ones; and the revision they were read at, the since of the next call
// that follows the log (or of WatchEvents). It reads the log newest first, in
// pages at one revision, and stops once it has limit events, so a short
// answer costs a page, not the whole log. Following by revision rather than
// by ID misses nothing: IDs are taken from the writers' clocks, and an event
// can be written after one with a later ID (two migrations ending at once, or
// an old leader's last words), which a reader already past that ID would
// never see.
func (s *Store) EventsMatching(ctx context.Context, since int64, f EventFilter, limit int) ([]Event, int64, error) {
	var (
		out []Event
		rev int64
		end = clientv3.GetPrefixRangeEnd(eventsPrefix)
	)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(eventsPage),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
		if since > 0 {
			opts = append(opts, clientv3.WithMinModRev(since+1))
		}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.c.Get(ctx, eventsPrefix, opts...)
		if err != nil {
			return nil, 0, fmt.Errorf("pidtable: list events: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			var ev Event
			if err := json.Unmarshal(kv.Value, &ev); err != nil {
				return nil, 0, fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
			}
			if f.Match(ev) {
				out = append(out, ev)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 || (limit > 0 && len(out) >= limit) {
			break
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key) // exclusive: the next page is older
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	slices.Reverse(out)
	return out, rev, nil
}

// WatchEvents calls fn with each event written after revision since, in
// the order written, until ctx ends or fn returns an error; it returns that
// error, or the watch's (a revision compacted away: read again with
// EventsMatching and watch from its revision).
func (s *Store) WatchEvents(ctx context.Context, since int64, fn func(Event) error) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.c.Watch(wctx, eventsPrefix, clientv3.WithPrefix(), clientv3.WithRev(since+1), clientv3.WithFilterDelete())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("pidtable: watch events: %w", err)
		}
		for _, e := range wr.Events {
			if e.Kv.Version != 1 {
				continue // an event is written once
			}
			var ev Event
			if err := json.Unmarshal(e.Kv.Value, &ev); err != nil {
				continue // not ours to judge: the reader skips what it cannot read
			}
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// TrimEvents deletes the oldest events beyond the newest keep.
func (s *Store) TrimEvents(ctx context.Context, keep int) error {
	resp, err := s.c.Get(ctx, eventsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("pidtable: count events: %w", err)
	}
	excess := resp.Count - int64(keep)
	if excess <= 0 {
		return nil
	}
	old, err := s.c.Get(ctx, eventsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithLimit(excess), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil || len(old.Kvs) == 0 {
		return err
	}
	last := string(old.Kvs[len(old.Kvs)-1].Key)
	if _, err := s.c.Delete(ctx, eventsPrefix, clientv3.WithRange(last+"\x00")); err != nil {
		return fmt.Errorf("pidtable: trim events: %w", err)
	}
	return nil
}

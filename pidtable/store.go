package pidtable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors returned by Store. Check them with errors.Is.
var (
	ErrNotFound     = errors.New("pidtable: not found")
	ErrNodeNotReady = errors.New("pidtable: node is not ready")
	ErrConflict     = errors.New("pidtable: too many conflicting updates")
)

const (
	prefix       = "/ssi/"
	nextGPIDKey  = prefix + "next-gpid"
	procsPrefix  = prefix + "procs/"
	nodesPrefix  = prefix + "nodes/"
	statusPrefix = prefix + "status/"
	// maxCASRetries bounds compare-and-swap loops; each retry means another
	// writer won, so the loop terminates under any fair schedule long before this.
	maxCASRetries = 64
)

// ProcKey returns the etcd key of a gpid's record.
func ProcKey(gpid uint64) string { return fmt.Sprintf("%s%012d", procsPrefix, gpid) }

// NodeKey returns the etcd key of a node's registration.
func NodeKey(name string) string { return nodesPrefix + name }

// StatusKey returns the etcd key of a node's live status.
func StatusKey(name string) string { return statusPrefix + name }

// Store reads and writes the cluster state. It is safe for concurrent use.
type Store struct {
	c *clientv3.Client
	// gpids hands out gpids from blocks reserved per node (gpids.go).
	gpids gpidBlocks
	// history holds the leases of archived records (history.go).
	history historyLeases
	// events writes the lifecycle events of records' changes (events.go).
	events eventWriter
}

// New returns a Store using c.
func New(c *clientv3.Client, opts ...Option) *Store {
	s := &Store{c: c, gpids: gpidBlocks{byNode: map[string]*gpidBlock{}}, history: historyLeases{keep: DefaultHistory}}
	s.events.leases.keep = EventTTL
	for _, o := range opts {
		o(s)
	}
	return s
}

// Client returns the etcd client the store uses.
func (s *Store) Client() *clientv3.Client { return s.c }

// Create allocates a new gpid and writes p's record under it in one transaction.
// It fails with ErrNodeNotReady when p.Node has no live status key. The returned
// Proc has GPID, Epoch, Created and State (Starting unless set) filled in.
func (s *Store) Create(ctx context.Context, p Proc) (Proc, error) {
	if p.Node == "" {
		return Proc{}, errors.New("pidtable: create: proc has no node")
	}
	if p.State == "" {
		p.State = Starting
	}
	if p.Created.IsZero() {
		p.Created = time.Now().UTC()
	}
	p.Epoch = 1
	for range maxCASRetries {
		gpid, err := s.gpids.take(ctx, s.c, p.Node)
		if err != nil {
			return Proc{}, err
		}
		p.GPID = gpid
		val, err := json.Marshal(p)
		if err != nil {
			return Proc{}, fmt.Errorf("pidtable: encode proc: %w", err)
		}
		created, ready, err := s.putNew(ctx, gpid, p.Node, val)
		if err != nil {
			// The gpid may or may not be taken now: it is not handed out
			// again either way (never reused).
			return Proc{}, fmt.Errorf("pidtable: create gpid %d: %w", gpid, err)
		}
		if created {
			return p, nil
		}
		if !ready {
			return Proc{}, fmt.Errorf("%w: %s", ErrNodeNotReady, p.Node)
		}
		// The gpid has a record: only a store from before blocks could
		// have written it; take the next.
	}
	return Proc{}, fmt.Errorf("%w: allocating a gpid", ErrConflict)
}

// Get returns gpid's record and its etcd mod revision.
func (s *Store) Get(ctx context.Context, gpid uint64) (Proc, int64, error) {
	resp, err := s.c.Get(ctx, ProcKey(gpid))
	if err != nil {
		return Proc{}, 0, fmt.Errorf("pidtable: get gpid %d: %w", gpid, err)
	}
	if len(resp.Kvs) == 0 {
		return Proc{}, 0, fmt.Errorf("%w: gpid %d", ErrNotFound, gpid)
	}
	p, err := DecodeProc(resp.Kvs[0].Value)
	if err != nil {
		return Proc{}, 0, fmt.Errorf("pidtable: decode gpid %d: %w", gpid, err)
	}
	return p, resp.Kvs[0].ModRevision, nil
}

// getForUpdate is Get for a read-modify-write: it refuses a record with fields
// this version would drop (ErrNewerRecord).
func (s *Store) getForUpdate(ctx context.Context, gpid uint64) (Proc, int64, error) {
	resp, err := s.c.Get(ctx, ProcKey(gpid))
	if err != nil {
		return Proc{}, 0, fmt.Errorf("pidtable: get gpid %d: %w", gpid, err)
	}
	if len(resp.Kvs) == 0 {
		return Proc{}, 0, fmt.Errorf("%w: gpid %d", ErrNotFound, gpid)
	}
	p, err := decodeProcForUpdate(resp.Kvs[0].Value)
	if err != nil {
		return Proc{}, 0, fmt.Errorf("pidtable: gpid %d: %w", gpid, err)
	}
	return p, resp.Kvs[0].ModRevision, nil
}

// Update applies fn to gpid's record and writes it back only if the record did
// not change in between, retrying on conflict. fn may return an error to abort.
// It edits fields only: a change of state, owner or epoch is a Transition.
func (s *Store) Update(ctx context.Context, gpid uint64, fn func(*Proc) error) (Proc, error) {
	p, _, err := s.Transition(ctx, gpid, Edit, "", fn)
	return p, err
}

// Transition applies fn to gpid's record as transition t made by node by, and
// writes it back only if the record did not change in between, retrying on
// conflict. The lifecycle table (lifecycle.go) must allow the change, or it
// fails with a *TransitionError and nothing is written. fn may return an error
// to abort. It returns the record written and its new mod revision.
func (s *Store) Transition(ctx context.Context, gpid uint64, t Transition, by string, fn func(*Proc) error) (Proc, int64, error) {
	for range maxCASRetries {
		old, rev, err := s.getForUpdate(ctx, gpid)
		if err != nil {
			return Proc{}, 0, err
		}
		p, newRev, ok, err := s.apply(ctx, old, rev, t, by, fn)
		if err != nil {
			return Proc{}, 0, err
		}
		if ok {
			return p, newRev, nil
		}
	}
	return Proc{}, 0, fmt.Errorf("%w: updating gpid %d", ErrConflict, gpid)
}

// ErrOutcomeUnknown wraps a write whose transaction was sent but not answered
// (etcd timed out, say): it may still be applied later.
var ErrOutcomeUnknown = errors.New("outcome unknown")

// ErrChanged is returned by TransitionAt when the record is not at the
// expected revision.
var ErrChanged = errors.New("pidtable: record changed")

// TransitionAt is Transition as one compare-and-swap with no retry: it applies
// only if gpid's record is still at revision rev (the caller's last read or
// write), and fails with ErrChanged when another write came first. An error
// wrapping ErrOutcomeUnknown leaves the outcome unknown: the write may still
// be applied (etcd timed out, say); any other error means it was not sent.
func (s *Store) TransitionAt(ctx context.Context, gpid uint64, rev int64, t Transition, by string, fn func(*Proc) error) (Proc, int64, error) {
	old, cur, err := s.getForUpdate(ctx, gpid)
	if err != nil {
		return Proc{}, 0, err
	}
	if cur != rev {
		return Proc{}, 0, fmt.Errorf("%w: gpid %d is at revision %d, not %d", ErrChanged, gpid, cur, rev)
	}
	p, newRev, ok, err := s.apply(ctx, old, rev, t, by, fn)
	if err != nil {
		return Proc{}, 0, err
	}
	if !ok {
		return Proc{}, 0, fmt.Errorf("%w: gpid %d is no longer at revision %d", ErrChanged, gpid, rev)
	}
	return p, newRev, nil
}

// apply runs fn on a copy of old (read at rev), checks the change against the
// lifecycle table and writes it if the record is still at rev.
func (s *Store) apply(ctx context.Context, old Proc, rev int64, t Transition, by string, fn func(*Proc) error) (Proc, int64, bool, error) {
	p := old
	if old.Migration != nil { // fn may edit it; old must stay as read
		m := *old.Migration
		p.Migration = &m
	}
	if fn != nil {
		if err := fn(&p); err != nil {
			return Proc{}, 0, false, err
		}
	}
	if err := checkTransition(t, by, old, &p); err != nil {
		return Proc{}, 0, false, err
	}
	val, err := json.Marshal(p)
	if err != nil {
		return Proc{}, 0, false, fmt.Errorf("pidtable: encode gpid %d: %w", p.GPID, err)
	}
	key := ProcKey(p.GPID)
	var ev *Event
	if e, ok := lifecycleEvent(t, by, old, p); ok {
		ev = &e // written in the same transaction (events.go)
	}
	tr, err := s.commitWithEvent(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)},
		[]clientv3.Op{clientv3.OpPut(key, string(val))}, ev)
	if err != nil {
		return Proc{}, 0, false, fmt.Errorf("pidtable: update gpid %d: %w: %w", p.GPID, ErrOutcomeUnknown, err)
	}
	return p, tr.Header.Revision, tr.Succeeded, nil
}

// Delete removes gpid's record from the live table if it is still owned by
// node (so an agent never deletes a record another node has taken over): the
// record of a job that has ended is archived (ArchiveAt: moved to the
// history, where `ssi wait` and `ssi ps --exited` still find it until its
// lease expires); any other (a start undone) is deleted. Either is guarded by
// the revision read, and fails with ErrConflict when the record changed
// meanwhile. The gpid is never reused.
func (s *Store) Delete(ctx context.Context, gpid uint64, node string) error {
	resp, err := s.c.Get(ctx, ProcKey(gpid))
	if err != nil {
		return fmt.Errorf("pidtable: get gpid %d: %w", gpid, err)
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("%w: gpid %d", ErrNotFound, gpid)
	}
	kv := resp.Kvs[0]
	p, err := DecodeProc(kv.Value)
	if err != nil {
		return fmt.Errorf("pidtable: decode gpid %d: %w", gpid, err)
	}
	if p.Node != node {
		return fmt.Errorf("pidtable: delete gpid %d: owned by %s, not %s", gpid, p.Node, node)
	}
	if p.State.Ended() {
		if err := s.archive(ctx, p, kv.Value, kv.ModRevision); err != nil {
			if errors.Is(err, ErrChanged) {
				return fmt.Errorf("%w: archiving gpid %d (%w)", ErrConflict, gpid, err)
			}
			return err
		}
		return nil
	}
	key := ProcKey(gpid)
	tr, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
		Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("pidtable: delete gpid %d: %w", gpid, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("%w: deleting gpid %d", ErrConflict, gpid)
	}
	return nil
}

// Procs lists the records owned by node ("" for all), sorted by gpid.
func (s *Store) Procs(ctx context.Context, node string) ([]Proc, error) {
	// A stream at one revision (ListProcs): only the kept records are held.
	var out []Proc
	_, err := s.ListProcs(ctx, ListOptions{}, func(p Proc, _ int64) error {
		if node == "" || p.Node == node {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// WaitEnded blocks until gpid's record is in a final state and returns it;
// an archived record (history.go) has ended, and is returned at once.
func (s *Store) WaitEnded(ctx context.Context, gpid uint64) (Proc, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for {
		// The live record and the archived one at one revision: an archive
		// moves the record from one to the other in one transaction.
		tr, err := s.c.Txn(ctx).Then(clientv3.OpGet(ProcKey(gpid)), clientv3.OpGet(HistoryKey(gpid))).Commit()
		if err != nil {
			return Proc{}, fmt.Errorf("pidtable: get gpid %d: %w", gpid, err)
		}
		live, hist := tr.Responses[0].GetResponseRange().Kvs, tr.Responses[1].GetResponseRange().Kvs
		if len(live) == 0 {
			if len(hist) == 0 {
				return Proc{}, fmt.Errorf("%w: gpid %d", ErrNotFound, gpid)
			}
			p, err := DecodeProc(hist[0].Value)
			if err != nil {
				return Proc{}, fmt.Errorf("pidtable: decode %s: %w", hist[0].Key, err)
			}
			return p, nil
		}
		p, err := DecodeProc(live[0].Value)
		if err != nil {
			return Proc{}, fmt.Errorf("pidtable: decode gpid %d: %w", gpid, err)
		}
		if p.State.Ended() {
			return p, nil
		}
		wch := s.c.Watch(ctx, ProcKey(gpid), clientv3.WithRev(tr.Header.Revision+1))
		for wr := range wch {
			if err := wr.Err(); err != nil {
				return Proc{}, fmt.Errorf("pidtable: watch gpid %d: %w", gpid, err)
			}
			if len(wr.Events) > 0 {
				break
			}
		}
		if err := ctx.Err(); err != nil {
			return Proc{}, err
		}
	}
}

// RegisterNode writes n's durable record.
func (s *Store) RegisterNode(ctx context.Context, n Node) error {
	val, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("pidtable: encode node %s: %w", n.Name, err)
	}
	if _, err := s.c.Put(ctx, NodeKey(n.Name), string(val)); err != nil {
		return fmt.Errorf("pidtable: register node %s: %w", n.Name, err)
	}
	return nil
}

// Status returns node's live status and the lease it is held on; ok is false when
// the node is NotReady (no status key).
func (s *Store) Status(ctx context.Context, node string) (st NodeStatus, lease clientv3.LeaseID, ok bool, err error) {
	resp, err := s.c.Get(ctx, StatusKey(node))
	if err != nil {
		return NodeStatus{}, 0, false, fmt.Errorf("pidtable: get status of %s: %w", node, err)
	}
	if len(resp.Kvs) == 0 {
		return NodeStatus{}, 0, false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		return NodeStatus{}, 0, false, fmt.Errorf("pidtable: decode status of %s: %w", node, err)
	}
	return st, clientv3.LeaseID(resp.Kvs[0].Lease), true, nil
}

// PublishStatus writes node's live status on lease.
func (s *Store) PublishStatus(ctx context.Context, node string, st NodeStatus, lease clientv3.LeaseID) error {
	val, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("pidtable: encode status of %s: %w", node, err)
	}
	if _, err := s.c.Put(ctx, StatusKey(node), string(val), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("pidtable: publish status of %s: %w", node, err)
	}
	return nil
}

// Snapshot is the cluster state at one etcd revision.
type Snapshot struct {
	Revision int64
	Procs    []Proc // sorted by gpid
	Nodes    []Node // sorted by name
	// Status holds the live status of every Ready node.
	Status map[string]NodeStatus
}

// Ready reports whether node has a live status.
func (s *Snapshot) Ready(node string) bool { _, ok := s.Status[node]; return ok }

// Node returns the named node's record.
func (s *Snapshot) Node(name string) (Node, bool) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Snapshot reads the process table, the nodes and their statuses in one
// transaction (one round trip, one revision).
func (s *Store) Snapshot(ctx context.Context) (*Snapshot, error) { return s.snapshot(ctx, true) }

// NodesSnapshot is Snapshot without the process table (Procs is nil): what
// placement, forwarding and `ssi nodes` need, at a cost that does not grow with
// the number of jobs.
func (s *Store) NodesSnapshot(ctx context.Context) (*Snapshot, error) { return s.snapshot(ctx, false) }

func (s *Store) snapshot(ctx context.Context, withProcs bool) (*Snapshot, error) {
	ops := []clientv3.Op{
		clientv3.OpGet(nodesPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(statusPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(nodeConfigPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(drainPrefix, clientv3.WithPrefix()),
	}
	if withProcs {
		ops = append(ops, clientv3.OpGet(procsPrefix, clientv3.WithPrefix()))
	}
	tr, err := s.c.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("pidtable: read snapshot: %w", err)
	}
	snap := &Snapshot{Revision: tr.Header.Revision, Status: map[string]NodeStatus{}}
	if withProcs {
		if snap.Procs, err = decodeProcs(tr.Responses[4].GetResponseRange().Kvs); err != nil {
			return nil, err
		}
	}
	confs := map[string]NodeConfig{}
	for _, kv := range tr.Responses[2].GetResponseRange().Kvs {
		var c NodeConfig
		if err := decode(kv.Value, &c, false); err != nil {
			return nil, fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
		}
		confs[strings.TrimPrefix(string(kv.Key), nodeConfigPrefix)] = c
	}
	drains := map[string]drainView{}
	for _, kv := range tr.Responses[3].GetResponseRange().Kvs {
		if v, ok := viewDrain(kv.Value); ok {
			drains[strings.TrimPrefix(string(kv.Key), drainPrefix)] = v
		}
	}
	for _, kv := range tr.Responses[0].GetResponseRange().Kvs {
		var n Node
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			return nil, fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
		}
		n = confs[n.Name].Apply(n)
		drains[n.Name].apply(&n)
		snap.Nodes = append(snap.Nodes, n)
	}
	for _, kv := range tr.Responses[1].GetResponseRange().Kvs {
		var st NodeStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			return nil, fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
		}
		snap.Status[strings.TrimPrefix(string(kv.Key), statusPrefix)] = st
	}
	return snap, nil
}

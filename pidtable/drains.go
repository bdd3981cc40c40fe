package pidtable

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Drains (ssi node drain): /ssi/drain/nodes/<node> holds one node's drain,
// started by an admin's request and carried out by the elected drain
// controller (package drain), which writes every step back here, guarded by
// its election key. The record is the drain's whole state: a new leader reads
// it and the process table, and carries on.

const (
	// DrainLeaderPrefix is the election of the drain controller.
	DrainLeaderPrefix = prefix + "drain/leader"
	// FailoverLeaderPrefix is the election of the failover controller.
	FailoverLeaderPrefix = prefix + "failover/leader"
	drainPrefix          = prefix + "drain/nodes/"
)

// DrainKey returns the etcd key of node's drain.
func DrainKey(node string) string { return drainPrefix + node }

// Drain states (Drain.State).
const (
	// DrainActive: the controller moves the node's jobs away.
	DrainActive = "draining"
	// DrainDone: no job is left on the node, or every one left is listed
	// with why it stayed.
	DrainDone = "done"
	// DrainCancelled: ssi node drain --cancel; moves in flight finish, no
	// new one starts; the node stays cordoned.
	DrainCancelled = "cancelled"
)

// Drain job states (DrainJob.State).
const (
	JobPending   = "pending"   // to be moved
	JobMoving    = "moving"    // a move is in flight
	JobMoved     = "moved"     // runs on To now
	JobRetry     = "retry"     // a move failed; tried again after NextTry
	JobFailed    = "failed"    // every attempt failed; it stays (Reason)
	JobUnmovable = "unmovable" // it cannot move at all (a terminal); it stays
	JobEnded     = "ended"     // it ended by itself during the drain
	JobKilled    = "killed"    // killed at the deadline (--force)
	JobLeft      = "left"      // still on the node when the drain ended
	// JobReplacing: a service replica that is not moved live (Migratable=no,
	// or every move failed): the service's controller starts another
	// replica elsewhere, then stops this one.
	JobReplacing = "replacing"
	JobReplaced  = "replaced" // ... done: another replica runs elsewhere
)

// Replacing returns the gpids of d's jobs in JobReplacing: the replicas the
// service controller is to replace elsewhere, then stop.
func (d *Drain) Replacing() []uint64 {
	var out []uint64
	for _, j := range d.Jobs {
		if j.State == JobReplacing {
			out = append(out, j.GPID)
		}
	}
	return out
}

// drainView is what a snapshot of the nodes says of a node's drain: whether
// it is under way, and its replicas being replaced (Node.Draining,
// Node.Replacing).
type drainView struct {
	active    bool
	replacing []uint64
}

// viewDrain decodes a drain record's value for a snapshot.
func viewDrain(val []byte) (drainView, bool) {
	var d Drain
	if err := json.Unmarshal(val, &d); err != nil {
		return drainView{}, false
	}
	if d.State != DrainActive {
		return drainView{}, true
	}
	return drainView{active: true, replacing: d.Replacing()}, true
}

// apply sets n's drain fields.
func (v drainView) apply(n *Node) { n.Draining, n.Replacing = v.active, v.replacing }

// Drain is one node's drain.
type Drain struct {
	Node string `json:"node"`
	// By is the admin who started it; Started when.
	By      string    `json:"by"`
	Started time.Time `json:"started"`
	// Deadline: moves are not started after it; with Force the jobs still on
	// the node then are killed.
	Deadline time.Time `json:"deadline"`
	// Parallel is how many moves may be in flight at once.
	Parallel int  `json:"parallel"`
	Force    bool `json:"force,omitempty"`
	// State is DrainActive, DrainDone or DrainCancelled; Finished when it
	// left DrainActive; Message says how it ended.
	State    string    `json:"state"`
	Finished time.Time `json:"finished,omitzero"`
	Message  string    `json:"message,omitempty"`
	// Jobs are the node's jobs the drain has dealt with, by gpid.
	Jobs []DrainJob `json:"jobs,omitempty"`
	// Leader is the controller that last wrote the record.
	Leader  string    `json:"leader,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}

// DrainJob is what became of one job of a drained node.
type DrainJob struct {
	GPID    uint64 `json:"gpid"`
	User    string `json:"user,omitempty"`
	Command string `json:"command,omitempty"`
	State   string `json:"state"`
	// To is where it was moved (or is being moved).
	To string `json:"to,omitempty"`
	// Reason says why a job failed, stays or was killed.
	Reason   string    `json:"reason,omitempty"`
	Attempts int       `json:"attempts,omitempty"`
	NextTry  time.Time `json:"next_try,omitzero"`
	// MoveStarted is when the last move of it started (JobMoving).
	MoveStarted time.Time `json:"move_started,omitzero"`
	// PostCopy: the move was asked post-copy.
	PostCopy bool `json:"post_copy,omitempty"`
	// FromCheckpoint: the job could not be moved live and has checkpoints
	// (ssi run --checkpoint-every): it is moved by restoring its newest
	// checkpoint on To (ssi migrate --from-checkpoint).
	FromCheckpoint bool `json:"from_checkpoint,omitempty"`
	// Took, Frozen and Bytes are the successful move's figures.
	Took   time.Duration `json:"took,omitempty"`
	Frozen time.Duration `json:"frozen,omitempty"`
	Bytes  int64         `json:"bytes,omitempty"`
}

// Job returns the entry of gpid, if any.
func (d *Drain) Job(gpid uint64) (*DrainJob, bool) {
	for i := range d.Jobs {
		if d.Jobs[i].GPID == gpid {
			return &d.Jobs[i], true
		}
	}
	return nil, false
}

// Count returns how many jobs are in each state.
func (d *Drain) Count() map[string]int {
	m := map[string]int{}
	for _, j := range d.Jobs {
		m[j.State]++
	}
	return m
}

// GetDrain returns node's drain and its mod revision; ErrNotFound when there
// is none.
func (s *Store) GetDrain(ctx context.Context, node string) (Drain, int64, error) {
	resp, err := s.c.Get(ctx, DrainKey(node))
	if err != nil {
		return Drain{}, 0, fmt.Errorf("pidtable: read the drain of %s: %w", node, err)
	}
	if len(resp.Kvs) == 0 {
		return Drain{}, 0, fmt.Errorf("%w: no drain of node %s", ErrNotFound, node)
	}
	var d Drain
	if err := decode(resp.Kvs[0].Value, &d, false); err != nil {
		return Drain{}, 0, fmt.Errorf("pidtable: decode the drain of %s: %w", node, err)
	}
	return d, resp.Kvs[0].ModRevision, nil
}

// Drains lists every drain record with its mod revision, by node name.
func (s *Store) Drains(ctx context.Context) ([]Drain, []int64, error) {
	resp, err := s.c.Get(ctx, drainPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, fmt.Errorf("pidtable: list drains: %w", err)
	}
	var out []Drain
	var revs []int64
	for _, kv := range resp.Kvs {
		var d Drain
		if err := decode(kv.Value, &d, false); err != nil {
			return nil, nil, fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
		}
		d.Node = strings.TrimPrefix(string(kv.Key), drainPrefix)
		out = append(out, d)
		revs = append(revs, kv.ModRevision)
	}
	return out, revs, nil
}

// StartDrain writes d, a new drain, and cordons its node, in one
// transaction: if the node is registered and its drain key is still at rev
// (0: absent; a finished drain is replaced at its revision). ErrChanged when
// another drain came first; ErrNotFound when the node is not registered.
func (s *Store) StartDrain(ctx context.Context, d Drain, rev int64, cordon NodeConfig, cordonRev int64) error {
	val, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("pidtable: encode the drain of %s: %w", d.Node, err)
	}
	cval, err := json.Marshal(cordon)
	if err != nil {
		return fmt.Errorf("pidtable: encode settings of node %s: %w", d.Node, err)
	}
	tr, err := s.c.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(NodeKey(d.Node)), ">", 0),
		clientv3.Compare(clientv3.ModRevision(DrainKey(d.Node)), "=", rev),
		clientv3.Compare(clientv3.ModRevision(NodeConfigKey(d.Node)), "=", cordonRev),
	).Then(
		clientv3.OpPut(DrainKey(d.Node), string(val)),
		clientv3.OpPut(NodeConfigKey(d.Node), string(cval)),
	).Else(clientv3.OpGet(NodeKey(d.Node), clientv3.WithCountOnly())).Commit()
	if err != nil {
		return fmt.Errorf("pidtable: start the drain of %s: %w", d.Node, err)
	}
	if tr.Succeeded {
		return nil
	}
	if tr.Responses[0].GetResponseRange().Count == 0 {
		return fmt.Errorf("%w: node %s", ErrNotFound, d.Node)
	}
	return fmt.Errorf("%w: the drain of %s or its settings changed meanwhile", ErrChanged, d.Node)
}

// PutDrain writes d if its key is still at rev and guard holds (the drain
// controller's leadership; nil: no guard). It returns the new revision, or
// ErrChanged.
func (s *Store) PutDrain(ctx context.Context, d Drain, rev int64, guard *clientv3.Cmp) (int64, error) {
	d.Updated = time.Now().UTC()
	val, err := json.Marshal(d)
	if err != nil {
		return 0, fmt.Errorf("pidtable: encode the drain of %s: %w", d.Node, err)
	}
	conds := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(DrainKey(d.Node)), "=", rev)}
	if guard != nil {
		conds = append(conds, *guard)
	}
	tr, err := s.c.Txn(ctx).If(conds...).Then(clientv3.OpPut(DrainKey(d.Node), string(val))).Commit()
	if err != nil {
		return 0, fmt.Errorf("pidtable: write the drain of %s: %w", d.Node, err)
	}
	if !tr.Succeeded {
		return 0, fmt.Errorf("%w: the drain of %s (or the controller's leadership)", ErrChanged, d.Node)
	}
	return tr.Header.Revision, nil
}

// FailoverLeader returns the name of the failover controller's leader (""
// when none is elected).
func (s *Store) FailoverLeader(ctx context.Context) (string, error) {
	return s.leaderOf(ctx, FailoverLeaderPrefix, "failover controller")
}

// DrainLeader returns the name of the drain controller's leader ("" when
// none is elected).
func (s *Store) DrainLeader(ctx context.Context) (string, error) {
	return s.leaderOf(ctx, DrainLeaderPrefix, "drain controller")
}

// leaderOf returns the value of the oldest candidate of the election under
// prefix (its leader), "" when there is none.
func (s *Store) leaderOf(ctx context.Context, prefix, what string) (string, error) {
	resp, err := s.c.Get(ctx, prefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("pidtable: read the %s's leader: %w", what, err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

package pidtable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const checkpointsPrefix = prefix + "checkpoints/"

// CheckpointKey returns the etcd key of a checkpoint's record.
func CheckpointKey(name string) string { return checkpointsPrefix + name }

// ErrExists is returned when a record that must be new already exists.
var ErrExists = errors.New("pidtable: already exists")

// CheckpointState is the lifecycle state of a checkpoint.
type CheckpointState string

// Checkpoint states.
const (
	// Saving: the holder is dumping the job; the images are incomplete.
	Saving CheckpointState = "saving"
	// Ready: the images are complete and can be restored.
	Ready CheckpointState = "ready"
)

var checkpointNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidCheckpointName reports why name cannot name a checkpoint, or nil.
func ValidCheckpointName(name string) error {
	if !checkpointNameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("checkpoint name %q: use 1-63 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

// Checkpoint is a saved image of a job, kept by the node that took it.
type Checkpoint struct {
	Name  string          `json:"name"`
	State CheckpointState `json:"state"`
	// GPID is the job the checkpoint was taken of.
	GPID uint64 `json:"gpid"`
	// Node holds the images (its checkpoint store).
	Node string `json:"node"`
	// Size is the bytes the checkpoint occupies (images and output so far).
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	// LeaveRunning is whether the job kept running after the checkpoint.
	LeaveRunning bool `json:"leave_running"`
	// Proc is the job's record when the checkpoint was taken: who it runs as,
	// its command line, working directory and resource limits.
	Proc Proc `json:"proc"`
	// Auto marks a checkpoint of the job's --checkpoint-every (the agent
	// keeps the newest few and removes the rest).
	Auto bool `json:"auto,omitempty"`
	// CopyOf names the checkpoint this one is a copy of, kept by another
	// node than the original's so that a node's death does not take every
	// copy with it.
	CopyOf string `json:"copy_of,omitempty"`
}

// CreateCheckpoint writes c's record if no checkpoint of that name exists
// (ErrExists otherwise) and returns its revision.
func (s *Store) CreateCheckpoint(ctx context.Context, c Checkpoint) (int64, error) {
	val, err := json.Marshal(c)
	if err != nil {
		return 0, fmt.Errorf("pidtable: encode checkpoint %s: %w", c.Name, err)
	}
	key := CheckpointKey(c.Name)
	tr, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return 0, fmt.Errorf("pidtable: create checkpoint %s: %w", c.Name, err)
	}
	if !tr.Succeeded {
		return 0, fmt.Errorf("%w: checkpoint %s", ErrExists, c.Name)
	}
	return tr.Header.Revision, nil
}

// SwapCheckpoint writes c if its record is still at revision rev.
func (s *Store) SwapCheckpoint(ctx context.Context, c Checkpoint, rev int64) (int64, error) {
	val, err := json.Marshal(c)
	if err != nil {
		return 0, fmt.Errorf("pidtable: encode checkpoint %s: %w", c.Name, err)
	}
	key := CheckpointKey(c.Name)
	var ev *Event
	if c.State == Ready { // saved: the event goes in the same transaction (events.go)
		ev = &Event{Kind: EventCheckpoint, Node: c.Node, GPID: c.GPID, User: c.Proc.User, Checkpoint: c.Name, Bytes: c.Size, From: c.Node}
		if c.CopyOf != "" {
			ev.Reason = "copy of " + c.CopyOf
		}
	}
	tr, err := s.commitWithEvent(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)},
		[]clientv3.Op{clientv3.OpPut(key, string(val))}, ev)
	if err != nil {
		return 0, fmt.Errorf("pidtable: update checkpoint %s: %w", c.Name, err)
	}
	if !tr.Succeeded {
		return 0, fmt.Errorf("%w: checkpoint %s is no longer at revision %d", ErrChanged, c.Name, rev)
	}
	return tr.Header.Revision, nil
}

// GetCheckpoint returns the named checkpoint and its revision.
func (s *Store) GetCheckpoint(ctx context.Context, name string) (Checkpoint, int64, error) {
	resp, err := s.c.Get(ctx, CheckpointKey(name))
	if err != nil {
		return Checkpoint{}, 0, fmt.Errorf("pidtable: get checkpoint %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return Checkpoint{}, 0, fmt.Errorf("%w: checkpoint %s", ErrNotFound, name)
	}
	var c Checkpoint
	if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
		return Checkpoint{}, 0, fmt.Errorf("pidtable: decode checkpoint %s: %w", name, err)
	}
	return c, resp.Kvs[0].ModRevision, nil
}

// Checkpoints lists the checkpoints held by node ("" for all), sorted by name.
func (s *Store) Checkpoints(ctx context.Context, node string) ([]Checkpoint, error) {
	resp, err := s.c.Get(ctx, checkpointsPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("pidtable: list checkpoints: %w", err)
	}
	out := make([]Checkpoint, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var c Checkpoint
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			return nil, fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
		}
		if node == "" || c.Node == node {
			out = append(out, c)
		}
	}
	return out, nil
}

// DeleteCheckpoint removes the named checkpoint's record if it is still at
// revision rev.
func (s *Store) DeleteCheckpoint(ctx context.Context, name string, rev int64) error {
	key := CheckpointKey(name)
	tr, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("pidtable: delete checkpoint %s: %w", name, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("%w: checkpoint %s is no longer at revision %d", ErrChanged, name, rev)
	}
	return nil
}

// Recreate writes p's record under its existing gpid, which must have no
// record (its old one was archived or forgotten after the job ended; an
// archived copy is deleted in the same transaction), guarded like Create
// on p.Node being live. Used to restore a checkpoint under its own gpid; a
// gpid is still never given to a different job.
func (s *Store) Recreate(ctx context.Context, p Proc) (int64, error) {
	if p.GPID == 0 || p.Node == "" {
		return 0, errors.New("pidtable: recreate: proc has no gpid or node")
	}
	val, err := json.Marshal(p)
	if err != nil {
		return 0, fmt.Errorf("pidtable: encode proc: %w", err)
	}
	key := ProcKey(p.GPID)
	tr, err := s.c.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(StatusKey(p.Node)), ">", 0),
	).Then(clientv3.OpPut(key, string(val)), clientv3.OpDelete(HistoryKey(p.GPID))).
		Else(clientv3.OpGet(StatusKey(p.Node), clientv3.WithCountOnly())).Commit()
	if err != nil {
		return 0, fmt.Errorf("pidtable: recreate gpid %d: %w", p.GPID, err)
	}
	if tr.Succeeded {
		return tr.Header.Revision, nil
	}
	if tr.Responses[0].GetResponseRange().Count == 0 {
		return 0, fmt.Errorf("%w: %s", ErrNodeNotReady, p.Node)
	}
	return 0, fmt.Errorf("%w: gpid %d", ErrExists, p.GPID)
}

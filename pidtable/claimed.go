package pidtable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrClaimLost is returned by CreateClaimed when the claim's conditions do
// not hold (another start won, or the claim changed): nothing was written.
var ErrClaimLost = errors.New("pidtable: claim no longer holds")

// CreateClaimed writes the first record of a job under p.GPID, a gpid its
// caller allocated (AllocateGPIDOp), in one transaction with ops, if conds
// hold, the gpid has no record and p.Node is Ready. It is how a timer's run
// is started exactly once: conds say its tick is still claimed and not
// started, ops mark it started. ErrClaimLost: conds failed, or the gpid has
// a record (another start won); ErrNodeNotReady: the node has no live status.
func (s *Store) CreateClaimed(ctx context.Context, p Proc, conds []clientv3.Cmp, ops []clientv3.Op) (Proc, error) {
	if p.Node == "" || p.GPID == 0 {
		return Proc{}, errors.New("pidtable: create claimed: proc has no node or gpid")
	}
	if p.State == "" {
		p.State = Starting
	}
	if p.Created.IsZero() {
		p.Created = time.Now().UTC()
	}
	p.Epoch = 1
	val, err := json.Marshal(p)
	if err != nil {
		return Proc{}, fmt.Errorf("pidtable: encode proc: %w", err)
	}
	cmps := append([]clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(ProcKey(p.GPID)), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(HistoryKey(p.GPID)), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(StatusKey(p.Node)), ">", 0),
	}, conds...)
	tr, err := s.c.Txn(ctx).If(cmps...).Then(append([]clientv3.Op{clientv3.OpPut(ProcKey(p.GPID), string(val))}, ops...)...).Else(
		clientv3.OpGet(ProcKey(p.GPID), clientv3.WithCountOnly()),
		clientv3.OpGet(HistoryKey(p.GPID), clientv3.WithCountOnly()),
		clientv3.OpGet(StatusKey(p.Node), clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		return Proc{}, fmt.Errorf("pidtable: create gpid %d: %w", p.GPID, err)
	}
	if tr.Succeeded {
		return p, nil
	}
	switch {
	case tr.Responses[0].GetResponseRange().Count > 0 || tr.Responses[1].GetResponseRange().Count > 0:
		return Proc{}, fmt.Errorf("%w: gpid %d has a record already (its start won)", ErrClaimLost, p.GPID)
	case tr.Responses[2].GetResponseRange().Count == 0:
		return Proc{}, fmt.Errorf("%w: %s", ErrNodeNotReady, p.Node)
	}
	return Proc{}, fmt.Errorf("%w: gpid %d", ErrClaimLost, p.GPID)
}

// NextGPID reads the cluster's gpid counter: the next gpid and the counter's
// revision, for AllocateGPIDOp.
func (s *Store) NextGPID(ctx context.Context) (uint64, int64, error) {
	resp, err := s.c.Get(ctx, nextGPIDKey)
	if err != nil {
		return 0, 0, fmt.Errorf("pidtable: read next gpid: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return 1, 0, nil
	}
	var next uint64
	if _, err := fmt.Sscan(string(resp.Kvs[0].Value), &next); err != nil {
		return 0, 0, fmt.Errorf("pidtable: %s holds %q: %w", nextGPIDKey, resp.Kvs[0].Value, err)
	}
	return next, resp.Kvs[0].ModRevision, nil
}

// AllocateGPIDOp is the compare and the put that allocate gpid next (as
// NextGPID read it at rev) inside a caller's transaction: the counter moves
// past it only if no one moved it since, so the gpid is the caller's alone
// and never handed out again (as gpid blocks are).
func AllocateGPIDOp(next uint64, rev int64) (clientv3.Cmp, clientv3.Op) {
	return clientv3.Compare(clientv3.ModRevision(nextGPIDKey), "=", rev),
		clientv3.OpPut(nextGPIDKey, fmt.Sprint(next+1))
}

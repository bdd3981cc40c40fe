package pidtable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ReadRetryFor bounds how long RetryReads sends a read again: longer than
// a leader election of a 3-member etcd (about a second here, see
// docs/BENCHMARKS.md), shorter than a node lease.
const ReadRetryFor = 4 * time.Second

// RetryReads is a dial option for the agents' etcd clients. When a member
// is lost, etcd answers requests in flight with codes.Unavailable ("leader
// changed", "no leader", "request timed out") until a new leader is
// elected. etcd's client sends plain reads (Get) again by itself, but not
// transactions, because a write may have been applied. A transaction that
// only reads (no comparisons, only ranges: Snapshot and other reads at one
// revision) changes nothing, so it is sent again here, every 100 ms, for at
// most ReadRetryFor or until ctx ends: a reader sees a pause, not an error.
func RetryReads() grpc.DialOption { return grpc.WithChainUnaryInterceptor(retryReadTxn) }

func retryReadTxn(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err == nil || method != "/etcdserverpb.KV/Txn" || !readOnly(req) {
		return err
	}
	deadline := time.Now().Add(ReadRetryFor)
	for status.Code(err) == codes.Unavailable && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
		err = invoker(ctx, method, req, reply, cc, opts...)
	}
	return err
}

// readOnly reports whether req is a transaction of ranges only.
func readOnly(req any) bool {
	t, ok := req.(*pb.TxnRequest)
	if !ok || len(t.Compare) > 0 || len(t.Failure) > 0 {
		return false
	}
	for _, op := range t.Success {
		if op.GetRequestRange() == nil {
			return false
		}
	}
	return true
}

// Bounds of putNew's attempts: a write caught by the loss of etcd's leader
// is forwarded to the dead leader and dropped, and etcd answers it only at
// its request timeout (7 s with the default election timeout) although a
// new leader serves after 1-2 s; an attempt of an idempotent write gives up
// after createAttempt and is sent again, for at most createRetryFor.
const (
	createAttempt  = 2 * time.Second
	createRetryFor = 10 * time.Second
)

// putNew writes val under gpid's record key if the key is absent and node's
// status key exists (the node is Ready), and reports whether it wrote it and,
// if not, whether the node was Ready. The gpid is the caller's alone (its
// node's block, never handed out twice), so the write is idempotent: an
// attempt that met an election (Unavailable) or took longer than
// createAttempt may or may not have been applied, and is sent again; a
// record already there that holds exactly val is such an attempt's, and
// counts as written.
func (s *Store) putNew(ctx context.Context, gpid uint64, node string, val []byte) (created, ready bool, err error) {
	deadline := time.Now().Add(createRetryFor)
	sent := false
	for {
		actx, cancel := context.WithTimeout(ctx, createAttempt)
		tr, err := s.c.Txn(actx).If(
			clientv3.Compare(clientv3.CreateRevision(ProcKey(gpid)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(StatusKey(node)), ">", 0),
		).Then(
			clientv3.OpPut(ProcKey(gpid), string(val)),
		).Else(
			clientv3.OpGet(StatusKey(node), clientv3.WithCountOnly()),
			clientv3.OpGet(ProcKey(gpid)),
		).Commit()
		cancel()
		if err == nil {
			if tr.Succeeded {
				return true, true, nil
			}
			if kvs := tr.Responses[1].GetResponseRange().Kvs; sent && len(kvs) == 1 && bytes.Equal(kvs[0].Value, val) {
				return true, true, nil // an earlier attempt's
			}
			return false, tr.Responses[0].GetResponseRange().Count > 0, nil
		}
		sent = true
		if ctx.Err() != nil || time.Now().After(deadline) || !electionError(err) {
			return false, false, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		select {
		case <-ctx.Done():
			return false, false, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// electionError reports whether err is what a request meets while etcd has
// no leader: Unavailable (no leader, leader changed, request timed out) or
// an attempt's own deadline.
func electionError(err error) bool {
	var ee rpctypes.EtcdError // what etcd's client turns a server's status into
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	return status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded)
}

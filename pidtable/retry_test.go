package pidtable

import (
	"context"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// TestRetryReads: a read-only transaction that meets "leader changed" is
// sent again until it succeeds; a transaction with a comparison or a write,
// or another method, is sent once and its error returned.
func TestRetryReads(t *testing.T) {
	rng := &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k")}}}
	put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k")}}}
	for _, tc := range []struct {
		name      string
		method    string
		req       any
		wantCalls int
		wantErr   bool
	}{
		{"read-only txn", "/etcdserverpb.KV/Txn", &pb.TxnRequest{Success: []*pb.RequestOp{rng, rng}}, 3, false},
		{"txn with a compare", "/etcdserverpb.KV/Txn", &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("k")}}, Success: []*pb.RequestOp{rng}}, 1, true},
		{"txn with a put", "/etcdserverpb.KV/Txn", &pb.TxnRequest{Success: []*pb.RequestOp{rng, put}}, 1, true},
		{"put", "/etcdserverpb.KV/Put", &pb.PutRequest{Key: []byte("k")}, 1, true},
	} {
		calls := 0
		invoke := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			calls++
			if calls < 3 {
				return rpctypes.ErrGRPCLeaderChanged
			}
			return nil
		}
		err := retryReadTxn(context.Background(), tc.method, tc.req, nil, nil, invoke)
		if calls != tc.wantCalls || (err != nil) != tc.wantErr {
			t.Errorf("%s: %d calls, err %v; want %d calls, error %v", tc.name, calls, err, tc.wantCalls, tc.wantErr)
		}
	}
}

// TestCreateAcrossAnElection: Create's transaction is applied by etcd but
// its answer lost to an election (the client sees "leader changed"); Create
// sends it again, finds the record it wrote and returns that gpid, once: no
// second record, no error.
func TestCreateAcrossAnElection(t *testing.T) {
	ctx := context.Background()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Name: "test", Dir: t.TempDir(), ClientURL: freeURL(t), PeerURL: freeURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	lost := 0
	loseFirstTxn := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if t, ok := req.(*pb.TxnRequest); ok && err == nil && method == "/etcdserverpb.KV/Txn" && lost == 0 && len(t.Success) == 1 && t.Success[0].GetRequestPut() != nil && strings.HasPrefix(string(t.Success[0].GetRequestPut().Key), procsPrefix) {
			lost++
			return rpctypes.ErrGRPCLeaderChanged // applied, but the answer is lost
		}
		return err
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.e.Clients[0].Addr().String()}, DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(loseFirstTxn)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := New(c)
	makeReady(t, s, "n1")
	p, err := s.Create(ctx, Proc{Node: "n1", Argv: []string{"true"}})
	if err != nil || lost != 1 {
		t.Fatalf("Create with its first answer lost: %v (answers lost: %d)", err, lost)
	}
	resp, err := c.Get(ctx, procsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 1 {
		t.Fatalf("%d records (err %v), want 1: gpid %d", resp.Count, err, p.GPID)
	}
	if got, _, err := s.Get(ctx, p.GPID); err != nil || got.Node != "n1" {
		t.Fatalf("gpid %d: %+v, %v", p.GPID, got, err)
	}
}

// Package etcdtest starts a real, embedded, single-member etcd for a unit
// test and gives a client of it: the agent's, the balancer's and the service
// controller's tests run against the real thing, not a mock.
package etcdtest

import (
	"context"
	"net"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ssi-cluster/ssi/pidtable"
)

// Client starts an embedded etcd in a temporary directory, on free loopback
// ports, and returns a client of it; both are closed when t ends.
func Client(t testing.TB) *clientv3.Client {
	t.Helper()
	clientURL, peerURL := freeURL(t), freeURL(t)
	e, err := pidtable.StartEmbedded(context.Background(), pidtable.EmbeddedConfig{Name: "test", Dir: t.TempDir(), ClientURL: clientURL, PeerURL: peerURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{clientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// freeURL is http://127.0.0.1:PORT on a port free a moment ago.
func freeURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

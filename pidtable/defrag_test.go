package pidtable

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDefrag: after a burst that was deleted and compacted away, the member
// defragments (the file shrinks) when the policy says it pays, and not when
// too much is in use.
func TestDefrag(t *testing.T) {
	ctx := context.Background()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Name: "test", Dir: t.TempDir(), ClientURL: freeURL(t), PeerURL: freeURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.e.Clients[0].Addr().String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	val := strings.Repeat("x", 64<<10)
	for i := range 400 { // 25 MiB
		if _, err := c.Put(ctx, fmt.Sprintf("/burst/%d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := c.Delete(ctx, "/burst/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	e.defrag = defragPolicy{minFree: 8 << 20, maxInUse: 1 << 10}
	if did, size, inUse, _, err := e.maybeDefrag(); did || err != nil {
		t.Fatalf("defragmented with %d of %d bytes in use, above maxInUse: %v", inUse, size, err)
	}
	e.defrag = defragPolicy{minFree: 8 << 20, maxInUse: 64 << 20}
	did, size, inUse, took, err := e.maybeDefrag()
	if !did || err != nil {
		t.Fatalf("no defragmentation with %d of %d bytes in use: %v", inUse, size, err)
	}
	after := e.e.Server.Backend().Size()
	t.Logf("db %d -> %d bytes (in use %d), paused %s", size, after, inUse, took)
	if after >= size/2 {
		t.Fatalf("db file %d bytes after defragmentation, was %d", after, size)
	}
	if _, err := c.Put(ctx, "/after", "ok"); err != nil {
		t.Fatal(err)
	}
}

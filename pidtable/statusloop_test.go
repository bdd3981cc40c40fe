package pidtable_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/pidtable"
)

// TestStatusLoop: the loop publishes on its lease at each tick and when
// asked (Now); when the lease is revoked it calls Lost, then Renew, and
// publishes on the new lease at once.
func TestStatusLoop(t *testing.T) {
	c := etcdtest.Client(t)
	st := pidtable.New(c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	newSession := func() *concurrency.Session {
		s, err := concurrency.NewSession(c, concurrency.WithTTL(5), concurrency.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var mu sync.Mutex
	sess := newSession()
	session := func() *concurrency.Session { mu.Lock(); defer mu.Unlock(); return sess }
	var publishes, lost, renews atomic.Int32
	now := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pidtable.StatusLoop{
			Interval: time.Hour, // only Now and a renewal publish
			Timeout:  time.Second,
			Session:  session,
			Publish: func(ctx context.Context) error {
				publishes.Add(1)
				return st.PublishStatus(ctx, "n1", pidtable.NodeStatus{Instance: "i"}, session().Lease())
			},
			Lost: func(context.Context) { lost.Add(1) },
			Renew: func(context.Context) error {
				renews.Add(1)
				s := newSession()
				mu.Lock()
				sess = s
				mu.Unlock()
				return nil
			},
			Now: now,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}.Run(ctx)
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: publishes %d, lost %d, renews %d", what, publishes.Load(), lost.Load(), renews.Load())
			}
		}
	}
	now <- struct{}{}
	waitFor("a publish when asked", func() bool { return publishes.Load() == 1 })
	old := session().Lease()
	if _, err := c.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	waitFor("a renewal and a publish on the new lease", func() bool {
		_, lease, ok, err := st.Status(ctx, "n1")
		return err == nil && ok && lease != old && lost.Load() == 1 && renews.Load() == 1
	})
	cancel()
	<-done
}

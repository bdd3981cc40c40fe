package pidtable

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The informers' fault tests (issue 14: "never a lost record, also when a
// watch is cut, compacted past, or an agent restarts mid-stream"). Each
// mutates the process table with creates, updates and deletes while the
// informer is cut off, stopped or starting, then checks that once the
// writes stop the copy is etcd's exactly: the same keys at the same mod
// revisions, nothing missing, nothing stale, nothing deleted still there.

// churn applies n random changes to the records of gpids 1..keys: a put
// (create or update) or a delete. Safe to call from any goroutine.
func churn(t *testing.T, c *clientv3.Client, rng *rand.Rand, keys, n int) {
	t.Helper()
	ctx := context.Background()
	for range n {
		g := uint64(1 + rng.IntN(keys))
		var err error
		if rng.IntN(4) == 0 {
			_, err = c.Delete(ctx, ProcKey(g))
		} else {
			val, _ := json.Marshal(Proc{GPID: g, Node: fmt.Sprintf("n%d", rng.IntN(3)), State: Running, Epoch: rng.Uint64N(1000)})
			_, err = c.Put(ctx, ProcKey(g), string(val))
		}
		if err != nil {
			t.Errorf("churn: %v", err)
			return
		}
	}
}

// churnAndCompact makes 300 changes, then compacts etcd's history up to
// them: a watch from before them can no longer resume.
func churnAndCompact(t *testing.T, s *Store, rng *rand.Rand) {
	t.Helper()
	churn(t, s.c, rng, 200, 300)
	r, err := s.c.Get(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.Compact(context.Background(), r.Header.Revision); err != nil {
		t.Fatal(err)
	}
}

// converged waits until the cache holds exactly etcd's records.
func converged(t *testing.T, s *Store, c *ProcCache) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := s.c.Get(context.Background(), procsPrefix, clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		want := map[uint64]int64{}
		for _, kv := range resp.Kvs {
			p, err := DecodeProc(kv.Value)
			if err != nil {
				t.Fatal(err)
			}
			want[p.GPID] = kv.ModRevision
		}
		procs, _ := c.Procs()
		last = ""
		if len(procs) != len(want) {
			last = fmt.Sprintf("cache holds %d records, etcd %d", len(procs), len(want))
			continue
		}
		for _, p := range procs {
			_, rev, _ := c.Get(p.GPID)
			if want[p.GPID] != rev {
				last = fmt.Sprintf("gpid %d: cached at revision %d, etcd's at %d (0: deleted)", p.GPID, rev, want[p.GPID])
				break
			}
		}
		if last == "" {
			return
		}
	}
	t.Fatalf("the cache did not converge on etcd's records: %s", last)
}

// proxy forwards TCP to an etcd member until cut: then every connection is
// closed and new ones are refused until heal.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	down   bool
}

func newProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	t.Cleanup(func() { l.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *proxy) serve() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) heal() { p.mu.Lock(); p.down = false; p.mu.Unlock() }

func TestInformerFaults(t *testing.T) {
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	run := func(c *ProcCache) (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { c.Run(rctx); close(done) }()
		return func() { cancel(); <-done }
	}

	// behindProxy returns a store with 300 changes made, and a running
	// cache of it whose etcd connection goes through a proxy.
	behindProxy := func(t *testing.T, rng *rand.Rand) (*Store, *proxy, *ProcCache) {
		s := newStore(t)
		p := newProxy(t, s.c.Endpoints()[0])
		cc, err := clientv3.New(clientv3.Config{Endpoints: []string{p.l.Addr().String()}, DialTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		churn(t, s.c, rng, 200, 300)
		c := New(cc).NewProcCache(nil, log)
		t.Cleanup(run(c))
		<-c.Synced()
		converged(t, s, c)
		return s, p, c
	}

	t.Run("watch cut", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		s, p, c := behindProxy(t, rng)
		for range 3 {
			p.cut()
			churn(t, s.c, rng, 200, 300)
			time.Sleep(300 * time.Millisecond)
			p.heal()
			converged(t, s, c)
		}
	})

	t.Run("compacted past", func(t *testing.T) {
		s, p, c := behindProxy(t, rand.New(rand.NewPCG(3, 4)))
		rng := rand.New(rand.NewPCG(3, 5))
		// Cut off, the table changes and etcd forgets the history the
		// watch would resume from: it must list again.
		p.cut()
		churnAndCompact(t, s, rng)
		churn(t, s.c, rng, 200, 50)
		p.heal()
		converged(t, s, c)
		if c.inf.Lists() < 2 {
			t.Errorf("the informer listed %d times; a watch compacted past must list again", c.inf.Lists())
		}
	})

	t.Run("stopped and started again", func(t *testing.T) {
		// An agent that stops watching (its informer's Run ends) and starts
		// again resumes from the revision it had, or lists again if etcd
		// compacted past it.
		s := newStore(t)
		rng := rand.New(rand.NewPCG(5, 6))
		churn(t, s.c, rng, 200, 300)
		c := s.NewProcCache(nil, log)
		stop := run(c)
		<-c.Synced()
		converged(t, s, c)
		stop()
		churn(t, s.c, rng, 200, 300)
		stop = run(c)
		converged(t, s, c)
		stop()
		churnAndCompact(t, s, rng)
		defer run(c)()
		converged(t, s, c)
	})

	t.Run("restart mid-stream", func(t *testing.T) {
		// A new agent lists while the table changes under it, in pages at
		// one revision, then watches from that revision: the changes made
		// during its list are not lost.
		s := newStore(t)
		rng := rand.New(rand.NewPCG(7, 8))
		churn(t, s.c, rng, 500, 1000)
		for range 5 {
			c := s.NewProcCache(nil, log)
			var wg sync.WaitGroup
			wg.Go(func() { churn(t, s.c, rand.New(rand.NewPCG(rng.Uint64(), 9)), 500, 200) })
			stop := run(c)
			wg.Wait()
			converged(t, s, c)
			stop()
		}
	})
}

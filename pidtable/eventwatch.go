package pidtable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ClusterEventsConfig says what WatchClusterEvents reports and to whom.
type ClusterEventsConfig struct {
	// Emit receives each event (Kind, Phase, From or Role and Reason set;
	// the caller writes it). It may be called from several goroutines.
	Emit func(context.Context, Event)
	// Leaders are the election prefixes whose leader changes are reported,
	// by role (e.g. "drain": DrainLeaderPrefix).
	Leaders map[string]string
}

// WatchClusterEvents reports, until ctx ends, the changes of the cluster
// that no single agent sees happen: a node's status key gone (node
// notready: its lease expired or was revoked), Left set in its settings
// (node left), and a new leader of an election in cfg.Leaders. The watches
// start now: what happened before is not reported (a node that dies with
// the watcher's own lease is not reported by the next watcher). Each watch
// is of keys written rarely (settings, elections; status keys only when
// deleted, filtered by etcd), so the cost does not grow with the nodes'
// status updates. It returns the first watch's error, or ctx's.
func (s *Store) WatchClusterEvents(ctx context.Context, cfg ClusterEventsConfig) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	var (
		wg   sync.WaitGroup
		once sync.Once
		werr error
	)
	run := func(fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil {
				once.Do(func() { werr = err })
			}
			cancel()
		})
	}
	run(func() error {
		return s.watch(ctx, statusPrefix, []clientv3.OpOption{clientv3.WithFilterPut()}, func(e *clientv3.Event) {
			name := strings.TrimPrefix(string(e.Kv.Key), statusPrefix)
			cfg.Emit(ctx, Event{Kind: EventNode, Phase: PhaseNotReady, From: name, Reason: "node " + name + " is NotReady: its agent's lease expired or was revoked"})
		})
	})
	run(func() error {
		return s.watch(ctx, nodeConfigPrefix, []clientv3.OpOption{clientv3.WithFilterDelete(), clientv3.WithPrevKV()}, func(e *clientv3.Event) {
			var cur, prev NodeConfig
			if json.Unmarshal(e.Kv.Value, &cur) != nil || cur.Left.IsZero() {
				return
			}
			if e.PrevKv != nil && json.Unmarshal(e.PrevKv.Value, &prev) == nil && prev.Left.Equal(cur.Left) {
				return
			}
			name := strings.TrimPrefix(string(e.Kv.Key), nodeConfigPrefix)
			cfg.Emit(ctx, Event{Kind: EventNode, Phase: PhaseLeft, From: name, Reason: "node " + name + "'s agent left on purpose (drained and stopped)"})
		})
	})
	for role, prefix := range cfg.Leaders {
		run(func() error { return s.watchLeader(ctx, role, prefix, cfg.Emit) })
	}
	wg.Wait()
	if werr != nil {
		return werr
	}
	return ctx.Err()
}

// watch calls fn with each event of a watch of prefix from now on.
func (s *Store) watch(ctx context.Context, prefix string, opts []clientv3.OpOption, fn func(*clientv3.Event)) error {
	for wr := range s.c.Watch(ctx, prefix, append(opts, clientv3.WithPrefix())...) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("pidtable: watch %s: %w", prefix, err)
		}
		for _, e := range wr.Events {
			fn(e)
		}
	}
	return ctx.Err()
}

// watchLeader reports each new leader of the election at prefix.
func (s *Store) watchLeader(ctx context.Context, role, prefix string, emit func(context.Context, Event)) error {
	last, err := s.leaderOf(ctx, prefix, role)
	if err != nil {
		return err
	}
	for wr := range s.c.Watch(ctx, prefix+"/", clientv3.WithPrefix()) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("pidtable: watch %s: %w", prefix, err)
		}
		cur, err := s.leaderOf(ctx, prefix, role)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return err
			}
			continue
		}
		if cur != last && cur != "" {
			emit(ctx, Event{Kind: EventLeader, Role: role, From: cur, Reason: cur + " became leader of the " + role + " controller"})
		}
		last = cur
	}
	return ctx.Err()
}

// NodeVersion returns how many times node's record was written since it
// was created (1: its first registration), 0 when it has none.
func (s *Store) NodeVersion(ctx context.Context, node string) (int64, error) {
	resp, err := s.c.Get(ctx, NodeKey(node))
	if err != nil {
		return 0, fmt.Errorf("pidtable: get node %s: %w", node, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return resp.Kvs[0].Version, nil
}

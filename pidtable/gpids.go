package pidtable

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// gpids are handed out from blocks a node reserves for itself: one
// compare-and-swap on the cluster's counter (next-gpid) per block of
// gpidBlockSize spawns, not one per spawn, so spawns on different nodes do
// not contend for one key. A gpid is unique (every block is a range of the
// counter that a CAS advanced past, so no two blocks overlap) and never
// reused (the counter only grows); what a node does not use of its block
// before its agent stops is skipped, so gpids have gaps and are in
// increasing order per node, not across the cluster.
const gpidBlockSize = 16

// gpidBlocks are the blocks a Store holds, one per node it creates jobs for.
type gpidBlocks struct {
	mu     sync.Mutex
	byNode map[string]*gpidBlock
	// reservations counts the blocks reserved, for tests and figures.
	reservations int
}

// gpidBlock is the rest of a reserved range: next up to, not including, end.
type gpidBlock struct{ next, end uint64 }

// take returns a gpid of node's block, reserving a new block when it is used up.
func (b *gpidBlocks) take(ctx context.Context, c *clientv3.Client, node string) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	blk := b.byNode[node]
	if blk == nil || blk.next >= blk.end {
		first, err := reserveGPIDs(ctx, c, node, gpidBlockSize)
		if err != nil {
			return 0, err
		}
		blk = &gpidBlock{next: first, end: first + gpidBlockSize}
		b.byNode[node] = blk
		b.reservations++
	}
	g := blk.next
	blk.next++
	return g, nil
}

// reserveGPIDs advances the cluster's counter by n for node and returns the
// first gpid of the range it passed over. A node without a live status (not
// Ready) reserves nothing: ErrNodeNotReady.
func reserveGPIDs(ctx context.Context, c *clientv3.Client, node string, n uint64) (uint64, error) {
	for range maxCASRetries {
		resp, err := c.Get(ctx, nextGPIDKey)
		if err != nil {
			return 0, fmt.Errorf("pidtable: read next gpid: %w", err)
		}
		next, rev := uint64(1), int64(0)
		if len(resp.Kvs) == 1 {
			next, err = strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("pidtable: %s holds %q: %w", nextGPIDKey, resp.Kvs[0].Value, err)
			}
			rev = resp.Kvs[0].ModRevision
		}
		tr, err := c.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(nextGPIDKey), "=", rev),
			clientv3.Compare(clientv3.CreateRevision(StatusKey(node)), ">", 0),
		).Then(
			clientv3.OpPut(nextGPIDKey, strconv.FormatUint(next+n, 10)),
		).Else(
			clientv3.OpGet(StatusKey(node), clientv3.WithCountOnly()),
		).Commit()
		if err != nil {
			return 0, fmt.Errorf("pidtable: reserve gpids: %w", err)
		}
		if tr.Succeeded {
			return next, nil
		}
		if tr.Responses[0].GetResponseRange().Count == 0 {
			return 0, fmt.Errorf("%w: %s", ErrNodeNotReady, node)
		}
	}
	return 0, fmt.Errorf("%w: reserving gpids", ErrConflict)
}

package pidtable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ListOptions says what ListProcs reads.
type ListOptions struct {
	// After lists the gpids above it only (a listing resumed where the last
	// one stopped); 0 lists from the first.
	After uint64
	// History also lists archived records (history.go), merged in gpid order.
	History bool
	// Rev reads at this etcd revision (0: the current one); a listing of
	// several reads (NodesSnapshot, then the table) uses one revision.
	Rev int64
	// PageSize is the number of records per range read (DefaultPageSize
	// when zero).
	PageSize int
	// Bad, when set, is told of each record that does not decode (it is
	// skipped); without it such a record fails the listing.
	Bad func(key string, err error)
}

// DefaultPageSize is the records a listing reads per range request: big
// enough that a round trip carries a few hundred KB, small enough that the
// reader's memory does not grow with the table.
const DefaultPageSize = 500

// ErrStopList, returned by ListProcs' fn, ends the listing early; ListProcs
// then returns no error.
var ErrStopList = errors.New("pidtable: stop listing")

// ListProcs calls fn for every record, in gpid order, reading the table as a
// stream of chunks at one revision (etcd's RangeStream; where the server
// has none, range reads of PageSize records), so that its memory does not
// grow with the table and what it lists is one consistent state: each record
// once, none missed. rev is the record's mod revision (to guard a write
// on). A listing that outlives the etcd's compaction window (minutes) goes
// on at the newest revision, after the last key it read. It returns the
// revision read at (the last one, if it changed).
//
// A stream, not pages: etcd counts every key from a page's start to the
// range's end to answer a limited range read, so reading a prefix of n keys
// in pages costs O(n²) (100,000 records in pages of 500: 7-13 s here,
// against 1.4-3 s for one read); a stream's chunks are not counted.
func (s *Store) ListProcs(ctx context.Context, o ListOptions, fn func(p Proc, rev int64) error) (int64, error) {
	return s.list(ctx, o, func(kv *mvccpb.KeyValue) error {
		p, err := DecodeProc(kv.Value)
		if err != nil {
			if o.Bad == nil {
				return fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
			}
			o.Bad(string(kv.Key), err)
			return nil
		}
		return fn(p, kv.ModRevision)
	})
}

// Head is what a listing filters records on, decoded without the rest.
type Head struct {
	GPID  uint64 `json:"gpid"`
	Node  string `json:"node"`
	User  string `json:"user"`
	State State  `json:"state"`
}

// ListRaw is ListProcs for a reader that passes the records on as JSON (ssi
// ps): fn gets each record's Head and the record as stored, which is one
// valid JSON object of at most 1 MiB with a gpid and a node (what does not
// pass is skipped and told to Bad, as in ListProcs); decoding the head only
// costs a fraction of decoding the record. raw is fn's only for the call.
func (s *Store) ListRaw(ctx context.Context, o ListOptions, fn func(h Head, raw []byte, rev int64) error) (int64, error) {
	return s.list(ctx, o, func(kv *mvccpb.KeyValue) error {
		var h Head
		var err error
		ok := false
		if len(kv.Value) <= maxRecord {
			h, ok = validHead(kv.Value) // json.Valid and decodeHead in one pass
		}
		switch {
		case len(kv.Value) > maxRecord:
			err = fmt.Errorf("pidtable: record of %d bytes: at most %d", len(kv.Value), maxRecord)
		case ok:
		case !json.Valid(kv.Value):
			err = errNotObject
		default:
			h, err = decodeHead(kv.Value)
		}
		switch {
		case err != nil:
		case h.GPID == 0 || h.Node == "":
			err = errors.New("pidtable: record without gpid or node")
		}
		if err != nil {
			if o.Bad == nil {
				return fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
			}
			o.Bad(string(kv.Key), err)
			return nil
		}
		return fn(h, kv.Value, kv.ModRevision)
	})
}

// list calls fn for every key of the listing, in gpid order.
func (s *Store) list(ctx context.Context, o ListOptions, fn func(kv *mvccpb.KeyValue) error) (int64, error) {
	size := o.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	ctx, cancel := context.WithCancel(ctx) // ends the streams
	defer cancel()
	rev := o.Rev
	if rev == 0 {
		// A stream tells its revision only at its end: pin one first, so
		// that both prefixes, and a stream opened again, read at it.
		resp, err := s.c.Get(ctx, nextGPIDKey)
		if err != nil {
			return 0, fmt.Errorf("pidtable: list: %w", err)
		}
		rev = resp.Header.Revision
	}
	start := func(pfx string) string {
		if o.After == 0 {
			return pfx
		}
		return fmt.Sprintf("%s%012d\x00", pfx, o.After)
	}
	live := &pager{c: s.c, pfx: procsPrefix, next: start(procsPrefix), size: size, rev: &rev}
	var hist *pager
	if o.History {
		hist = &pager{c: s.c, pfx: historyPrefix, next: start(historyPrefix), size: size, rev: &rev}
	}
	for {
		kv, err := live.peek(ctx)
		if err != nil {
			return rev, err
		}
		from := live
		if hist != nil {
			hkv, err := hist.peek(ctx)
			if err != nil {
				return rev, err
			}
			// Both prefixes hold 12-digit gpids: the suffixes sort as numbers.
			if hkv != nil && (kv == nil || string(hkv.Key[len(historyPrefix):]) < string(kv.Key[len(procsPrefix):])) {
				kv, from = hkv, hist
			}
		}
		if kv == nil {
			return rev, nil
		}
		from.pop()
		if err := fn(kv); err != nil {
			if errors.Is(err, ErrStopList) {
				return rev, nil
			}
			return rev, err
		}
	}
}

// pager reads one prefix in chunks at the revision rev points to (shared by
// the pagers of one listing; 0 until the first read sets it).
type pager struct {
	c    *clientv3.Client
	pfx  string
	next string // the first key not yet consumed
	size int
	rev  *int64
	// stream is the RangeStream being read (nil: none open); paged is set
	// once the server turned out to have none.
	stream clientv3.GetStreamChan
	paged  bool
	// strict returns ErrCompacted instead of going on at a newer revision
	// (an informer lists again, so that its watch starts where the list
	// ended and misses nothing).
	strict bool
	buf    []*mvccpb.KeyValue
	i      int
	done   bool
}

// peek returns the next record without consuming it (nil at the end).
func (pg *pager) peek(ctx context.Context) (*mvccpb.KeyValue, error) {
	var retryUntil time.Time // set by the first election error
	for pg.i >= len(pg.buf) {
		if pg.done {
			return nil, nil
		}
		var err error
		if pg.paged {
			err = pg.readPage(ctx)
		} else {
			err = pg.readChunk(ctx)
		}
		if errors.Is(err, rpctypes.ErrCompacted) && !pg.strict {
			// Go on at the newest revision, after the last key consumed.
			resp, gerr := pg.c.Get(ctx, nextGPIDKey)
			if gerr != nil {
				return nil, fmt.Errorf("pidtable: list %s: %w", pg.pfx, gerr)
			}
			*pg.rev, pg.stream = resp.Header.Revision, nil
			continue
		}
		if err != nil && electionError(err) {
			// The member serving the stream is gone, or etcd is between
			// leaders: open the stream again, at the same revision after
			// the last key consumed, so the listing goes on where it broke
			// off, each record still once (RetryReads' bound).
			if retryUntil.IsZero() {
				retryUntil = time.Now().Add(ReadRetryFor)
			}
			if time.Now().Before(retryUntil) {
				pg.stream = nil
				select {
				case <-ctx.Done():
					return nil, fmt.Errorf("pidtable: list %s: %w", pg.pfx, err)
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("pidtable: list %s: %w", pg.pfx, err)
		}
	}
	return pg.buf[pg.i], nil
}

// pop consumes the record peek returned.
func (pg *pager) pop() {
	pg.next = string(pg.buf[pg.i].Key) + "\x00"
	pg.i++
}

// readChunk reads the next chunk of the stream, opening it if need be.
func (pg *pager) readChunk(ctx context.Context) error {
	if pg.stream == nil {
		opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(pg.pfx))}
		if *pg.rev != 0 {
			opts = append(opts, clientv3.WithRev(*pg.rev))
		}
		st, err := pg.c.GetStream(ctx, pg.next, opts...)
		if err != nil {
			return pg.noStream(ctx, err)
		}
		pg.stream = st
	}
	r, ok := <-pg.stream
	if !ok {
		pg.done = true
		pg.buf, pg.i = nil, 0
		return nil
	}
	if err := r.Err(); err != nil {
		pg.stream = nil
		return pg.noStream(ctx, err)
	}
	if r.RangeResponse == nil {
		return nil
	}
	pg.buf, pg.i = r.Kvs, 0
	return nil
}

// noStream turns to range reads in pages when the server has no
// RangeStream (etcd before 3.7); other errors are returned.
func (pg *pager) noStream(ctx context.Context, err error) error {
	if status.Code(err) != codes.Unimplemented {
		return rpctypes.Error(err) // ErrCompacted, say
	}
	pg.paged = true
	return pg.readPage(ctx)
}

// readPage reads the next page with a limited range read.
func (pg *pager) readPage(ctx context.Context) error {
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(pg.pfx)), clientv3.WithLimit(int64(pg.size))}
	if *pg.rev != 0 {
		opts = append(opts, clientv3.WithRev(*pg.rev))
	}
	resp, err := pg.c.Get(ctx, pg.next, opts...)
	if err != nil {
		return err
	}
	if *pg.rev == 0 {
		*pg.rev = resp.Header.Revision
	}
	pg.buf, pg.i = resp.Kvs, 0
	pg.done = !resp.More || len(resp.Kvs) == 0
	return nil
}

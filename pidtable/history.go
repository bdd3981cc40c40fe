package pidtable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The history. A job that has ended stays in the live table (procs/) for the
// retention its owner's agent is configured with (--retention), with its
// output; then it is archived: one transaction, guarded by the record's mod
// revision, deletes procs/<gpid> and writes history/<gpid> (the record, with
// Archived set) on a lease. The lease expires History after the archive, and
// etcd drops the record with it, so the history is bounded by the cluster's
// spawn rate times History, and the live table by the running jobs plus
// those that ended within the retention. `ssi wait`, `ssi ps --exited` and a
// job's GET still find an archived record (Find, WaitEnded, ListProcs with
// History); nothing writes it again, and a restore of a checkpoint under the
// gpid (Recreate) deletes it in the transaction that brings the gpid back.

// historyPrefix holds archived records, keyed like procs/.
const historyPrefix = prefix + "history/"

// DefaultHistory is how long an archived record is kept unless the store is
// told otherwise (WithHistory).
const DefaultHistory = 24 * time.Hour

// HistoryKey returns the etcd key of a gpid's archived record.
func HistoryKey(gpid uint64) string { return fmt.Sprintf("%s%012d", historyPrefix, gpid) }

// ErrNotEnded is returned by ArchiveAt for a record of a job that has not
// ended: only ended records are archived.
var ErrNotEnded = errors.New("pidtable: the job has not ended")

// Option configures a Store.
type Option func(*Store)

// WithHistory sets how long archived records are kept (at least a second;
// DefaultHistory when zero).
func WithHistory(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.history.keep = max(d, time.Second)
		}
	}
}

// historyLeases hands out the leases archived records are written on: one
// per time bucket of a 24th of the history (a minute at least), shared by
// every record this store archives in that bucket, so that a day of history
// is 24 leases per store, not one per job. A record archived in a bucket
// lives between History and History plus one bucket.
type historyLeases struct {
	keep time.Duration

	mu     sync.Mutex
	bucket int64 // the bucket id holds the lease of
	id     clientv3.LeaseID
}

func (h *historyLeases) width() time.Duration {
	return max(h.keep/24, min(time.Minute, h.keep))
}

// lease returns the lease of the current bucket, granting it when the bucket
// is new (or when fresh is set: the cached one is gone).
func (h *historyLeases) lease(ctx context.Context, c *clientv3.Client, now time.Time, fresh bool) (clientv3.LeaseID, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.width()
	b := now.UnixNano() / int64(w)
	if b == h.bucket && h.id != 0 && !fresh {
		return h.id, nil
	}
	// Until the end of the bucket, then History more.
	ttl := time.Duration(b+1)*w - time.Duration(now.UnixNano()) + h.keep
	g, err := c.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("pidtable: grant a history lease: %w", err)
	}
	h.bucket, h.id = b, g.ID
	return g.ID, nil
}

// ArchiveAt moves gpid's ended record from the live table to the history in
// one transaction, if the record is still at mod revision rev (the caller's
// read): a record changed meanwhile (restored, say) is left alone with
// ErrChanged. A record of a job that has not ended is refused with
// ErrNotEnded. It returns the archived record.
func (s *Store) ArchiveAt(ctx context.Context, gpid uint64, rev int64) (Proc, error) {
	resp, err := s.c.Get(ctx, ProcKey(gpid))
	if err != nil {
		return Proc{}, fmt.Errorf("pidtable: get gpid %d: %w", gpid, err)
	}
	if len(resp.Kvs) == 0 {
		return Proc{}, fmt.Errorf("%w: gpid %d", ErrNotFound, gpid)
	}
	if cur := resp.Kvs[0].ModRevision; cur != rev {
		return Proc{}, fmt.Errorf("%w: gpid %d is at revision %d, not %d", ErrChanged, gpid, cur, rev)
	}
	p, err := DecodeProc(resp.Kvs[0].Value)
	if err != nil {
		return Proc{}, fmt.Errorf("pidtable: decode gpid %d: %w", gpid, err)
	}
	if !p.State.Ended() {
		return Proc{}, fmt.Errorf("%w: gpid %d is %s", ErrNotEnded, gpid, p.State)
	}
	return p, s.archive(ctx, p, resp.Kvs[0].Value, rev)
}

// archive writes the transaction of ArchiveAt for p, read at rev as raw.
func (s *Store) archive(ctx context.Context, p Proc, raw []byte, rev int64) error {
	now := time.Now().UTC()
	// The record as read, with Archived added: fields this version does
	// not know (a newer writer's) are kept.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return fmt.Errorf("pidtable: decode gpid %d: %w", p.GPID, err)
	}
	stamp, _ := json.Marshal(now)
	fields["archived"] = stamp
	val, err := json.Marshal(fields)
	if err != nil {
		return fmt.Errorf("pidtable: encode gpid %d: %w", p.GPID, err)
	}
	key := ProcKey(p.GPID)
	for fresh := false; ; fresh = true {
		lease, err := s.history.lease(ctx, s.c, now, fresh)
		if err != nil {
			return err
		}
		tr, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpDelete(key), clientv3.OpPut(HistoryKey(p.GPID), string(val), clientv3.WithLease(lease))).
			Commit()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && !fresh {
			continue // revoked or expired early (a restored etcd): a new one
		}
		if err != nil {
			return fmt.Errorf("pidtable: archive gpid %d: %w: %w", p.GPID, ErrOutcomeUnknown, err)
		}
		if !tr.Succeeded {
			return fmt.Errorf("%w: gpid %d is no longer at revision %d", ErrChanged, p.GPID, rev)
		}
		return nil
	}
}

// Find returns gpid's record: the live one, else the archived one (Archived
// set). The revision is the mod revision of the key it was read from, so a
// compare-and-swap may use it only when Archived is zero.
func (s *Store) Find(ctx context.Context, gpid uint64) (Proc, int64, error) {
	tr, err := s.c.Txn(ctx).Then(clientv3.OpGet(ProcKey(gpid)), clientv3.OpGet(HistoryKey(gpid))).Commit()
	if err != nil {
		return Proc{}, 0, fmt.Errorf("pidtable: get gpid %d: %w", gpid, err)
	}
	for _, r := range tr.Responses {
		kvs := r.GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue
		}
		p, err := DecodeProc(kvs[0].Value)
		if err != nil {
			return Proc{}, 0, fmt.Errorf("pidtable: decode %s: %w", kvs[0].Key, err)
		}
		return p, kvs[0].ModRevision, nil
	}
	return Proc{}, 0, fmt.Errorf("%w: gpid %d", ErrNotFound, gpid)
}

// ArchiveOrphans archives the ended records that ended before cutoff and
// whose node is not Ready (no live status): the records no agent's own
// retention will ever archive, because their node is gone. It reads the
// table in pages at one revision, archives each such record guarded by the
// revision it was read at, and returns how many it archived. Any agent may
// run it; the elected one does (agent/archive.go).
func (s *Store) ArchiveOrphans(ctx context.Context, cutoff time.Time) (int, error) {
	snap, err := s.NodesSnapshot(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	// A record that does not decode is skipped: it is no ended job's, and
	// ssi ps and the agents' caches report it.
	skip := func(string, error) {}
	_, err = s.ListProcs(ctx, ListOptions{Rev: snap.Revision, Bad: skip}, func(p Proc, rev int64) error {
		if !p.State.Ended() || p.Ended.IsZero() || !p.Ended.Before(cutoff) || snap.Ready(p.Node) {
			return nil
		}
		switch _, err := s.ArchiveAt(ctx, p.GPID, rev); {
		case err == nil:
			n++
		case errors.Is(err, ErrChanged), errors.Is(err, ErrNotFound), errors.Is(err, ErrNotEnded):
			// Changed since the page was read: its next writer decides.
		default:
			return err
		}
		return nil
	})
	return n, err
}

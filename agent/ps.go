package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// ssi ps: GET /v1/procs streams the table (api/ps.go says the wire format).
// The agent reads the nodes' statuses and then the table in pages
// (pidtable.ListRaw: a stream), all at one etcd revision, filters each
// record on its head (the caller's visibility: a user sees their own jobs,
// an admin everyone's; the query's user, node, states, after and limit) and
// writes the rows as a JSON array while it reads, flushing every psFlushRows
// rows: the first rows leave before the last chunk is read, and neither the
// agent's memory nor the client's grows with the table. A row is the record
// as stored with node_ready and stats added (row): what encoding
// api.ProcInfo writes, without decoding and encoding each record again.

// psFlushRows is how many rows are written between flushes to the client.
const psFlushRows = 256

func (a *Agent) handlePS(w http.ResponseWriter, r *http.Request) {
	q, err := api.ParsePSQuery(r.URL.Query())
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "GET /v1/procs: %v", err))
		return
	}
	ctx := r.Context()
	snap, err := a.store.NodesSnapshot(ctx)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	who := access.CallerOf(r)
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set(api.HeaderRevision, strconv.FormatInt(snap.Revision, 10))
	hdr.Set("Trailer", api.HeaderNext+", "+api.HeaderListError)
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	bw := bufio.NewWriterSize(w, 64<<10)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	rows, bad := 0, 0
	var last uint64
	var buf []byte
	_ = bw.WriteByte('[')
	_, err = a.store.ListRaw(ctx, pidtable.ListOptions{
		After: q.After, History: q.History(), Rev: snap.Revision,
		Bad: func(key string, err error) {
			bad++
			a.log.Warn("ps: undecodable record skipped", "key", key, "err", err)
		},
	}, func(h pidtable.Head, raw []byte, _ int64) error {
		p := pidtable.Proc{GPID: h.GPID, Node: h.Node, User: h.User, State: h.State}
		if !access.Visible(who, p.User) || !q.Match(p) {
			return nil
		}
		if q.Limit > 0 && rows == q.Limit {
			hdr.Set(api.HeaderNext, strconv.FormatUint(last, 10))
			return pidtable.ErrStopList
		}
		if rows > 0 {
			_ = bw.WriteByte(',')
		}
		if buf, err = row(buf[:0], snap, h, raw); err != nil {
			return err
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
		rows, last = rows+1, p.GPID
		if rows%psFlushRows == 0 || rows == 1 {
			return flush()
		}
		return nil
	})
	if err != nil {
		// The status is sent: the array stays unclosed so that no client
		// takes this part for the whole, and the trailer says why.
		if !errors.Is(err, ctx.Err()) {
			a.log.Warn("ps: listing broken off", "rows", rows, "err", err)
		}
		hdr.Set(api.HeaderListError, "node "+a.cfg.Name+": "+err.Error())
		_ = flush()
		return
	}
	_, _ = bw.WriteString("]\n")
	_ = flush()
	if bad > 0 {
		a.log.Warn("ps: listing skipped undecodable records", "count", bad)
	}
}

// row appends to b the JSON of api.ProcInfo for the record raw (one JSON
// object, as ListRaw passes it) with head h: the record's fields as stored,
// then node_ready and stats, as encoding the ProcInfo would write them.
func row(b []byte, snap *pidtable.Snapshot, h pidtable.Head, raw []byte) ([]byte, error) {
	obj := bytes.TrimRight(raw, " \t\r\n")
	if len(obj) < 2 || obj[len(obj)-1] != '}' {
		return b, fmt.Errorf("gpid %d: record is not a JSON object", h.GPID)
	}
	b = append(b, obj[:len(obj)-1]...)
	st, ready := snap.Status[h.Node]
	b = append(b, `,"node_ready":`...)
	b = strconv.AppendBool(b, ready)
	if ps, ok := st.Procs[h.GPID]; ready && ok && !h.State.Ended() {
		stats, err := json.Marshal(ps)
		if err != nil {
			return b, err
		}
		b = append(b, `,"stats":`...)
		b = append(b, stats...)
	}
	return append(b, "}\n"...), nil
}

package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/ssi-cluster/ssi/pidtable"
)

// GET /v1/procs lists jobs as one JSON array of ProcInfo, sorted by gpid,
// that the agent streams as it reads the table (in pages, at one etcd
// revision): a client decodes it element by element (PSStream) and its
// memory does not grow with the table. The query narrows the listing on the
// agent: user=, node=, state= (comma-separated states; without it the live
// states, and with exited=1 every state), after= (gpids above it only) and
// limit= (at most that many rows). The answer's header carries the revision
// read at (HeaderRevision); its trailer, when limit cut the listing short,
// the gpid to pass as after= for the rest (HeaderNext), and, when the
// listing broke off after it began, why (HeaderListError; the array is then
// left unclosed, so that no client takes a part for the whole).
const (
	HeaderNext      = "X-Ssi-Next-After"
	HeaderListError = "X-Ssi-List-Error"
)

// PSQuery is what a listing of jobs asks for.
type PSQuery struct {
	// User lists this user's jobs only ("" for all the caller may see: an
	// admin sees everyone's, a user their own).
	User string
	// Node lists the jobs of this node only.
	Node string
	// States lists jobs in these states only; empty: the live states, or
	// every state with Exited.
	States []pidtable.State
	// Exited includes ended jobs (those of the last --retention in the live
	// table and the archived ones).
	Exited bool
	// After lists gpids above it only; Limit bounds the rows (0: no bound).
	After uint64
	Limit int
}

// Values encodes q as the query of GET /v1/procs.
func (q PSQuery) Values() url.Values {
	v := url.Values{}
	if q.User != "" {
		v.Set("user", q.User)
	}
	if q.Node != "" {
		v.Set("node", q.Node)
	}
	if len(q.States) > 0 {
		s := make([]string, len(q.States))
		for i, st := range q.States {
			s[i] = string(st)
		}
		v.Set("state", strings.Join(s, ","))
	}
	if q.Exited {
		v.Set("exited", "1")
	}
	if q.After > 0 {
		v.Set("after", strconv.FormatUint(q.After, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// ParsePSQuery decodes the query of GET /v1/procs; an error says which
// parameter is wrong and what it takes.
func ParsePSQuery(v url.Values) (PSQuery, error) {
	q := PSQuery{User: v.Get("user"), Node: v.Get("node"), Exited: v.Get("exited") != ""}
	if s := v.Get("state"); s != "" {
		states, err := ParseStates(s)
		if err != nil {
			return q, err
		}
		q.States = states
	}
	if s := v.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return q, fmt.Errorf("after=%q: want a gpid (a non-negative integer)", s)
		}
		q.After = n
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, fmt.Errorf("limit=%q: want a non-negative number of rows (0: no limit)", s)
		}
		q.Limit = n
	}
	return q, nil
}

// ParseStates parses a comma-separated list of states.
func ParseStates(s string) ([]pidtable.State, error) {
	var out []pidtable.State
	for _, f := range strings.Split(s, ",") {
		st := pidtable.State(strings.TrimSpace(f))
		if !slices.Contains(pidtable.States, st) {
			names := make([]string, len(pidtable.States))
			for i, s := range pidtable.States {
				names[i] = string(s)
			}
			return nil, fmt.Errorf("state %q: want one or more of %s, comma-separated", f, strings.Join(names, ", "))
		}
		out = append(out, st)
	}
	return out, nil
}

// History reports whether the listing includes ended jobs, and so the
// archived ones.
func (q PSQuery) History() bool {
	if len(q.States) == 0 {
		return q.Exited
	}
	return slices.ContainsFunc(q.States, pidtable.State.Ended)
}

// Match reports whether p is one of the jobs q asks for (the caller's
// visibility aside, which the agent applies).
func (q PSQuery) Match(p pidtable.Proc) bool {
	switch {
	case q.User != "" && p.User != q.User, q.Node != "" && p.Node != q.Node, p.GPID <= q.After:
		return false
	case len(q.States) > 0:
		return slices.Contains(q.States, p.State)
	}
	return q.Exited || !p.State.Ended()
}

// PSResult is what a listing says besides its rows.
type PSResult struct {
	// Rows is the number of rows passed on.
	Rows int
	// Next, when the limit cut the listing short, is the gpid to list after
	// for the rest (0: nothing left).
	Next uint64
}

// errStop ends a listing a client stops (PSStream's limit).
var errStop = errors.New("api: stop listing")

// PSStream lists jobs, calling fn for each row as it arrives. It applies q
// itself too, so that an agent that ignores a filter (an older one) still
// gives what was asked.
func (c *Client) PSStream(ctx context.Context, q PSQuery, fn func(ProcInfo) error) (PSResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := c.send(ctx, http.MethodGet, "/v1/procs?"+q.Values().Encode(), nil)
	if err != nil {
		return PSResult{}, err
	}
	defer resp.Body.Close()
	var res PSResult
	var last uint64
	// The rows are split and decoded by psdecode.go's rowReader and
	// decodeRow, a fifth of what json.Decoder took.
	rows := &rowReader{r: resp.Body}
	for {
		var p ProcInfo
		var ok bool
		if ok, err = rows.next(&p); err != nil || !ok {
			break
		}
		if !q.Match(p.Proc) {
			continue
		}
		if q.Limit > 0 && res.Rows == q.Limit {
			res.Next = last // an older agent sent more than the limit
			err = errStop
			break
		}
		res.Rows, last = res.Rows+1, p.GPID
		if err = fn(p); err != nil {
			break
		}
	}
	if err == nil {
		// The trailer is read with the body's end.
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	}
	switch {
	case errors.Is(err, errStop):
		return res, nil
	case err != nil && resp.Trailer.Get(HeaderListError) != "":
		return res, fmt.Errorf("listing broken off after %d rows: %s", res.Rows, resp.Trailer.Get(HeaderListError))
	case err != nil:
		return res, fmt.Errorf("listing broken off after %d rows: %w", res.Rows, err)
	}
	if s := resp.Trailer.Get(HeaderNext); s != "" && res.Next == 0 {
		res.Next, _ = strconv.ParseUint(s, 10, 64)
	}
	return res, nil
}

// PS lists jobs: all users' when user is "", ended ones too when exited.
// It holds the whole listing in memory; PSStream does not.
func (c *Client) PS(ctx context.Context, user string, exited bool) ([]ProcInfo, error) {
	out := []ProcInfo{}
	_, err := c.PSStream(ctx, PSQuery{User: user, Exited: exited}, func(p ProcInfo) error {
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

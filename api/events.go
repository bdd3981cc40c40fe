package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ssi-cluster/ssi/pidtable"
)

// EventsQuery selects events of GET /v1/events; zero fields select all.
type EventsQuery struct {
	// Since is an etcd revision: only events written after it.
	Since int64
	GPID  uint64
	// Node: events written by the node or naming it (from, to).
	Node string
	// Types are event kinds (pidtable.EventKinds); any of them.
	Types []string
	// Limit is how many of the newest to answer (0: the agent's default, 500).
	Limit int
}

func (q EventsQuery) path(follow bool) string {
	v := url.Values{}
	if q.Since > 0 {
		v.Set("since", strconv.FormatInt(q.Since, 10))
	}
	if q.GPID != 0 {
		v.Set("gpid", strconv.FormatUint(q.GPID, 10))
	}
	if q.Node != "" {
		v.Set("node", q.Node)
	}
	if len(q.Types) > 0 {
		v.Set("type", strings.Join(q.Types, ","))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if follow {
		v.Set("follow", "1")
	}
	return "/v1/events?" + v.Encode()
}

// EventsMatching returns the events q selects, oldest first, and the
// revision to pass as Since to read the ones written after them.
func (c *Client) EventsMatching(ctx context.Context, q EventsQuery) ([]pidtable.Event, int64, error) {
	path := q.path(false)
	var out []pidtable.Event
	h, err := c.doHeader(ctx, http.MethodGet, path, nil, &out)
	if err != nil {
		return nil, 0, err
	}
	rev, err := strconv.ParseInt(h.Get(HeaderRevision), 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: the agent sent no valid %s header (%q): an agent older than this ssi?", path, HeaderRevision, h.Get(HeaderRevision))
	}
	return out, rev, nil
}

// FollowEvents calls fn with the events q selects, then with each new one as
// the agent's watch of the log delivers it, until ctx ends (nil), fn fails
// (its error) or the stream breaks (an error: follow again).
func (c *Client) FollowEvents(ctx context.Context, q EventsQuery, fn func(pidtable.Event) error) error {
	resp, err := c.send(ctx, http.MethodGet, q.path(true), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev pidtable.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("bad event %q: %w", sc.Bytes(), err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("the agent's event stream broke: %w", err)
	}
	return fmt.Errorf("the agent ended the event stream (it stopped, or lost etcd)")
}

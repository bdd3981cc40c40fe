package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// BalanceStatus answers GET /v1/balancer: the cluster's balancer setting, its
// leader, and what the leader last published.
type BalanceStatus struct {
	Config pidtable.BalancerConfig `json:"config"`
	// Leader is the agent elected to run the balancer ("" when none is).
	Leader string `json:"leader"`
	// Status is the leader's last round; nil until a leader published one.
	Status *pidtable.BalancerStatus `json:"status,omitempty"`
	// Recent are the latest move, moved and failed events.
	Recent []pidtable.Event `json:"recent,omitempty"`
}

// BalanceRequest (PUT /v1/balancer) switches the balancer on or off and
// optionally retunes it; nil fields are left as they are, zero tuning values
// restore the policy's defaults.
type BalanceRequest struct {
	Enabled            bool           `json:"enabled"`
	Residency          *time.Duration `json:"residency,omitempty"`
	Hysteresis         *float64       `json:"hysteresis,omitempty"`
	MaxInflightPerNode *int           `json:"max_inflight_per_node,omitempty"`
	MaxMovesPerRound   *int           `json:"max_moves_per_round,omitempty"`
	MaxFreeze          *time.Duration `json:"max_freeze,omitempty"`
}

// Balance returns the balancer's state.
func (c *Client) Balance(ctx context.Context) (BalanceStatus, error) {
	var out BalanceStatus
	return out, c.do(ctx, http.MethodGet, "/v1/balancer", nil, &out)
}

// SetBalance changes the balancer's setting and returns the new state.
func (c *Client) SetBalance(ctx context.Context, r BalanceRequest) (BalanceStatus, error) {
	var out BalanceStatus
	return out, c.do(ctx, http.MethodPut, "/v1/balancer", r, &out)
}

// Events returns the cluster's events written after etcd revision since (0:
// all, at most limit of the newest, 0 for the server's default), only gpid's
// when gpid is not 0, and the revision to pass as since to get what follows.
func (c *Client) Events(ctx context.Context, since int64, gpid uint64, limit int) ([]pidtable.Event, int64, error) {
	q := url.Values{}
	if since > 0 {
		q.Set("since", strconv.FormatInt(since, 10))
	}
	if gpid != 0 {
		q.Set("gpid", strconv.FormatUint(gpid, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/events?" + q.Encode()
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

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

// Events returns the cluster's events after the event ID after ("" for the
// oldest kept), those of gpid only when it is not 0, at most limit of the
// newest (0: the server's default).
func (c *Client) Events(ctx context.Context, after string, gpid uint64, limit int) ([]pidtable.Event, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if gpid != 0 {
		q.Set("gpid", strconv.FormatUint(gpid, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out []pidtable.Event
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/events?%s", q.Encode()), nil, &out)
}

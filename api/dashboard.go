package api

import (
	"context"
	"net/http"
	"time"
)

// DashboardLogin answers POST /v1/dashboard/logins: a one-time link that
// opens a web dashboard session as the caller (package dashboard).
type DashboardLogin struct {
	// URL is the link, on the agent the request reached.
	URL string `json:"url"`
	// Expires is when the link stops working if it was not opened.
	Expires time.Time `json:"expires"`
	// SessionTTL is how long the session it opens lasts.
	SessionTTL time.Duration `json:"session_ttl"`
}

// DashboardLogin asks the agent for a login link to its web dashboard.
func (c *Client) DashboardLogin(ctx context.Context) (DashboardLogin, error) {
	var out DashboardLogin
	return out, c.do(ctx, http.MethodPost, "/v1/dashboard/logins", nil, &out)
}

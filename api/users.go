package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// RevokeRequest (admin) revokes the current certificate of user Name, or the
// certificate with serial Serial (lower- or upper-case hex); one of the two.
type RevokeRequest struct {
	Name   string `json:"name,omitempty"`
	Serial string `json:"serial,omitempty"`
}

// Revocation is a revoked certificate.
type Revocation struct {
	Serial  string    `json:"serial"`
	User    string    `json:"user,omitempty"`
	At      time.Time `json:"at"`
	By      string    `json:"by,omitempty"`
	Expires time.Time `json:"expires,omitempty"`
}

// UserInfo is a user's current certificate, as the registry holds it.
type UserInfo struct {
	Name    string    `json:"name"`
	Admin   bool      `json:"admin,omitempty"`
	Serial  string    `json:"serial"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	By      string    `json:"by,omitempty"`
}

// TokenInfo is a join token as listed (never its secret).
type TokenInfo struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
	Creator string    `json:"creator,omitempty"`
}

// RenewRequest (a node, for itself) asks for a new certificate for the
// public key of CSR, valid for Lifetime (the CA bounds it).
type RenewRequest struct {
	CSR      string        `json:"csr"`
	Lifetime time.Duration `json:"lifetime,omitempty"`
}

// Revoke revokes a user's certificate (admin).
func (c *Client) Revoke(ctx context.Context, r RevokeRequest) (Revocation, error) {
	var out Revocation
	return out, c.do(ctx, http.MethodPost, "/v1/revocations", r, &out)
}

// Users lists the users' current certificates (admin).
func (c *Client) Users(ctx context.Context) ([]UserInfo, error) {
	var out []UserInfo
	return out, c.do(ctx, http.MethodGet, "/v1/users", nil, &out)
}

// Tokens lists the join tokens that have not expired (admin).
func (c *Client) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var out []TokenInfo
	return out, c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
}

// RevokeToken deletes a join token by its id (admin).
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
}

// JobCredRequest (a node, for a job it runs) asks the node holding the CA key
// for the job's certificate (its workload identity) for the public key of
// CSR: the job's user's, naming the job, valid pki.JobLifetime.
type JobCredRequest struct {
	GPID uint64 `json:"gpid"`
	CSR  string `json:"csr"`
}

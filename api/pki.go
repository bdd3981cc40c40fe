package api

import (
	"context"
	"net/http"
	"time"
)

// TokenRequest (admin) asks for a join token valid for TTL.
type TokenRequest struct {
	TTL time.Duration `json:"ttl"`
}

// TokenResponse carries a join token, shown once.
type TokenResponse struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// UserRequest (admin) asks for a client certificate for user Name, for the
// public key of CSR (PEM); the key never leaves the requester.
type UserRequest struct {
	Name  string        `json:"name"`
	Admin bool          `json:"admin,omitempty"`
	CSR   string        `json:"csr"`
	TTL   time.Duration `json:"ttl,omitempty"`
	// Rotate replaces the name's current certificate (revoking it); without
	// it, a name that has one is refused.
	Rotate bool `json:"rotate,omitempty"`
}

// CertResponse carries a signed certificate and the cluster CA (PEM).
type CertResponse struct {
	Cert string `json:"cert"`
	CA   string `json:"ca"`
	// EtcdEndpoints (join only): where the cluster's etcd serves clients.
	EtcdEndpoints []string `json:"etcd_endpoints,omitempty"`
}

// JoinRequest asks for a node certificate, authenticated by a join token.
type JoinRequest struct {
	Token string   `json:"token"`
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
	CSR   string   `json:"csr"`
}

// CreateToken makes a join token (admin).
func (c *Client) CreateToken(ctx context.Context, ttl time.Duration) (TokenResponse, error) {
	var out TokenResponse
	return out, c.do(ctx, http.MethodPost, "/v1/tokens", TokenRequest{TTL: ttl}, &out)
}

// AddUser has the cluster CA sign a user certificate (admin).
func (c *Client) AddUser(ctx context.Context, r UserRequest) (CertResponse, error) {
	var out CertResponse
	return out, c.do(ctx, http.MethodPost, "/v1/users", r, &out)
}

package access

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// Join token lifetimes: default and bounds.
const (
	defaultTokenTTL = 24 * time.Hour
	maxTokenTTL     = 30 * 24 * time.Hour
)

// CreateToken is POST /v1/tokens (admin by): a join token for a new node.
// Any node with credentials makes one (it needs the CA's hash only).
func (c *Control) CreateToken(ctx context.Context, by string, req api.TokenRequest) (api.TokenResponse, error) {
	if req.TTL == 0 {
		req.TTL = defaultTokenTTL
	}
	if req.TTL < 10*time.Second || req.TTL > maxTokenTTL {
		return api.TokenResponse{}, api.Errorf(api.CodeBadRequest, "--ttl %s: want 10s to %s", req.TTL, maxTokenTTL)
	}
	tok, err := pki.NewToken(c.node.CA.Hash())
	if err != nil {
		return api.TokenResponse{}, err
	}
	exp := time.Now().Add(req.TTL).UTC()
	if err := c.cfg.Store.PutToken(ctx, tok.ID, pidtable.JoinToken{SecretHash: tok.SecretHash(), Expires: exp, Creator: by}); err != nil {
		return api.TokenResponse{}, err
	}
	c.log.Info("join token created", "token_id", tok.ID, "by", by, "expires", exp)
	c.cfg.Events(ctx, pidtable.Event{Kind: pidtable.EventAdmin, Caller: "admin " + by, User: by, Reason: fmt.Sprintf("token create %s, expires %s", tok.ID, exp.Format(time.RFC3339))})
	return api.TokenResponse{Token: tok.String(), Expires: exp}, nil
}

// AddUser is POST /v1/users (admin by), on the node holding the CA key: a
// user's certificate for the key of req's CSR, one current certificate per
// name (a second one only with Rotate, which revokes the first).
func (c *Control) AddUser(ctx context.Context, by string, req api.UserRequest) (api.CertResponse, error) {
	if err := pki.CheckName(req.Name); err != nil {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	if req.Name == "root" && !req.Admin {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "user root runs jobs as uid 0: it can only be an admin (--admin)")
	}
	if req.TTL < 0 || req.TTL > pki.CALifetime {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "--ttl %s: want at most %s", req.TTL, pki.CALifetime)
	}
	pub, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	reg, err := c.checkUserAdd(ctx, req) // revoke.go: one certificate per name
	if err != nil {
		return api.CertResponse{}, err
	}
	var v pki.Validity
	if req.TTL > 0 {
		v.NotAfter = time.Now().Add(req.TTL)
	}
	cert, err := c.node.CA.IssueUser(pub, req.Name, req.Admin, v)
	if err != nil {
		return api.CertResponse{}, err
	}
	if err := reg.commit(ctx, c, cert, req.Admin, by); err != nil {
		return api.CertResponse{}, err
	}
	c.log.Info("user certificate issued", "user", req.Name, "admin", req.Admin, "by", by, "expires", cert.NotAfter)
	return api.CertResponse{Cert: string(pki.EncodeCert(cert)), CA: string(c.node.CA.CertPEM)}, nil
}

// Join is POST /v1/join, on the node holding the CA key: a new node,
// authenticated by a join token, gets a node certificate for its key.
// remote is the request's address, for the log.
func (c *Control) Join(ctx context.Context, remote string, req api.JoinRequest) (api.CertResponse, error) {
	refuse := func(format string, args ...any) (api.CertResponse, error) {
		c.log.Warn("join refused", "name", req.Name, "remote", remote, "why", fmt.Sprintf(format, args...))
		return api.CertResponse{}, api.Errorf(api.CodeForbidden, format, args...)
	}
	tok, err := pki.ParseToken(req.Token)
	if err != nil {
		return refuse("%v", err)
	}
	if tok.CAHash != c.node.CA.Hash() {
		return refuse("the token is for another cluster (CA hash mismatch)")
	}
	st, err := c.cfg.Store.Token(ctx, tok.ID)
	if errors.Is(err, pidtable.ErrNotFound) {
		return refuse("unknown or expired join token %s: make a new one with 'ssi token create'", tok.ID)
	}
	if err != nil {
		return api.CertResponse{}, err
	}
	if !tok.Matches(st.SecretHash) || time.Now().After(st.Expires) {
		return refuse("unknown or expired join token %s: make a new one with 'ssi token create'", tok.ID)
	}
	if !pki.ValidNodeName(req.Name) {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "node name %q: want 1-32 lower-case letters, digits and dashes", req.Name)
	}
	if len(req.Addrs) > 16 {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "%d addresses: at most 16", len(req.Addrs))
	}
	snap, err := c.cfg.Store.NodesSnapshot(ctx)
	if err != nil {
		return api.CertResponse{}, err
	}
	if _, taken := snap.Node(req.Name); taken {
		return refuse("node name %s is already registered in this cluster: pick another --name", req.Name)
	}
	pub, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	cert, err := c.node.CA.IssueNode(pub, req.Name, req.Addrs, pki.Validity{})
	if err != nil {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	eps := c.cfg.EtcdEndpoints()
	c.log.Info("node joined: certificate issued", "joiner", req.Name, "token_id", tok.ID, "remote", remote)
	return api.CertResponse{Cert: string(pki.EncodeCert(cert)), CA: string(c.node.CA.CertPEM), EtcdEndpoints: eps}, nil
}

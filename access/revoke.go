package access

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// Revocation (see docs/SECURITY.md): `ssi user revoke` writes
// /ssi/revoked/<serial>; every agent keeps the list in memory
// (pidtable.RevocationCache, list then watch) and checks it
//   - at every TLS handshake of its listener and of its own client calls
//     (agent to agent, agent to etcd), for node certificates: pki.PeerCheck;
//   - on every request (Audit, before anything else), for every certificate:
//     a revoked user's request is answered 401 with when and by whom, which
//     the CLI prints; a handshake refusal could not say why. A connection
//     kept alive from before the revocation is refused at its next request.

// Start reads the revocation list before the agent serves, and installs the
// handshake check; on the node holding the CA key it registers the bootstrap
// admin's certificate. Nothing to do with --insecure.
func (c *Control) Start(ctx context.Context) error {
	if c.node == nil {
		return nil
	}
	c.revoked = c.cfg.Store.NewRevocationCache(c.log)
	if err := c.revoked.Sync(ctx); err != nil {
		return fmt.Errorf("agent: read the revocation list: %w", err)
	}
	c.node.SetPeerCheck(c.checkPeer)
	if c.node.CA.Key != nil {
		c.registerBootstrapAdmin(ctx)
	}
	return nil
}

// checkPeer refuses, at the handshake, a node certificate that was revoked.
// A user's certificate passes here and is refused by revokedRequest, which
// can say why.
func (c *Control) checkPeer(cert *x509.Certificate) error {
	id, err := pki.IdentityOf(cert)
	if err != nil || !id.Node {
		return nil
	}
	return c.revokedCert(cert, id)
}

// revokedCert returns an error saying cert was revoked, and what to do, or nil.
func (c *Control) revokedCert(cert *x509.Certificate, id pki.Identity) error {
	if c.revoked == nil {
		return nil
	}
	serial := pki.Serial(cert)
	r, ok := c.revoked.Revoked(serial)
	if !ok {
		return nil
	}
	if id.Node {
		return fmt.Errorf("%w; the node must join again: remove DATA-DIR/pki/node.* on %s and restart its agent with --join ADDR --token TOKEN", pki.RevokedError("of node "+id.Name, serial, r.At, r.By), id.Name)
	}
	return fmt.Errorf("your certificate for %s (serial %s) was revoked at %s%s; ask an admin for a new one: ssi user add %s --rotate --out FILE",
		id.Name, serial, r.At.UTC().Format(time.RFC3339), byWhom(r.By), id.Name)
}

func byWhom(by string) string {
	if by == "" {
		return ""
	}
	return " by " + by
}

// revokedRequest checks the certificate of r against the revocation list;
// it returns the 401 to answer, or nil.
func (c *Control) revokedRequest(r *http.Request) *api.Error {
	if c.node == nil || r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return nil
	}
	cert := r.TLS.VerifiedChains[0][0]
	id, err := pki.IdentityOf(cert)
	if err != nil {
		return nil // Authenticate refuses it
	}
	if err := c.revokedCert(cert, id); err != nil {
		return api.Errorf(api.CodeUnauthenticated, "%v", err)
	}
	return nil
}

// userAdd is a `ssi user add` under way: the name's registry entry as read
// before the certificate is issued.
type userAdd struct {
	prev *pidtable.User
	rev  int64
}

// checkUserAdd refuses to issue a second certificate for a name that has a
// current one, unless the request rotates it.
func (c *Control) checkUserAdd(ctx context.Context, req api.UserRequest) (userAdd, error) {
	u, rev, err := c.cfg.Store.User(ctx, req.Name)
	if errors.Is(err, pidtable.ErrNotFound) {
		return userAdd{}, nil
	}
	if err != nil {
		return userAdd{}, err
	}
	if !req.Rotate {
		return userAdd{}, api.Errorf(api.CodeConflict, "user %s already has a certificate (serial %s, valid until %s); to issue a new one and revoke that one: ssi user add %s --rotate --out FILE",
			u.Name, u.Serial, u.Expires.UTC().Format(time.RFC3339), u.Name)
	}
	return userAdd{prev: &u, rev: rev}, nil
}

// commit records cert as the name's current certificate, revoking the
// previous one (a rotation) in the same transaction.
func (ua userAdd) commit(ctx context.Context, c *Control, cert *x509.Certificate, admin bool, by string) error {
	name := cert.Subject.CommonName
	u := pidtable.User{Name: name, Admin: admin, Serial: pki.Serial(cert), Issued: time.Now().UTC(), Expires: cert.NotAfter.UTC(), By: by}
	var rv *pidtable.Revocation
	if ua.prev != nil {
		rv = &pidtable.Revocation{Serial: ua.prev.Serial, At: time.Now().UTC(), User: name, By: by, Expires: ua.prev.Expires}
	}
	if err := c.cfg.Store.PutUser(ctx, u, ua.rev, rv); err != nil {
		if errors.Is(err, pidtable.ErrConflict) {
			return api.Errorf(api.CodeConflict, "user %s was changed by another admin meanwhile; nothing was issued; try again", name)
		}
		return err
	}
	kind := "user add"
	if rv != nil {
		kind = "user rotate"
	}
	c.cfg.Events(ctx, pidtable.Event{Kind: pidtable.EventAdmin, Caller: "admin " + by, User: by,
		Reason: fmt.Sprintf("%s %s (admin %v): serial %s, valid until %s%s", kind, name, admin, u.Serial, u.Expires.Format(time.RFC3339), revokedNote(rv))})
	return nil
}

func revokedNote(rv *pidtable.Revocation) string {
	if rv == nil {
		return ""
	}
	return "; revoked serial " + rv.Serial
}

// registerBootstrapAdmin records the admin config the first agent wrote
// (admin.json) in the user registry, so that `ssi user revoke root` and
// --rotate know it. Best effort: an entry that exists is left alone.
func (c *Control) registerBootstrapAdmin(ctx context.Context) {
	cfg, err := pki.LoadClientConfig(filepath.Join(c.cfg.Dir, pki.AdminFile))
	if err != nil {
		return
	}
	cert, err := pki.ParseCert([]byte(cfg.Cert))
	if err != nil || time.Now().After(cert.NotAfter) {
		return
	}
	if _, revoked := c.revoked.Revoked(pki.Serial(cert)); revoked {
		return
	}
	id, err := pki.IdentityOf(cert)
	if err != nil || id.Node {
		return
	}
	u := pidtable.User{Name: id.Name, Admin: id.Admin, Serial: pki.Serial(cert), Issued: cert.NotBefore.UTC(), Expires: cert.NotAfter.UTC(), By: "bootstrap"}
	if err := c.cfg.Store.PutUser(ctx, u, 0, nil); err != nil && !errors.Is(err, pidtable.ErrConflict) {
		c.log.Warn("register the bootstrap admin's certificate", "user", id.Name, "err", err)
	}
}

// Revoke is POST /v1/revocations (admin by): revoke a user's current
// certificate by name, or any certificate by serial.
func (c *Control) Revoke(ctx context.Context, by string, req api.RevokeRequest) (api.Revocation, error) {
	if (req.Name == "") == (req.Serial == "") {
		return api.Revocation{}, api.Errorf(api.CodeBadRequest, "give a user name or --serial HEX, one of the two")
	}
	st := c.cfg.Store
	rv := pidtable.Revocation{At: time.Now().UTC(), By: by}
	var user string
	var rev int64
	if req.Name != "" {
		u, urev, err := st.User(ctx, req.Name)
		if errors.Is(err, pidtable.ErrNotFound) {
			return api.Revocation{}, api.Errorf(api.CodeNotFound, "user %s has no registered certificate (see ssi user list); revoke a certificate by its serial: ssi user revoke --serial HEX", req.Name)
		}
		if err != nil {
			return api.Revocation{}, err
		}
		rv.Serial, rv.User, rv.Expires, user, rev = u.Serial, u.Name, u.Expires, u.Name, urev
	} else {
		s, err := pki.ParseSerial(req.Serial)
		if err != nil {
			return api.Revocation{}, api.Errorf(api.CodeBadRequest, "--serial: %v", err)
		}
		rv.Serial = s
		users, err := st.Users(ctx)
		if err != nil {
			return api.Revocation{}, err
		}
		for _, u := range users {
			if u.Serial == s {
				cur, urev, err := st.User(ctx, u.Name)
				if err == nil && cur.Serial == s {
					rv.User, rv.Expires, user, rev = u.Name, u.Expires, u.Name, urev
				}
			}
		}
	}
	if err := st.Revoke(ctx, rv, user, rev); err != nil {
		if errors.Is(err, pidtable.ErrConflict) {
			err = api.Errorf(api.CodeConflict, "user %s was changed by another admin meanwhile; nothing was revoked; try again", user)
		}
		return api.Revocation{}, err
	}
	c.log.Info("certificate revoked", "serial", rv.Serial, "user", rv.User, "by", by)
	c.cfg.Events(ctx, pidtable.Event{Kind: pidtable.EventAdmin, Caller: "admin " + by, User: by,
		Reason: fmt.Sprintf("user revoke %s: serial %s", UserOrUnknown(rv.User), rv.Serial)})
	return api.Revocation{Serial: rv.Serial, User: rv.User, At: rv.At, By: rv.By, Expires: rv.Expires}, nil
}

// UserOrUnknown is user as a message names it: an empty one is a
// certificate no user was registered for.
func UserOrUnknown(s string) string {
	if s == "" {
		return "(unregistered certificate)"
	}
	return s
}

// Users is GET /v1/users (admin): the users' current certificates.
func (c *Control) Users(ctx context.Context) ([]api.UserInfo, error) {
	users, err := c.cfg.Store.Users(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.UserInfo, 0, len(users))
	for _, u := range users {
		out = append(out, api.UserInfo{Name: u.Name, Admin: u.Admin, Serial: u.Serial, Issued: u.Issued, Expires: u.Expires, By: u.By})
	}
	return out, nil
}

// Tokens is GET /v1/tokens (admin): join tokens not yet expired.
func (c *Control) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	toks, err := c.cfg.Store.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.TokenInfo, 0, len(toks))
	for _, t := range toks {
		out = append(out, api.TokenInfo{ID: t.ID, Expires: t.Expires, Creator: t.Creator})
	}
	return out, nil
}

// RevokeToken is DELETE /v1/tokens/{id} (admin by): the token can no longer
// be used to join; nodes that joined with it keep their certificates.
func (c *Control) RevokeToken(ctx context.Context, by, id string) error {
	if err := pki.CheckTokenID(id); err != nil {
		return api.Errorf(api.CodeBadRequest, "%v", err)
	}
	if err := c.cfg.Store.DeleteToken(ctx, id); err != nil {
		if errors.Is(err, pidtable.ErrNotFound) {
			err = api.Errorf(api.CodeNotFound, "no join token %q (expired, revoked, or never made; see ssi token list)", id)
		}
		return err
	}
	c.log.Info("join token revoked", "token_id", id, "by", by)
	c.cfg.Events(ctx, pidtable.Event{Kind: pidtable.EventAdmin, Caller: "admin " + by, User: by, Reason: "token revoke " + id})
	return nil
}

package msg

import (
	"log/slog"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ssi-cluster/ssi/pki"
)

// Grants returns the subjects an admin granted user beyond their namespace
// (nil: none). It is read at every connection.
type Grants func(user string) (pub, sub []string)

// authenticator maps a verified TLS client certificate to a NATS user with
// the permissions of its identity (package pki): nodes and admins may use
// every subject, a user their namespace, their inbox, their API requests to
// the agents, and replies to messages they received.
type authenticator struct {
	grants   Grants
	jobAlive func(gpid uint64, user string) error
	log      *slog.Logger
}

// Check is server.Authentication's: the TLS stack already verified the
// certificate against the cluster CA (and the node's revocation check).
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	cs := c.GetTLSConnectionState()
	if cs == nil || len(cs.PeerCertificates) == 0 {
		a.log.Debug("nats: connection without a client certificate refused", "remote", c.RemoteAddress())
		return false
	}
	id, err := pki.IdentityOf(cs.PeerCertificates[0])
	if err != nil {
		a.log.Info("nats: connection refused", "remote", c.RemoteAddress(), "err", err)
		return false
	}
	if id.Job != 0 && a.jobAlive != nil {
		if err := a.jobAlive(id.Job, id.Name); err != nil {
			a.log.Info("nats: a job's credential refused", "remote", c.RemoteAddress(), "gpid", id.Job, "err", err)
			return false
		}
	}
	u := &server.User{Username: id.String()}
	if !id.Node && !id.Admin {
		u.Permissions = UserPermissions(id.Name, a.grants)
	}
	c.RegisterUser(u)
	return true
}

// UserPermissions are a plain user's permissions (docs/SECURITY.md).
func UserPermissions(user string, grants Grants) *server.Permissions {
	ns := Namespace(user) + ">"
	pub := []string{ns, APIPrefix(user) + ">"}
	sub := []string{ns, InboxPrefix(user) + ".>"}
	if grants != nil {
		gp, gs := grants(user)
		pub = append(pub, gp...)
		sub = append(sub, gs...)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: sub},
		// Replies to the requests a user received, and acks of the durable
		// messages delivered to them ($JS.ACK...): one publication each.
		Response: &server.ResponsePermission{MaxMsgs: 1},
	}
}

// routeAuth admits only nodes' certificates on the cluster port.
type routeAuth struct{ log *slog.Logger }

func (a routeAuth) Check(c server.ClientAuthentication) bool {
	cs := c.GetTLSConnectionState()
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return false
	}
	id, err := pki.IdentityOf(cs.PeerCertificates[0])
	if err != nil || !id.Node {
		a.log.Warn("nats: route refused: not a node's certificate", "remote", c.RemoteAddress(), "identity", id.String(), "err", err)
		return false
	}
	return true
}

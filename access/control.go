package access

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// Config is what access needs of the agent.
type Config struct {
	// Name is this node's name.
	Name string
	// Dir is the node's pki directory (DATA-DIR/pki).
	Dir string
	// Node is this node's credentials (Setup); nil with --insecure.
	Node *pki.Node
	// Store is the cluster's table: jobs' records, tokens, users,
	// revocations, the CA node, the balancer's leader.
	Store *pidtable.Store
	// Log is the agent's logger (with its node attribute).
	Log *slog.Logger
	// Events writes an event to the cluster's event log (admin actions,
	// refused requests).
	Events func(context.Context, pidtable.Event)
	// Peer carries agent-to-agent calls under the node's certificate (a
	// renewal asked of the CA node).
	Peer http.RoundTripper
	// NodeCertLifetime is --node-cert-lifetime: what the node's certificate
	// is renewed for.
	NodeCertLifetime time.Duration
	// EtcdEndpoints are the etcd client URLs a joining node is given.
	EtcdEndpoints func() []string
	// Lookups are what admission asks of the agent about what it owns.
	Lookups Lookups
}

// Lookups are the answers admission needs about what the agent owns, not
// access: drains, checkpoints, services, migrations under way.
type Lookups struct {
	// DrainMover admits a node that moves gpid for a drain: the job's record
	// when who is the drain controller's leader and its drain moves gpid;
	// else notDrain says why it is not such a move.
	DrainMover func(ctx context.Context, who Caller, gpid uint64) (p pidtable.Proc, notDrain string, err error)
	// Checkpoint reads the record of the checkpoint r names, and its revision.
	Checkpoint func(r *http.Request) (pidtable.Checkpoint, int64, error)
	// Service admits who to the service r names (RoleServiceOwner); the
	// request it returns carries what the handler needs.
	Service func(r *http.Request, who Caller) (*http.Request, error)
	// MigrationSource is the node driving the migration of gpid to this
	// node (it prepared it, or the job arrived from it); "" if none.
	MigrationSource func(gpid uint64) string
}

// Control is a node's access control: made by New once the store is there,
// started by Start, run by Loops.
type Control struct {
	cfg  Config
	log  *slog.Logger
	node *pki.Node

	// revoked is the watched revocation list (revoke.go), set by Start;
	// refusals coalesces refused requests into events (audit.go). Both nil
	// with --insecure.
	revoked  *pidtable.RevocationCache
	refusals *refusalLog
}

// New returns the access control of cfg.Node (nil: --insecure).
func New(cfg Config) *Control {
	c := &Control{cfg: cfg, log: cfg.Log, node: cfg.Node}
	if cfg.Node != nil {
		c.refusals = newRefusalLog(cfg.Events, cfg.Log.Warn)
	}
	return c
}

// Loops are the goroutines of a started Control with credentials: the
// revocation list's watch, the node certificate's renewal, the refusals'
// events. None with --insecure.
func (c *Control) Loops() []func(context.Context) {
	if c.node == nil {
		return nil
	}
	return []func(context.Context){c.revoked.Run, c.renewLoop, c.refusals.run}
}

// HoldsCAKey reports whether this node holds the cluster CA's key (and so
// answers the certificate calls itself, instead of forwarding them to the
// node that does).
func (c *Control) HoldsCAKey() bool { return c.node != nil && c.node.CA.Key != nil }

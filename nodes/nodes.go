package nodes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// Config is what a Control needs.
type Config struct {
	// Name is this node's name.
	Name  string
	Store *pidtable.Store
	// Events records an event in the cluster's log.
	Events func(ctx context.Context, ev pidtable.Event)
	Log    *slog.Logger
	// Certificates says the nodes run with certificates (not --insecure):
	// a node removed with none recorded is told how to revoke its own.
	Certificates bool
}

// Control carries out the admins' requests on nodes.
type Control struct{ cfg Config }

// New returns a Control.
func New(cfg Config) *Control { return &Control{cfg: cfg} }

// Name is name checked as a node's name.
func Name(name string) (string, error) {
	if err := pki.CheckName(name); err != nil {
		return "", api.Errorf(api.CodeBadRequest, "node name: %v", err)
	}
	return name, nil
}

// Known reads the nodes and returns the named one, or a 404 listing the
// known nodes.
func (c *Control) Known(ctx context.Context, name string) (*pidtable.Snapshot, pidtable.Node, error) {
	snap, err := c.cfg.Store.NodesSnapshot(ctx)
	if err != nil {
		return nil, pidtable.Node{}, err
	}
	n, ok := snap.Node(name)
	if !ok {
		names := make([]string, 0, len(snap.Nodes))
		for _, n := range snap.Nodes {
			names = append(names, n.Name)
		}
		return nil, pidtable.Node{}, api.Errorf(api.CodeNotFound, "unknown node %q (known nodes: %s; see ssi nodes)", name, strings.Join(names, ", "))
	}
	return snap, n, nil
}

// adminEvent records what admin who changed on node.
func (c *Control) adminEvent(ctx context.Context, node, who, msg string) {
	c.cfg.Events(ctx, pidtable.Event{Kind: pidtable.EventDrain, From: node, Caller: "admin " + who, User: who, Reason: msg})
}

// Cordon cordons the named node (on), for reason, or uncordons it, as
// admin who.
func (c *Control) Cordon(ctx context.Context, name, who string, on bool, reason string) (api.NodeResult, error) {
	name, err := Name(name)
	if err != nil {
		return api.NodeResult{}, err
	}
	snap, n, err := c.Known(ctx, name)
	if err != nil {
		return api.NodeResult{}, err
	}
	if !on && n.Draining {
		return api.NodeResult{}, api.Errorf(api.CodeConflict, "node %s is being drained; cancel the drain first (ssi node drain %s --cancel), then uncordon it", name, name)
	}
	var was pidtable.NodeConfig
	conf, changed, err := c.cfg.Store.UpdateNodeConfig(ctx, name, func(c *pidtable.NodeConfig) (bool, error) {
		was = *c
		if c.Cordoned == on {
			return false, nil
		}
		c.Cordoned = on
		if on {
			c.CordonedBy, c.CordonedAt, c.Reason = who, time.Now().UTC(), reason
		} else {
			c.CordonedBy, c.CordonedAt, c.Reason = "", time.Time{}, ""
		}
		return true, nil
	})
	if err != nil {
		return api.NodeResult{}, err
	}
	res := api.NodeResult{Node: name, Changed: changed, Config: conf, Labels: conf.Apply(n).Labels}
	switch {
	case on && changed:
		res.Message = fmt.Sprintf("node %s cordoned: no new job is placed there; its %d jobs keep running (ssi node drain %s moves them)", name, snap.Status[name].Jobs, name)
	case on:
		res.Message = fmt.Sprintf("node %s is already cordoned (since %s, by %s); nothing changed", name, was.CordonedAt.Format(time.RFC3339), access.UserOrUnknown(was.CordonedBy))
	case changed:
		res.Message = fmt.Sprintf("node %s uncordoned: it takes new jobs again", name)
	default:
		res.Message = fmt.Sprintf("node %s is not cordoned; nothing changed", name)
	}
	if changed {
		c.adminEvent(ctx, name, who, res.Message)
	}
	return res, nil
}

// Label sets and removes labels of the named node, as admin who.
func (c *Control) Label(ctx context.Context, name, who string, req api.LabelRequest) (api.NodeResult, error) {
	name, err := Name(name)
	if err != nil {
		return api.NodeResult{}, err
	}
	if len(req.Set) == 0 && len(req.Remove) == 0 {
		return api.NodeResult{}, api.Errorf(api.CodeBadRequest, "no label given: ssi node label %s KEY=VALUE ... or KEY-", name)
	}
	for k, v := range req.Set {
		if err := pidtable.ValidLabel(k); err != nil {
			return api.NodeResult{}, api.Errorf(api.CodeBadRequest, "label key %v", err)
		}
		if err := pidtable.ValidLabel(v); err != nil {
			return api.NodeResult{}, api.Errorf(api.CodeBadRequest, "label %s: value %v", k, err)
		}
		if slices.Contains(req.Remove, k) {
			return api.NodeResult{}, api.Errorf(api.CodeBadRequest, "label %s is both set and removed; give one of %s=VALUE or %s-", k, k, k)
		}
	}
	for _, k := range req.Remove {
		if err := pidtable.ValidLabel(k); err != nil {
			return api.NodeResult{}, api.Errorf(api.CodeBadRequest, "label key %v", err)
		}
	}
	_, n, err := c.Known(ctx, name)
	if err != nil {
		return api.NodeResult{}, err
	}
	conf, changed, err := c.cfg.Store.UpdateNodeConfig(ctx, name, func(c *pidtable.NodeConfig) (bool, error) {
		for k, v := range req.Set {
			c.SetLabel(k, v, false)
		}
		for _, k := range req.Remove {
			c.SetLabel(k, "", true)
		}
		return true, nil
	})
	if err != nil {
		return api.NodeResult{}, err
	}
	labels := conf.Apply(n).Labels
	res := api.NodeResult{Node: name, Changed: changed, Config: conf, Labels: labels, Message: fmt.Sprintf("node %s labels: %s", name, formatLabels(labels))}
	c.adminEvent(ctx, name, who, res.Message)
	return res, nil
}

func formatLabels(l map[string]string) string {
	if len(l) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(l))
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// Remove removes the named node, one that left or died, with its settings,
// as admin who: its jobs that run nowhere become lost; its certificates are
// revoked. A Ready node only with force and no job.
func (c *Control) Remove(ctx context.Context, name, who string, force bool) (api.NodeRemoveResult, error) {
	return c.remove(ctx, name, who, force, false)
}

// remove is Remove; idleOnly refuses (a conflict) a node with a live job
// recorded on it, which Remove records lost.
func (c *Control) remove(ctx context.Context, name, who string, force, idleOnly bool) (api.NodeRemoveResult, error) {
	name, err := Name(name)
	if err != nil {
		return api.NodeRemoveResult{}, err
	}
	st := c.cfg.Store
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return api.NodeRemoveResult{}, err
	}
	if _, ok := snap.Node(name); !ok {
		_, _, err := c.Known(ctx, name)
		return api.NodeRemoveResult{}, err
	}
	ready := snap.Ready(name)
	var live []pidtable.Proc
	for _, p := range snap.Procs {
		if p.Node == name && !p.State.Ended() {
			live = append(live, p)
		}
	}
	switch {
	case idleOnly && len(live) > 0:
		return api.NodeRemoveResult{}, api.Errorf(api.CodeConflict, "node %s has %d live jobs recorded on it: not removed", name, len(live))
	case ready && !force:
		return api.NodeRemoveResult{}, api.Errorf(api.CodeConflict, "node %s is Ready (its agent runs): stop its agent first, or drain it (ssi node drain %s --wait) and remove it with --force", name, name)
	case ready && len(live) > 0:
		return api.NodeRemoveResult{}, api.Errorf(api.CodeConflict, "node %s is Ready and still runs %d jobs: drain it first (ssi node drain %s --wait)", name, len(live), name)
	}
	res := api.NodeRemoveResult{Node: name}
	for _, p := range live {
		if p.State == pidtable.Migrating && p.Migration != nil && snap.Ready(p.Migration.Target) {
			res.Skipped = append(res.Skipped, fmt.Sprintf("gpid %d is being moved to %s, which settles it", p.GPID, p.Migration.Target))
			continue
		}
		reason := fmt.Sprintf("node %s was removed by %s (ssi node rm) while its agent was down: what became of the job is unknown", name, who)
		if _, err := st.Abandon(ctx, p.GPID, name, reason); err != nil {
			if errors.Is(err, pidtable.ErrChanged) {
				err = api.Errorf(api.CodeConflict, "node %s came back meanwhile; nothing more was done (%d jobs recorded lost so far)", name, len(res.Lost))
			}
			return api.NodeRemoveResult{}, err
		}
		res.Lost = append(res.Lost, p.GPID)
		c.cfg.Events(ctx, pidtable.Event{Kind: pidtable.EventLost, GPID: p.GPID, User: p.User, From: name, Reason: reason})
	}
	certs, err := st.NodeCerts(ctx, name)
	if err != nil {
		return api.NodeRemoveResult{}, err
	}
	var revs []pidtable.Revocation
	for _, cert := range certs {
		revs = append(revs, pidtable.Revocation{Serial: cert.Serial, At: time.Now().UTC(), User: "node:" + name, By: who, Expires: cert.Expires})
		res.Revoked = append(res.Revoked, cert.Serial)
	}
	if err := st.RemoveNode(ctx, name, ready, revs); err != nil {
		if errors.Is(err, pidtable.ErrChanged) {
			err = api.Errorf(api.CodeConflict, "node %s came back (Ready) meanwhile; it was not removed", name)
		}
		return api.NodeRemoveResult{}, err
	}
	res.Message = fmt.Sprintf("node %s removed: %d jobs recorded lost, %d certificates revoked", name, len(res.Lost), len(res.Revoked))
	if len(certs) == 0 && c.cfg.Certificates {
		res.Message += " (none was recorded: an agent older than ssi node rm; revoke it by serial with ssi user revoke --serial HEX)"
	}
	c.cfg.Log.Info("node removed", "removed", name, "lost", len(res.Lost), "revoked", len(res.Revoked), "by", who)
	c.adminEvent(ctx, name, who, res.Message)
	return res, nil
}

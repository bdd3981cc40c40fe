package pidtable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A node's admin settings (cordon, labels set at runtime) live apart from
// its registration: the agent rewrites /ssi/nodes/<name> at every start, an
// admin's cordon must survive that. Snapshot merges them into Node, so every
// reader of the nodes (placement, the balancer, services, ssi nodes) sees the
// effective values at the snapshot's revision.

const (
	nodeConfigPrefix = prefix + "nodeconf/"
	nodeCertsPrefix  = prefix + "nodecerts/"
)

// NodeConfigKey returns the etcd key of a node's admin settings.
func NodeConfigKey(name string) string { return nodeConfigPrefix + name }

// ErrCordoned says a node takes no new job (ssi node cordon).
var ErrCordoned = errors.New("pidtable: node is cordoned")

// NodeConfig is a node's admin settings, /ssi/nodeconf/<name>: written by
// ssi node cordon|uncordon|label|drain (compare-and-swap), read with the
// nodes. Absent: not cordoned, the agent's own labels.
type NodeConfig struct {
	// Cordoned nodes receive no new job: no placement of a run, a replica or
	// a restore, and no balancer move onto them. What runs there stays.
	Cordoned   bool      `json:"cordoned,omitempty"`
	CordonedBy string    `json:"cordoned_by,omitempty"`
	CordonedAt time.Time `json:"cordoned_at,omitzero"`
	// Reason is the cordon's reason, as the admin gave it (or "drain").
	Reason string `json:"reason,omitempty"`
	// SetLabels are labels set at runtime (ssi node label NAME k=v), over
	// the agent's --label ones; DelLabels are labels removed (k-), the
	// agent's included.
	SetLabels map[string]string `json:"set_labels,omitempty"`
	DelLabels []string          `json:"del_labels,omitempty"`
	// Left is when the node's agent stopped on purpose, having drained it
	// (ssi agent on SIGTERM): ssi nodes shows Left, not NotReady. Cleared
	// when the agent starts again.
	Left    time.Time `json:"left,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
}

// CordonAgentStop is the Reason of the cordon an agent's drain on stop
// sets: the agent lifts it when it starts again.
const CordonAgentStop = "agent stop"

// Apply returns n with the settings of c: its cordon and its effective labels.
func (c NodeConfig) Apply(n Node) Node {
	n.Cordoned, n.Left = c.Cordoned, c.Left
	if len(c.SetLabels) == 0 && len(c.DelLabels) == 0 {
		return n
	}
	labels := maps.Clone(n.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	for _, k := range c.DelLabels {
		delete(labels, k)
	}
	maps.Copy(labels, c.SetLabels)
	if len(labels) == 0 {
		labels = nil
	}
	n.Labels = labels
	return n
}

// SetLabel sets key to value (value "" with del: removes key).
func (c *NodeConfig) SetLabel(key, value string, del bool) {
	c.DelLabels = slices.DeleteFunc(c.DelLabels, func(k string) bool { return k == key })
	if del {
		delete(c.SetLabels, key)
		c.DelLabels = append(c.DelLabels, key)
		sort.Strings(c.DelLabels)
		return
	}
	if c.SetLabels == nil {
		c.SetLabels = map[string]string{}
	}
	c.SetLabels[key] = value
}

// ValidLabel checks a label key or value: 1 to 63 characters of letters,
// digits, '-', '_', '.' and '/'.
func ValidLabel(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("%q: want 1 to 63 characters", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./", r)) {
			return fmt.Errorf("%q: only letters, digits, '-', '_', '.' and '/' are allowed", s)
		}
	}
	return nil
}

// NodeConfig returns the admin settings of node and their mod revision (zero
// settings and 0 when there are none).
func (s *Store) NodeConfig(ctx context.Context, node string) (NodeConfig, int64, error) {
	resp, err := s.c.Get(ctx, NodeConfigKey(node))
	if err != nil {
		return NodeConfig{}, 0, fmt.Errorf("pidtable: read settings of node %s: %w", node, err)
	}
	if len(resp.Kvs) == 0 {
		return NodeConfig{}, 0, nil
	}
	var c NodeConfig
	if err := decode(resp.Kvs[0].Value, &c, false); err != nil {
		return NodeConfig{}, 0, fmt.Errorf("pidtable: decode settings of node %s: %w", node, err)
	}
	return c, resp.Kvs[0].ModRevision, nil
}

// UpdateNodeConfig applies fn to node's settings with a compare-and-swap,
// retrying on conflict, and returns what it wrote. The node must be
// registered (ErrNotFound otherwise). fn returns false to write nothing
// (changed is then false).
func (s *Store) UpdateNodeConfig(ctx context.Context, node string, fn func(*NodeConfig) (bool, error)) (c NodeConfig, changed bool, err error) {
	for range maxCASRetries {
		c, rev, err := s.NodeConfig(ctx, node)
		if err != nil {
			return NodeConfig{}, false, err
		}
		ok, err := fn(&c)
		if err != nil || !ok {
			return c, false, err
		}
		c.Updated = time.Now().UTC()
		val, err := json.Marshal(c)
		if err != nil {
			return NodeConfig{}, false, fmt.Errorf("pidtable: encode settings of node %s: %w", node, err)
		}
		key := NodeConfigKey(node)
		tr, err := s.c.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(key), "=", rev),
			clientv3.Compare(clientv3.CreateRevision(NodeKey(node)), ">", 0),
		).Then(clientv3.OpPut(key, string(val))).Else(clientv3.OpGet(NodeKey(node), clientv3.WithCountOnly())).Commit()
		if err != nil {
			return NodeConfig{}, false, fmt.Errorf("pidtable: write settings of node %s: %w", node, err)
		}
		if tr.Succeeded {
			return c, true, nil
		}
		if tr.Responses[0].GetResponseRange().Count == 0 {
			return NodeConfig{}, false, fmt.Errorf("%w: node %s", ErrNotFound, node)
		}
	}
	return NodeConfig{}, false, fmt.Errorf("%w: updating the settings of node %s", ErrConflict, node)
}

// NodeCert is a certificate a node's agent presents (recorded by the agent,
// so that ssi node rm can revoke it).
type NodeCert struct {
	Serial  string    `json:"serial"`
	Expires time.Time `json:"expires"`
}

// RecordNodeCert records that node holds the certificate serial (lower-case
// hex), if it is not recorded yet.
func (s *Store) RecordNodeCert(ctx context.Context, node string, c NodeCert) error {
	key := nodeCertsPrefix + node + "/" + c.Serial
	val, _ := json.Marshal(c)
	_, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("pidtable: record certificate %s of node %s: %w", c.Serial, node, err)
	}
	return nil
}

// NodeCerts lists the certificates recorded for node.
func (s *Store) NodeCerts(ctx context.Context, node string) ([]NodeCert, error) {
	resp, err := s.c.Get(ctx, nodeCertsPrefix+node+"/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("pidtable: list certificates of node %s: %w", node, err)
	}
	var out []NodeCert
	for _, kv := range resp.Kvs {
		var c NodeCert
		if decode(kv.Value, &c, false) == nil && c.Serial != "" {
			out = append(out, c)
		}
	}
	return out, nil
}

// RemoveNode deletes node's registration, settings, drain record and
// recorded certificates, and stores revoke (the revocations of its
// certificates), in one transaction that holds only while the node is
// NotReady (no status key) unless ready is true. ErrChanged when the node
// became Ready meanwhile; ErrNotFound when it is not registered.
func (s *Store) RemoveNode(ctx context.Context, node string, ready bool, revoke []Revocation) error {
	conds := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(NodeKey(node)), ">", 0)}
	if !ready {
		conds = append(conds, clientv3.Compare(clientv3.CreateRevision(StatusKey(node)), "=", 0))
	}
	ops := []clientv3.Op{
		clientv3.OpDelete(NodeKey(node)),
		clientv3.OpDelete(NodeConfigKey(node)),
		clientv3.OpDelete(DrainKey(node)),
		clientv3.OpDelete(nodeCertsPrefix+node+"/", clientv3.WithPrefix()),
	}
	if ready {
		ops = append(ops, clientv3.OpDelete(StatusKey(node)))
	}
	for _, r := range revoke {
		rops, err := s.revocationOps(ctx, r)
		if err != nil {
			return err
		}
		ops = append(ops, rops...)
	}
	tr, err := s.c.Txn(ctx).If(conds...).Then(ops...).Else(clientv3.OpGet(NodeKey(node), clientv3.WithCountOnly())).Commit()
	if err != nil {
		return fmt.Errorf("pidtable: remove node %s: %w", node, err)
	}
	if tr.Succeeded {
		return nil
	}
	if tr.Responses[0].GetResponseRange().Count == 0 {
		return fmt.Errorf("%w: node %s", ErrNotFound, node)
	}
	return fmt.Errorf("%w: node %s became Ready meanwhile", ErrChanged, node)
}

// Abandon records gpid lost with reason, by the Abandon transition: its
// record names node, whose agent is gone (the transaction holds only while
// node has no status key), so no owner is left to end it. It returns the
// record written.
func (s *Store) Abandon(ctx context.Context, gpid uint64, node, reason string) (Proc, error) {
	p, _, err := s.whileGone(ctx, gpid, node, Abandon, "", "abandon", func(p *Proc) {
		p.State, p.Error = Lost, reason
	})
	return p, err
}

// whileGone changes gpid's record, which names node, by transition t made
// by by, in a transaction that holds only while node has no status key (its
// lease is gone) and the record is at the revision read. It returns the
// record written and its revision.
func (s *Store) whileGone(ctx context.Context, gpid uint64, node string, t Transition, by, what string, change func(*Proc)) (Proc, int64, error) {
	for range maxCASRetries {
		old, rev, err := s.getForUpdate(ctx, gpid)
		if err != nil {
			return Proc{}, 0, err
		}
		if old.Node != node {
			return Proc{}, 0, fmt.Errorf("%w: %s gpid %d: it is on %s now, not %s", ErrChanged, what, gpid, old.Node, node)
		}
		p := old
		change(&p)
		if err := checkTransition(t, by, old, &p); err != nil {
			return Proc{}, 0, err
		}
		val, err := json.Marshal(p)
		if err != nil {
			return Proc{}, 0, fmt.Errorf("pidtable: encode gpid %d: %w", gpid, err)
		}
		key := ProcKey(gpid)
		tr, err := s.c.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(key), "=", rev),
			clientv3.Compare(clientv3.CreateRevision(StatusKey(node)), "=", 0),
		).Then(clientv3.OpPut(key, string(val))).Else(clientv3.OpGet(StatusKey(node), clientv3.WithCountOnly())).Commit()
		if err != nil {
			return Proc{}, 0, fmt.Errorf("pidtable: %s gpid %d: %w: %w", what, gpid, ErrOutcomeUnknown, err)
		}
		if tr.Succeeded {
			return p, tr.Header.Revision, nil
		}
		if tr.Responses[0].GetResponseRange().Count > 0 {
			return Proc{}, 0, fmt.Errorf("%w: %s gpid %d: node %s is Ready again", ErrChanged, what, gpid, node)
		}
	}
	return Proc{}, 0, fmt.Errorf("%w: %s gpid %d", ErrConflict, what, gpid)
}

package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// promoteTimeout bounds how long a joining member may take to catch up with
// the leader before it gets a vote.
const promoteTimeout = 2 * time.Minute

// addTimeout bounds how long a joining member waits for etcd to accept it
// (etcd refuses while its leader has not been in touch with a majority for
// 5 s, e.g. right after another member joined).
const addTimeout = 30 * time.Second

// etcdDir is where this agent's embedded etcd member keeps its data.
func (a *Agent) etcdDir() string { return filepath.Join(a.cfg.DataDir, "etcd") }

// connectEtcd reaches the cluster's etcd, running this node's member of it
// first when the node has one:
//   - a data dir that holds a member: the member restarts from it (it rejoins
//     its cluster, whatever the flags say);
//   - --etcd-member: the node joins the etcd it reaches through its endpoints
//     as a new member (a learner, promoted once it has caught up);
//   - no endpoints: the node starts a new single-member etcd (the first node);
//   - else the node is only a client of the etcd at its endpoints.
func (a *Agent) connectEtcd(ctx context.Context) error {
	endpoints := a.cfg.EtcdEndpoints
	var joined uint64 // the ID of the member this start added, to promote
	switch {
	case pidtable.IsMember(a.etcdDir()):
		if err := a.startMember(ctx, "", false); err != nil {
			return err
		}
		a.log.Info("embedded etcd member restarted", "client_url", a.cfg.EtcdClientURL)
	case a.cfg.EtcdMember:
		if len(endpoints) == 0 {
			return fmt.Errorf("agent: --etcd-member: no etcd to join: give --join ADDR --token TOKEN (the cluster's endpoints come with the certificate) or --etcd-endpoints URLS")
		}
		c, err := a.etcdClient(ctx, endpoints)
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, addTimeout)
		id, initial, err := pidtable.AddLearner(actx, c, a.cfg.Name, a.cfg.EtcdPeerURL)
		cancel()
		c.Close()
		if err != nil {
			return fmt.Errorf("agent: --etcd-member: %w", err)
		}
		a.log.Info("joining etcd as a member", "member", fmt.Sprintf("%x", id), "initial_cluster", initial)
		if err := a.startMember(ctx, initial, true); err != nil {
			return err
		}
		joined = id
	case len(endpoints) == 0:
		if err := a.startMember(ctx, "", false); err != nil {
			return err
		}
		a.log.Info("embedded etcd started", "client_url", a.cfg.EtcdClientURL)
	}
	if a.embedded != nil {
		// Every voting member's client URL, ours first: the agent's
		// client carries on through another member while ours is cut off.
		endpoints = a.embedded.ClientURLs()
		if !slices.Contains(endpoints, a.cfg.EtcdClientURL) {
			endpoints = append([]string{a.cfg.EtcdClientURL}, endpoints...)
		}
	}
	c, err := a.etcdClient(ctx, endpoints)
	if err != nil {
		return err
	}
	if joined != 0 {
		pctx, cancel := context.WithTimeout(ctx, promoteTimeout)
		err := pidtable.Promote(pctx, c, joined, 200*time.Millisecond)
		cancel()
		if err != nil {
			c.Close()
			return fmt.Errorf("agent: etcd member %s: %w; it stays a learner (no vote): see 'ssi local status' or etcdctl member list", a.cfg.Name, err)
		}
		a.log.Info("etcd member promoted: it votes now", "member", fmt.Sprintf("%x", joined))
	}
	a.etcd, a.store = c, pidtable.New(c)
	return nil
}

// startMember starts this node's embedded etcd member: a new single-member
// cluster, a member joining a running one (existing, with its initial
// cluster), or a restart from the data dir.
func (a *Agent) startMember(ctx context.Context, initialCluster string, existing bool) error {
	ec := pidtable.EmbeddedConfig{
		Name:           a.cfg.Name,
		Dir:            a.etcdDir(),
		ClientURL:      a.cfg.EtcdClientURL,
		PeerURL:        a.cfg.EtcdPeerURL,
		InitialCluster: initialCluster,
		Existing:       existing,
		Log:            a.log,
	}
	if a.node != nil {
		d := a.node.Dir
		// Nodes only: a user's certificate, from the same CA, must not
		// open the process table; peers present node certificates too.
		ec.TLS = &pidtable.TLSFiles{CertFile: filepath.Join(d, pki.NodeCertFile), KeyFile: filepath.Join(d, pki.NodeKeyFile), CAFile: filepath.Join(d, pki.CACertFile), AllowedHostname: pki.NodeSAN}
	}
	e, err := pidtable.StartEmbedded(ctx, ec)
	if err != nil {
		return err
	}
	a.embedded = e
	return nil
}

// etcdClient connects to etcd at endpoints and checks that it answers.
func (a *Agent) etcdClient(ctx context.Context, endpoints []string) (*clientv3.Client, error) {
	// The client's own zap logs would duplicate, as JSON, the errors
	// returned here. AutoSync follows membership changes (a member added or
	// moved) so the client keeps every member's address.
	cc := clientv3.Config{Endpoints: endpoints, DialTimeout: a.cfg.EtcdDialTimeout, AutoSyncInterval: 30 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(a.metrics.EtcdInterceptor()), pidtable.RetryReads()}}
	if a.node != nil {
		cc.TLS = a.node.ClientTLS() // etcd accepts only certificates of the cluster CA
	}
	c, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrEtcdUnreachable, strings.Join(endpoints, ","), err)
	}
	probe, cancel := context.WithTimeout(ctx, a.cfg.EtcdDialTimeout)
	defer cancel()
	if _, err := c.Get(probe, "/ssi/next-gpid"); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w at %s: %w (is etcd running there? without --etcd-endpoints the agent starts an embedded one)", ErrEtcdUnreachable, strings.Join(endpoints, ","), err)
	}
	return c, nil
}

func (a *Agent) closeEtcd() {
	if a.etcd != nil {
		a.etcd.Close()
	}
	if a.embedded != nil {
		a.embedded.Close()
	}
}

// etcdEndpoints are the client URLs of the cluster's etcd this node knows:
// every voting member's when it runs one, else its own endpoints.
func (a *Agent) etcdEndpoints() []string {
	if a.embedded != nil {
		return a.embedded.ClientURLs()
	}
	return a.cfg.EtcdEndpoints
}

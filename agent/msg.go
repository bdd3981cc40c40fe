package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/msg"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// NATS ports beside the API's, by default: client +2, routes +3.
const natsClientOffset, natsClusterOffset = 2, 3

// natsAddr is host:port of addr's port plus off (another node's broker is
// found from its API address this way: every agent uses the offsets).
func natsAddr(addr string, off int) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	n, _ := strconv.Atoi(p)
	return net.JoinHostPort(h, strconv.Itoa(n+off))
}

// startBroker starts this node's embedded NATS server (package msg),
// routed to the other registered nodes' brokers, and the service that
// answers users' topic requests. The returned stop shuts both down.
func (a *Agent) startBroker(ctx context.Context) (stop func(), err error) {
	if a.cfg.NoNATS {
		return func() {}, nil
	}
	clientL, clusterL := a.cfg.NATSListen, a.cfg.NATSClusterListen
	if clientL == "" {
		clientL = natsAddr(a.cfg.Listen, natsClientOffset)
	}
	if clusterL == "" {
		clusterL = natsAddr(a.cfg.Listen, natsClusterOffset)
	}
	host, _, _ := net.SplitHostPort(a.cfg.Advertise)
	snap, err := a.nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent: the nodes for the broker's routes: %w", err)
	}
	var routes []string
	for _, n := range snap.Nodes {
		if n.Name != a.cfg.Name && n.Addr != "" {
			routes = append(routes, natsAddr(n.Addr, natsClusterOffset))
		}
	}
	b, err := msg.Start(msg.Config{
		Name: a.cfg.Name, ClientListen: clientL, ClusterListen: clusterL, Advertise: host, Routes: routes,
		StoreDir: filepath.Join(a.cfg.DataDir, "nats"), MaxMemory: a.cfg.NATSMaxMemory, MaxStore: a.cfg.NATSMaxStore,
		Node: a.node, Log: a.log, Grants: msg.NewGrantStore(a.etcd).Func(),
		JobAlive: func(gpid uint64, user string) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return a.access.JobAlive(ctx, gpid, user)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w (or --nats=false)", err)
	}
	a.natsURL = b.ClientURL()
	svcCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.serveTopics(svcCtx)
	}()
	a.log.Info("nats broker ready", "client", a.natsURL, "cluster", clusterL, "routes", len(routes))
	return func() { cancel(); <-done; b.Shutdown() }, nil
}

// serveTopics answers users' topic requests (msg.Serve) on a connection
// to this node's broker under the node's certificate.
func (a *Agent) serveTopics(ctx context.Context) {
	var tlsCfg *tls.Config
	if a.node != nil {
		tlsCfg = a.node.ClientTLS()
		tlsCfg.ServerName = pki.NodeSAN
	}
	for ctx.Err() == nil {
		cl, err := msg.Dial(ctx, a.natsURL, "node:"+a.cfg.Name, tlsCfg, "ssi-agent "+a.cfg.Name)
		if err == nil {
			err = msg.Serve(ctx, cl.Conn, msg.NewGrantStore(a.etcd), a.log)
			cl.Close()
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("nats: topic requests: retrying in 2s", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
}

// jobEnv is what a job learns of the broker: SSI_NATS_URL, this node's
// client URL first and the other Ready nodes' after it (a client that
// loses this one, or moves, reconnects to them), and SSI_NATS_INBOX, the
// inbox prefix its user's requests need (msg.InboxPrefix).
func (a *Agent) jobEnv(p pidtable.Proc) []string {
	if a.natsURL == "" {
		return nil
	}
	urls := []string{a.natsURL}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if snap, err := a.nodes(ctx); err == nil {
		scheme, _, _ := strings.Cut(a.natsURL, "://")
		for _, n := range snap.Nodes {
			if n.Name != a.cfg.Name && snap.Ready(n.Name) {
				urls = append(urls, scheme+"://"+natsAddr(n.Addr, natsClientOffset))
			}
		}
	}
	return []string{"SSI_NATS_URL=" + strings.Join(urls, ","), "SSI_NATS_INBOX=" + msg.InboxPrefix(p.User)}
}

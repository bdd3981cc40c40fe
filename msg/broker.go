package msg

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ssi-cluster/ssi/pki"
)

// ClusterName is the NATS cluster the agents form.
const ClusterName = "ssi"

// Config configures an agent's broker.
type Config struct {
	// Name is the node name, the server's name in the cluster.
	Name string
	// ClientListen and ClusterListen are host:port of the client and route
	// listeners; Advertise is the host others reach them at.
	ClientListen, ClusterListen string
	Advertise                   string
	// Routes are the other agents' cluster addresses (host:port); the
	// servers learn of later ones from each other (gossip).
	Routes []string
	// StoreDir holds JetStream's files; MaxMemory and MaxStore cap them.
	StoreDir            string
	MaxMemory, MaxStore int64
	// MaxPayload bounds a message (bytes; 0: 1 MiB).
	MaxPayload int32
	// Node is the node's certificate and the cluster CA; nil: no TLS and
	// no authentication (--insecure, debugging only).
	Node   *pki.Node
	Grants Grants
	// JobAlive, if set, admits a job's credential (pki.IssueJob) only while
	// its job runs: nil when gpid runs as user's, else why not.
	JobAlive func(gpid uint64, user string) error
	Log      *slog.Logger
}

// Broker is a running embedded NATS server.
type Broker struct {
	srv *server.Server
	cfg Config
}

// Start starts the broker and waits until it accepts connections.
func Start(cfg Config) (*Broker, error) {
	opts, err := options(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("msg: nats server: %w", err)
	}
	srv.SetLoggerV2(slogger{cfg.Log}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("msg: nats server on %s did not start in 10s (is the port taken? --nats-listen)", cfg.ClientListen)
	}
	return &Broker{srv: srv, cfg: cfg}, nil
}

func splitPort(flag, hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("msg: %s %q: want HOST:PORT: %w", flag, hp, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 || n > 65535 {
		return "", 0, fmt.Errorf("msg: %s %q: bad port", flag, hp)
	}
	return h, n, nil
}

func options(cfg Config) (*server.Options, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ch, cp, err := splitPort("--nats-listen", cfg.ClientListen)
	if err != nil {
		return nil, err
	}
	rh, rp, err := splitPort("--nats-cluster-listen", cfg.ClusterListen)
	if err != nil {
		return nil, err
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = 1 << 20
	}
	o := &server.Options{
		ServerName: cfg.Name,
		Host:       ch, Port: cp,
		ClientAdvertise:    net.JoinHostPort(cfg.Advertise, strconv.Itoa(cp)),
		NoSigs:             true,
		MaxPayload:         cfg.MaxPayload,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		Cluster: server.ClusterOpts{
			Name: ClusterName, Host: rh, Port: rp,
			Advertise: net.JoinHostPort(cfg.Advertise, strconv.Itoa(rp)),
		},
	}
	// Its own address too: a JetStream cluster needs routes configured even
	// on its first node (a route to itself is recognized and dropped).
	seen := map[string]bool{}
	for _, r := range append([]string{net.JoinHostPort(cfg.Advertise, strconv.Itoa(rp))}, cfg.Routes...) {
		if !seen[r] {
			seen[r] = true
			o.Routes = append(o.Routes, &url.URL{Scheme: "nats-route", Host: r})
		}
	}
	if cfg.Node == nil {
		return o, nil
	}
	o.TLS, o.TLSVerify = true, true
	o.TLSConfig = cfg.Node.ServerTLS(true)
	o.TLSTimeout = 5
	o.CustomClientAuthentication = &authenticator{grants: cfg.Grants, jobAlive: cfg.JobAlive, log: cfg.Log}
	o.Cluster.TLSConfig = routeTLS(cfg.Node)
	o.Cluster.TLSTimeout = 5
	o.CustomRouterAuthentication = routeAuth{log: cfg.Log}
	return o, nil
}

// routeTLS serves and dials routes: both sides present their node
// certificate and check the other's against the cluster CA; the server name
// checked is the one every node certificate holds (pki.NodeSAN).
func routeTLS(n *pki.Node) *tls.Config {
	c := n.ServerTLS(true)
	cl := n.ClientTLS()
	c.GetClientCertificate = cl.GetClientCertificate
	c.RootCAs = cl.RootCAs
	c.ServerName = pki.NodeSAN
	return c
}

// ClientURL is this broker's client URL for others (nats:// or tls://).
func (b *Broker) ClientURL() string {
	_, p, _ := net.SplitHostPort(b.cfg.ClientListen)
	scheme := "nats://"
	if b.cfg.Node != nil {
		scheme = "tls://"
	}
	return scheme + net.JoinHostPort(b.cfg.Advertise, p)
}

// Server is the embedded server (for tests and status).
func (b *Broker) Server() *server.Server { return b.srv }

// Shutdown stops the broker; its JetStream files stay for the next start.
func (b *Broker) Shutdown() {
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

// ErrNoBroker is returned when a node runs no broker.
var ErrNoBroker = errors.New("msg: no broker on this node")

// slogger carries the server's log into the agent's: its notices at debug
// level (they are many), warnings and errors as such.
type slogger struct{ l *slog.Logger }

func (s slogger) Noticef(f string, v ...any) { s.l.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (s slogger) Warnf(f string, v ...any)   { s.l.Warn("nats: " + fmt.Sprintf(f, v...)) }
func (s slogger) Fatalf(f string, v ...any)  { s.l.Error("nats: fatal: " + fmt.Sprintf(f, v...)) }
func (s slogger) Errorf(f string, v ...any) {
	m := "nats: " + fmt.Sprintf(f, v...)
	// A peer's broker down (its node is) and a client refused its subject
	// are the cluster's and the client's business, not the agent's errors.
	if strings.Contains(m, "Error trying to connect to route") || strings.Contains(m, "Violation") {
		s.l.Info(m)
		return
	}
	s.l.Error(m)
}
func (s slogger) Debugf(f string, v ...any) { s.l.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (s slogger) Tracef(f string, v ...any) {}

package pidtable

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// EmbeddedConfig configures the etcd member an agent runs when no external
// cluster is named: the only member of a new cluster, or one that joins a
// running cluster (InitialCluster, Existing; members.go adds it first).
type EmbeddedConfig struct {
	Name string // member name
	Dir  string // data directory
	// ClientURL and PeerURL are where the member listens, e.g. http://10.0.0.1:2379.
	ClientURL string
	PeerURL   string
	// InitialCluster lists every member, this one included, as
	// NAME=PEER-URL,... (etcd's --initial-cluster); empty: this member alone,
	// a new cluster. Read only on the member's first start: once Dir holds
	// its data, the member knows its cluster from there.
	InitialCluster string
	// Existing says the member joins a running cluster that already lists it
	// (AddLearner), instead of bootstrapping a new one.
	Existing bool
	// StartTimeout bounds how long to wait for the member to be ready.
	StartTimeout time.Duration
	// TLS, when set, makes the member serve clients and peers over TLS and
	// accept only certificates signed by TLS.CAFile (the URLs must be https).
	TLS *TLSFiles
	// Log receives the member's maintenance (defragmentation); nil: none.
	Log *slog.Logger
}

// TLSFiles names the PEM files of a TLS identity and the CA to verify peers with.
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
	// AllowedHostname, when set, admits only client and peer certificates
	// valid for this name (besides being signed by the CA).
	AllowedHostname string
}

// Embedded is a running embedded etcd member.
type Embedded struct {
	e    *embed.Etcd
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}
	// defrag says when the member defragments itself (defrag.go).
	defrag defragPolicy
}

// StartEmbedded starts an etcd member and waits until it serves clients: a
// new single-member cluster, a member joining a running cluster, or a member
// restarting from its data dir (which then needs its cluster's quorum).
func StartEmbedded(ctx context.Context, c EmbeddedConfig) (*Embedded, error) {
	cu, err := url.Parse(c.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("pidtable: etcd client URL %q: %w", c.ClientURL, err)
	}
	pu, err := url.Parse(c.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("pidtable: etcd peer URL %q: %w", c.PeerURL, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.Dir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(c.Name)
	if c.InitialCluster != "" {
		cfg.InitialCluster = c.InitialCluster
	}
	if c.Existing {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	if c.TLS != nil {
		if cu.Scheme != "https" || pu.Scheme != "https" {
			return nil, fmt.Errorf("pidtable: etcd with TLS needs https URLs, not %s and %s", c.ClientURL, c.PeerURL)
		}
		info := transport.TLSInfo{CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, TrustedCAFile: c.TLS.CAFile, ClientCertAuth: true}
		if c.TLS.AllowedHostname != "" {
			info.AllowedHostnames = []string{c.TLS.AllowedHostname}
		}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = info, info
		cfg.TlsMinVersion = "TLS1.3"
	}
	cfg.LogLevel = "error"
	// Status keys are rewritten every second: keep history short. etcd
	// compacts every 30 s (a tenth of the retention) to the revision of 5
	// minutes ago; a watcher more than 5 minutes behind lists again.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "5m"
	// The db file may not grow past this; docs/ARCHITECTURE.md ("etcd's
	// size") says what fills it and why it stays far below.
	cfg.QuotaBackendBytes = QuotaBackendBytes
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("pidtable: start embedded etcd in %s: %w", c.Dir, err)
	}
	timeout := c.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	select {
	case <-e.Server.ReadyNotify():
		em := &Embedded{e: e, log: c.Log, stop: make(chan struct{}), done: make(chan struct{}), defrag: defaultDefrag}
		if em.log == nil {
			em.log = slog.New(slog.DiscardHandler)
		}
		go em.maintain()
		return em, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("pidtable: embedded etcd failed: %w", err)
	case <-time.After(timeout):
		e.Close()
		return nil, fmt.Errorf("pidtable: embedded etcd not ready after %s", timeout)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
}

// IsMember reports whether dir holds the data of an etcd member (a member
// that started there before: it restarts from it, whatever its flags say).
func IsMember(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "member", "wal"))
	return err == nil
}

// ClientURLs returns the client URLs of the cluster's voting members as this
// member knows them, its own first: what clients of the cluster dial.
func (e *Embedded) ClientURLs() []string {
	own := e.e.Server.MemberID()
	var out, others []string
	for _, m := range e.e.Server.Cluster().Members() {
		if m.IsLearner {
			continue
		}
		if m.ID == own {
			out = append(out, m.ClientURLs...)
		} else {
			others = append(others, m.ClientURLs...)
		}
	}
	return append(out, others...)
}

// Err returns a channel that reports a fatal error of the member.
func (e *Embedded) Err() <-chan error { return e.e.Err() }

// closeWait bounds how long Close waits for the clients' streams to end.
const closeWait = time.Second

// Close stops the member. etcd's own Close waits up to its request timeout
// (7 s with the default election timeout) for every client's watch and
// lease keep-alive streams to end, which the other agents never end by
// themselves: a restart of the agent holding the only member (an upgrade)
// would take etcd away from the cluster for longer than a node's lease.
// After closeWait the raft node and the backend are stopped (HardStop, as
// etcd does after its own wait) and Close returns; the process that exits
// next closes the streams. Either way the data is as after a clean stop.
func (e *Embedded) Close() {
	close(e.stop)
	<-e.done
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		e.e.Close()
	}()
	select {
	case <-closed:
	case <-time.After(closeWait):
		e.e.Server.HardStop()
	}
}

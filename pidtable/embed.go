package pidtable

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// EmbeddedConfig configures the single-member etcd an agent runs when no external
// cluster is named.
type EmbeddedConfig struct {
	Name string // member name
	Dir  string // data directory
	// ClientURL and PeerURL are where the member listens, e.g. http://10.0.0.1:2379.
	ClientURL string
	PeerURL   string
	// StartTimeout bounds how long to wait for the member to be ready.
	StartTimeout time.Duration
	// TLS, when set, makes the member serve clients and peers over TLS and
	// accept only certificates signed by TLS.CAFile (the URLs must be https).
	TLS *TLSFiles
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
	e *embed.Etcd
}

// StartEmbedded starts a single-member etcd and waits until it serves clients.
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
	// Status keys are rewritten every second: keep history short.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "5m"
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
		return &Embedded{e: e}, nil
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

// Err returns a channel that reports a fatal error of the member.
func (e *Embedded) Err() <-chan error { return e.e.Err() }

// Close stops the member.
func (e *Embedded) Close() { e.e.Close() }

package access

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pki"
)

// etcdFile keeps, in the pki dir, the etcd endpoints a joined node was given.
const etcdFile = "etcd.json"

// ErrJoin is returned by Setup (and so by the agent's Run) when the node
// cannot join the cluster. Its text is the agent's, as before the move.
var ErrJoin = errors.New("agent: cannot join the cluster")

// SetupConfig is what Setup needs: the agent's flags.
type SetupConfig struct {
	// Name is the node's name (--name); Dir its pki directory (DATA-DIR/pki).
	Name, Dir string
	// Insecure is --insecure: no certificates at all.
	Insecure bool
	// Join and Token are --join ADDR and --token TOKEN.
	Join, Token string
	// Advertise is the address other nodes reach this one at (--advertise).
	Advertise string
	// AdminUser names the admin config a new CA comes with (--admin-user).
	AdminUser string
	// InitCA is --init-ca: create the CA although etcd is external.
	InitCA bool
	// ExternalEtcd: --etcd-endpoints was given.
	ExternalEtcd bool
	// NodeCertLifetime is --node-cert-lifetime.
	NodeCertLifetime time.Duration
	Log              *slog.Logger
}

// Setup loads this node's credentials, or makes them: a new cluster CA on
// the first node (no --join, embedded etcd), a certificate from the cluster
// with --join and --token. It returns the credentials (nil with --insecure)
// and, without --etcd-endpoints, the etcd endpoints a joined node was given
// (nil if none).
func Setup(ctx context.Context, cfg SetupConfig) (*pki.Node, []string, error) {
	if cfg.Insecure {
		cfg.Log.Warn("INSECURE: --insecure given: the API and etcd are plain text and unauthenticated, and any client may claim to be any user, root included; for debugging on a private machine only")
		return nil, nil, nil
	}
	dir := cfg.Dir
	switch {
	case pki.HasNodeCert(dir):
		if cfg.Join != "" {
			cfg.Log.Info("node already has a certificate; --join and --token ignored", "dir", dir)
		}
	case cfg.Join != "":
		if err := joinCluster(ctx, cfg); err != nil {
			return nil, nil, err
		}
	case !cfg.ExternalEtcd || cfg.InitCA:
		host, _, _ := net.SplitHostPort(cfg.Advertise)
		if _, err := pki.Bootstrap(dir, cfg.Name, []string{host}, cfg.Advertise, cfg.AdminUser); err != nil {
			return nil, nil, fmt.Errorf("agent: create the cluster CA: %w", err)
		}
		cfg.Log.Info("created the cluster CA and an admin config", "ca", filepath.Join(dir, pki.CACertFile), "admin_config", filepath.Join(dir, pki.AdminFile), "admin", cfg.AdminUser)
	default:
		return nil, nil, fmt.Errorf("%w: no node certificate in %s: join with --join ADDR --token TOKEN (an admin prints a token with 'ssi token create'); the first agent of a cluster on an external etcd creates the CA with --init-ca", ErrJoin, dir)
	}
	n, err := pki.LoadNode(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	if id, err := pki.IdentityOf(n.Cert.Leaf); err != nil || !id.Node || id.Name != cfg.Name {
		return nil, nil, fmt.Errorf("agent: the certificate in %s is for %v, not node %s (err %v): use the data dir of that node", dir, id, cfg.Name, err)
	}
	if err := renewAtStart(n, cfg); err != nil {
		return nil, nil, err
	}
	var eps []string
	if !cfg.ExternalEtcd {
		if b, err := os.ReadFile(filepath.Join(dir, etcdFile)); err == nil && json.Unmarshal(b, &eps) == nil {
			return n, eps, nil
		}
	}
	return n, nil, nil
}

// joinCluster gets a node certificate from the agent at --join, trusting it
// only if it presents the CA the token names.
func joinCluster(ctx context.Context, cfg SetupConfig) error {
	tok, err := pki.ParseToken(cfg.Token)
	if err != nil {
		return fmt.Errorf("%w: --token: %w", ErrJoin, err)
	}
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(key, "node:"+cfg.Name)
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(cfg.Advertise)
	body, _ := json.Marshal(api.JoinRequest{Token: cfg.Token, Name: cfg.Name, Addrs: []string{host}, CSR: string(csr)})
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: pki.PinnedTLS(tok.CAHash)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+cfg.Join+"/v1/join", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: --join %q: %w", ErrJoin, cfg.Join, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w via %s: %w", ErrJoin, cfg.Join, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		return fmt.Errorf("%w via %s: %s", ErrJoin, cfg.Join, e.Message)
	}
	var cr api.CertResponse
	if err := json.Unmarshal(b, &cr); err != nil {
		return fmt.Errorf("%w: answer of %s: %w", ErrJoin, cfg.Join, err)
	}
	caCert, err := pki.ParseCert([]byte(cr.CA))
	if err != nil || pki.CertHash(caCert) != tok.CAHash {
		return fmt.Errorf("%w: %s sent a CA that is not the one the token names", ErrJoin, cfg.Join)
	}
	ca := &pki.CA{Cert: caCert, CertPEM: []byte(cr.CA)}
	cert, err := pki.ParseCert([]byte(cr.Cert))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrJoin, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("%w: the certificate from %s does not verify: %w", ErrJoin, cfg.Join, err)
	}
	kb, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := pki.SaveNode(cfg.Dir, ca, []byte(cr.Cert), kb); err != nil {
		return err
	}
	if len(cr.EtcdEndpoints) > 0 {
		eb, _ := json.Marshal(cr.EtcdEndpoints)
		if err := os.WriteFile(filepath.Join(cfg.Dir, etcdFile), eb, 0o600); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	cfg.Log.Info("joined the cluster: node certificate stored", "via", cfg.Join, "dir", cfg.Dir, "expires", cert.NotAfter)
	return nil
}

// renewAtStart renews, before anything connects, the certificate of a node
// holding the CA key when it is due (its embedded etcd would present an
// expired one); other nodes renew in renewLoop, or must join again if theirs
// has expired.
func renewAtStart(n *pki.Node, cfg SetupConfig) error {
	cur := n.Current()
	if n.CA.Key == nil {
		if time.Now().After(cur.NotAfter) {
			return fmt.Errorf("%w: the node certificate in %s expired at %s: join again (remove %s/node.* and restart with --join ADDR --token TOKEN)", ErrJoin, cfg.Dir, cur.NotAfter.UTC().Format(time.RFC3339), cfg.Dir)
		}
		return nil
	}
	if time.Now().Before(pki.RenewAt(time.Now(), cur.NotAfter, cfg.NodeCertLifetime)) {
		return nil
	}
	leaf, err := renewSelf(n, cfg.Name, cfg.NodeCertLifetime)
	if err != nil {
		return fmt.Errorf("agent: renew the node certificate: %w", err)
	}
	cfg.Log.Info("node certificate renewed", "serial", pki.Serial(leaf), "expires", leaf.NotAfter)
	return nil
}

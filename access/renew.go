package access

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pki"
)

// MinNodeCertLifetime bounds --node-cert-lifetime and the lifetime a renewal
// may ask for (tests use 20 s).
const MinNodeCertLifetime = 10 * time.Second

// Node certificates renew themselves (docs/SECURITY.md, Lifetimes): once less
// than a third of --node-cert-lifetime remains, the agent has a new
// certificate signed for its key, by itself when it holds the CA key, else
// by the CA node (POST /v1/renew, authenticated by its current certificate),
// writes it to DATA-DIR/pki/node.crt and presents it from the next handshake
// on (pki.Node.SetCert: GetCertificate and GetClientCertificate), without a
// restart. The embedded etcd reads the files at each handshake too.

// renewLoop renews the node certificate when it is due, until ctx ends.
func (c *Control) renewLoop(ctx context.Context) {
	for ctx.Err() == nil {
		cur := c.node.Current()
		wait := time.Until(pki.RenewAt(time.Now(), cur.NotAfter, c.cfg.NodeCertLifetime))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		leaf, err := c.renewCert(ctx)
		if err != nil {
			left := time.Until(cur.NotAfter)
			retry := min(max(left/10, time.Second), time.Minute)
			c.log.Warn("renew the node certificate", "err", err, "expires", cur.NotAfter, "retry_in", retry)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			continue
		}
		c.log.Info("node certificate renewed", "serial", pki.Serial(leaf), "expires", leaf.NotAfter)
	}
}

// renewCert gets and installs a new certificate for the node's key: signed
// here when this node holds the CA key, else by the node that does.
func (c *Control) renewCert(ctx context.Context) (*x509.Certificate, error) {
	if c.node.CA.Key != nil {
		return renewSelf(c.node, c.cfg.Name, c.cfg.NodeCertLifetime)
	}
	_, key, err := nodeSigner(c.node)
	if err != nil {
		return nil, err
	}
	csr, err := pki.NewCSR(key, "node:"+c.cfg.Name)
	if err != nil {
		return nil, err
	}
	certPEM, err := c.askRenewal(ctx, api.RenewRequest{CSR: string(csr), Lifetime: c.cfg.NodeCertLifetime})
	if err != nil {
		return nil, err
	}
	return c.node.Renewed(certPEM)
}

// renewSelf signs, with the CA key n holds, a new certificate of lifetime
// for n's key, and installs it.
func renewSelf(n *pki.Node, name string, lifetime time.Duration) (*x509.Certificate, error) {
	pair, key, err := nodeSigner(n)
	if err != nil {
		return nil, err
	}
	cert, err := n.CA.IssueNode(key.Public(), name, pki.NodeAddrs(pair.Leaf), pki.Validity{NotAfter: time.Now().Add(lifetime)})
	if err != nil {
		return nil, err
	}
	return n.Renewed(pki.EncodeCert(cert))
}

// nodeSigner is n's current certificate and its key.
func nodeSigner(n *pki.Node) (tls.Certificate, crypto.Signer, error) {
	pair := n.CurrentPair()
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return pair, nil, fmt.Errorf("node key of type %T cannot sign", pair.PrivateKey)
	}
	return pair, key, nil
}

// askRenewal sends the renewal request to the node holding the CA key.
func (c *Control) askRenewal(ctx context.Context, req api.RenewRequest) ([]byte, error) {
	var cr api.CertResponse
	if err := c.askCA(ctx, "/v1/renew", req, &cr); err != nil {
		return nil, fmt.Errorf("renewal: %w", err)
	}
	return []byte(cr.Cert), nil
}

// Renew is POST /v1/renew, on the node holding the CA key: node, a node
// authenticated by its current (valid, unrevoked) certificate peer, gets a
// new one for the same name and addresses.
func (c *Control) Renew(node string, peer *x509.Certificate, req api.RenewRequest) (api.CertResponse, error) {
	if req.Lifetime == 0 {
		req.Lifetime = pki.NodeLifetime
	}
	if req.Lifetime < MinNodeCertLifetime || req.Lifetime > pki.NodeLifetime {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "lifetime %s: want %s to %s", req.Lifetime, MinNodeCertLifetime, pki.NodeLifetime)
	}
	pub, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	// The addresses are those of the certificate being renewed, never new ones.
	cert, err := c.node.CA.IssueNode(pub, node, pki.NodeAddrs(peer), pki.Validity{NotAfter: time.Now().Add(req.Lifetime)})
	if err != nil {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	c.log.Info("node certificate renewed for a node", "peer", node, "serial", pki.Serial(cert), "expires", cert.NotAfter)
	return api.CertResponse{Cert: string(pki.EncodeCert(cert)), CA: string(c.node.CA.CertPEM)}, nil
}

package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"time"
)

// tlsState is what a PeerCheck hook reads of a handshake.
type tlsState = tls.ConnectionState

// nodeCert is a node's certificate as presented: alone (as a client) and with
// the CA after it (as a server, so a joiner can pin the CA by hash).
type nodeCert struct {
	leaf, chain *tls.Certificate
}

func (n *Node) current() *nodeCert {
	if c := n.cur.Load(); c != nil {
		return c
	}
	return n.makeCert(n.Cert) // a Node made without LoadNode
}

func (n *Node) makeCert(cert tls.Certificate) *nodeCert {
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	leaf := cert
	chain := cert
	chain.Certificate = append(cert.Certificate[:len(cert.Certificate):len(cert.Certificate)], n.CA.Cert.Raw)
	return &nodeCert{leaf: &leaf, chain: &chain}
}

// SetCert makes cert the node's certificate for every handshake from now on
// (renewal); connections already open keep theirs.
func (n *Node) SetCert(cert tls.Certificate) { n.cur.Store(n.makeCert(cert)) }

// Current returns the node's certificate in use (its Leaf parsed).
func (n *Node) Current() *x509.Certificate { return n.current().leaf.Leaf }

// CurrentPair returns the node's certificate and key in use.
func (n *Node) CurrentPair() tls.Certificate { return *n.current().leaf }

// Renewed writes certPEM (a new certificate for the node's current key) to
// the node's directory and uses it from the next handshake on. The key does
// not change, so the files on disk are a matching pair at every moment (the
// embedded etcd reads them at each handshake).
func (n *Node) Renewed(certPEM []byte) (*x509.Certificate, error) {
	cur := n.CurrentPair()
	leaf, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cur.Leaf.PublicKey) {
		return nil, fmt.Errorf("pki: renewed certificate is not for the node's key")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: n.CA.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("pki: renewed certificate does not verify against the cluster CA: %w", err)
	}
	if leaf.Subject.CommonName != cur.Leaf.Subject.CommonName {
		return nil, fmt.Errorf("pki: renewed certificate is for %q, not %q", leaf.Subject.CommonName, cur.Leaf.Subject.CommonName)
	}
	if err := writeFile(filepath.Join(n.Dir, NodeCertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	n.SetCert(tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: cur.PrivateKey, Leaf: leaf})
	return leaf, nil
}

// RenewAt is when a node certificate valid until notAfter should be renewed,
// for a wanted lifetime: once less than a third of lifetime remains, or at
// once when the certificate outlives what is wanted (the lifetime was
// lowered) by more than a minute.
func RenewAt(now, notAfter time.Time, lifetime time.Duration) time.Time {
	if notAfter.Sub(now) > lifetime+time.Minute {
		return now
	}
	return notAfter.Add(-lifetime / 3)
}

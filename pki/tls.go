package pki

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
)

// ServerTLS returns the config of a TLS 1.3 listener presenting cert and
// verifying client certificates against ca. With requireClient a handshake
// without a valid client certificate fails; without it (the agent API, whose
// join endpoint authenticates by token) a certificate, when given, must be
// valid, and the agent refuses requests without one to every route but
// health and join (agent/routes.go).
func ServerTLS(ca *CA, cert tls.Certificate, requireClient bool) *tls.Config {
	auth := tls.VerifyClientCertIfGiven
	if requireClient {
		auth = tls.RequireAndVerifyClientCert
	}
	// The CA travels in the chain so a joiner can pin it by hash.
	cert.Certificate = append(cert.Certificate[:len(cert.Certificate):len(cert.Certificate)], ca.Cert.Raw)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    ca.Pool(),
		ClientAuth:   auth,
	}
}

// ClientTLS returns the config of a TLS 1.3 client presenting cert and
// trusting only ca.
//
// The certificate is presented even when the server's list of acceptable CAs
// does not name its issuer (Go's default is to send none then): a certificate
// of the wrong cluster is then refused by the server with a TLS alert that
// says so, rather than looking like no certificate at all.
func ClientTLS(ca *CA, cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
		RootCAs: ca.Pool(),
	}
}

// Node is a node's credentials: the CA certificate (and key, on the node that
// holds it) and the node's own certificate and key.
type Node struct {
	Dir string
	CA  *CA
	// Cert is the certificate loaded at start; Current is the one in use
	// (renewed in place: SetCert).
	Cert tls.Certificate

	cur   atomic.Pointer[nodeCert]
	check atomic.Pointer[PeerCheck]
}

// LoadNode reads a node's credentials from dir.
func LoadNode(dir string) (*Node, error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, NodeCertFile), filepath.Join(dir, NodeKeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki: node certificate in %s: %w", dir, err)
	}
	n := &Node{Dir: dir, CA: ca, Cert: cert}
	n.SetCert(cert)
	return n, nil
}

// HasNodeCert reports whether dir holds a node certificate.
func HasNodeCert(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, NodeCertFile))
	return err == nil
}

// SaveNode writes a node's certificate, key and CA certificate into dir.
func SaveNode(dir string, ca *CA, certPEM, keyPEM []byte) error {
	if err := ca.Save(dir); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, NodeKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, NodeCertFile), certPEM, 0o644)
}

// Bootstrap makes a new cluster's PKI in dir: a CA, the node certificate of
// this first node for addrs, and an admin client config (admin.json, 0600)
// for the user adminName, pointing at server. It refuses a dir that has a CA.
func Bootstrap(dir, node string, addrs []string, server, adminName string) (*Node, error) {
	if _, err := LoadCA(dir); !errors.Is(err, ErrNoCA) {
		if err == nil {
			err = fmt.Errorf("pki: %s already holds a CA", dir)
		}
		return nil, err
	}
	ca, err := NewCA(node)
	if err != nil {
		return nil, err
	}
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	cert, err := ca.IssueNode(key.Public(), node, addrs, Validity{})
	if err != nil {
		return nil, err
	}
	kb, err := EncodeKey(key)
	if err != nil {
		return nil, err
	}
	admin, err := NewUserConfig(ca, server, adminName, true, Validity{})
	if err != nil {
		return nil, err
	}
	if err := SaveNode(dir, ca, EncodeCert(cert), kb); err != nil {
		return nil, err
	}
	if err := admin.Write(filepath.Join(dir, AdminFile)); err != nil {
		return nil, err
	}
	return LoadNode(dir)
}

// ServerTLS is the node's listener config. It presents the node's current
// certificate (a renewal takes effect at the next handshake) and checks the
// client's certificate with the node's PeerCheck.
func (n *Node) ServerTLS(requireClient bool) *tls.Config {
	c := ServerTLS(n.CA, *n.current().leaf, requireClient)
	c.Certificates = nil
	c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return n.current().chain, nil }
	c.VerifyConnection = n.verifyPeer
	return c
}

// ClientTLS is the node's client config (agent to agent, agent to etcd): it
// presents the node's current certificate and checks the server's with the
// node's PeerCheck.
func (n *Node) ClientTLS() *tls.Config {
	c := ClientTLS(n.CA, *n.current().leaf)
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return n.current().leaf, nil }
	c.VerifyConnection = n.verifyPeer
	return c
}

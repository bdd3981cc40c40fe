package pki

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"time"
)

// PageServerCreds are the TLS credentials of one CRIU page-server connection
// (a post-copy migration's memory, source to target). CRIU speaks TLS through
// GnuTLS with files, not with ssi's cluster identities: its server accepts any
// client certificate its CA signed, so under the cluster CA every user's
// certificate would open any job's memory. Each migration therefore gets a
// throwaway CA that signs exactly one server certificate (valid for the page
// server's address, which the client checks) and one client certificate; the
// CA's key is dropped at once. The source keeps the server half; the client
// half travels to the target in the migration's restore request, over the
// agents' mutual TLS.
type PageServerCreds struct {
	CACert     []byte // PEM
	ServerCert []byte
	ServerKey  []byte
	ClientCert []byte
	ClientKey  []byte
}

// NewPageServerCreds makes the credentials for a page server listening on
// host (an IP address or a DNS name), valid for lifetime.
func NewPageServerCreds(host string, lifetime time.Duration) (*PageServerCreds, error) {
	if host == "" {
		return nil, fmt.Errorf("pki: page server credentials: empty host")
	}
	ca, err := newCA("ssi page server CA", lifetime)
	if err != nil {
		return nil, err
	}
	issue := func(cn string, usage x509.ExtKeyUsage) (cert, key []byte, err error) {
		k, err := NewKey()
		if err != nil {
			return nil, nil, fmt.Errorf("pki: page server key: %w", err)
		}
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: cn, Organization: []string{"ssi"}},
			NotBefore:   time.Now().Add(-time.Minute),
			NotAfter:    time.Now().Add(lifetime),
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if ip := net.ParseIP(host); ip != nil {
			tmpl.IPAddresses = []net.IP{ip}
		} else {
			tmpl.DNSNames = []string{host}
		}
		c, err := ca.sign(tmpl, k.Public())
		if err != nil {
			return nil, nil, err
		}
		kp, err := EncodeKey(k)
		if err != nil {
			return nil, nil, err
		}
		return EncodeCert(c), kp, nil
	}
	pc := &PageServerCreds{CACert: ca.CertPEM}
	if pc.ServerCert, pc.ServerKey, err = issue("ssi page server", x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	if pc.ClientCert, pc.ClientKey, err = issue("ssi lazy pages", x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	return pc, nil
}

// CheckPageServerClient checks the client half of PageServerCreds received
// from a peer: a CA certificate, and a client certificate it signed with its
// key, all PEM and small. It returns what is wrong, for a clear refusal.
func CheckPageServerClient(caPEM, certPEM, keyPEM []byte) error {
	const maxPEM = 8 << 10
	for _, f := range []struct {
		name string
		b    []byte
	}{{"CA certificate", caPEM}, {"certificate", certPEM}, {"key", keyPEM}} {
		if len(f.b) == 0 || len(f.b) > maxPEM {
			return fmt.Errorf("page server client %s: %d bytes (want 1 to %d)", f.name, len(f.b), maxPEM)
		}
	}
	ca, err := ParseCert(caPEM)
	if err != nil {
		return fmt.Errorf("page server CA: %w", err)
	}
	cert, err := ParseCert(certPEM)
	if err != nil {
		return fmt.Errorf("page server client certificate: %w", err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return fmt.Errorf("page server client key: %w", err)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("page server client key does not match its certificate")
	}
	if !ca.IsCA {
		return fmt.Errorf("page server CA certificate is not a CA")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("page server client certificate: %w", err)
	}
	return nil
}

package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"regexp"
)

// PinnedTLS returns the config of a client that trusts a server only if its
// chain carries the CA whose hash is caHash and its certificate verifies
// against that CA (kubeadm's discovery-token-ca-cert-hash): how a joining
// node reaches the cluster before it has the CA.
func PinnedTLS(caHash string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by VerifyConnection: pin, then verify
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			pool := x509.NewCertPool()
			found := false
			for _, c := range cs.PeerCertificates {
				if CertHash(c) == caHash {
					pool.AddCert(c)
					found = true
				}
			}
			if !found {
				return errors.New("the server does not present the cluster CA named by the token (CA hash mismatch): wrong address, wrong token, or someone in between")
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	}
}

// NodeAddrs returns the addresses a node certificate was issued for, minus
// those IssueNode always adds: what a renewal passes to IssueNode again.
func NodeAddrs(c *x509.Certificate) []string {
	name, _ := IdentityOf(c)
	var out []string
	for _, ip := range c.IPAddresses {
		if !ip.Equal(net.IPv4(127, 0, 0, 1)) {
			out = append(out, ip.String())
		}
	}
	for _, d := range c.DNSNames {
		if d != "localhost" && d != NodeSAN && d != name.Name {
			out = append(out, d)
		}
	}
	return out
}

var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// ValidNodeName reports whether name may name a node (an agent's --name, a
// join): 1-32 lower-case letters, digits and dashes, not starting or ending
// with a dash. Stricter than CheckName, which any certificate's name passes.
func ValidNodeName(name string) bool { return nodeNameRE.MatchString(name) }

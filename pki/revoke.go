package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// ErrRevoked is wrapped by the errors of a PeerCheck refusing a revoked
// certificate.
var ErrRevoked = errors.New("pki: certificate revoked")

// Serial returns a certificate's serial number as the revocation list keys
// it: lower-case hex, no leading zeros.
func Serial(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// ParseSerial normalizes a serial number typed by a human: hex, with or
// without 0x, colons or leading zeros, any case.
func ParseSerial(s string) (string, error) {
	h := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X"))
	h = strings.ReplaceAll(h, ":", "")
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || h == "" || n.Sign() <= 0 || n.BitLen() > 160 {
		return "", fmt.Errorf("pki: serial %q: want a positive hex number of at most 20 bytes (as 'ssi user list' prints it)", s)
	}
	return n.Text(16), nil
}

// PeerCheck is called at every TLS handshake of a node's listener and client
// configs with the peer's verified certificate (the client's, on the
// listener; the server's, as a client). An error refuses the handshake.
type PeerCheck func(peer *x509.Certificate) error

// SetPeerCheck installs the check of the node's TLS configs (ServerTLS,
// ClientTLS), including configs made before the call; nil removes it.
func (n *Node) SetPeerCheck(f PeerCheck) {
	if f == nil {
		n.check.Store(nil)
		return
	}
	n.check.Store(&f)
}

func (n *Node) verifyPeer(cs tlsState) error {
	f := n.check.Load()
	if f == nil || len(cs.PeerCertificates) == 0 {
		return nil // no certificate: the handler refuses (the join endpoint needs none)
	}
	return (*f)(cs.PeerCertificates[0])
}

// RevokedError describes a revoked certificate: who it was for, when it was
// revoked and by whom.
func RevokedError(who, serial string, at time.Time, by string) error {
	msg := fmt.Sprintf("certificate %s (serial %s) was revoked at %s", who, serial, at.UTC().Format(time.RFC3339))
	if by != "" {
		msg += " by " + by
	}
	return fmt.Errorf("%w: %s", ErrRevoked, msg)
}

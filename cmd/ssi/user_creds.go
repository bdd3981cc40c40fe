package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/ssi-cluster/ssi/pki"
)

// errCertExpired is returned, before any connection, when the config's
// certificate has expired: the agent would refuse the handshake with a bare
// TLS alert, and the CLI can say more.
var errCertExpired = errors.New("certificate expired")

// checkOwnCert refuses a config whose certificate has expired, saying when
// and what to do.
func checkOwnCert(cfg *pki.ClientConfig, src string, now time.Time) error {
	c, err := pki.ParseCert([]byte(cfg.Cert))
	if err != nil {
		return nil // ParseClientConfig checked it; the handshake will say
	}
	if now.Before(c.NotAfter) {
		return nil
	}
	name := c.Subject.CommonName
	return fmt.Errorf("%w: your certificate for %s (config %s, serial %s) expired at %s; ask an admin for a new one: ssi user add %s --rotate --out FILE",
		errCertExpired, name, src, pki.Serial(c), c.NotAfter.UTC().Format(time.RFC3339), name)
}

package access

import (
	"context"
	"net/http"

	"github.com/ssi-cluster/ssi/pki"
)

// AsCaller returns ctx with who as its request's caller, for a request
// authenticated other than by Authenticate: the web dashboard's (package
// dashboard), whose caller is the user of a session cookie. Admit and the
// handlers then decide on who exactly as for a request with who's
// certificate.
func AsCaller(ctx context.Context, who Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, who)
}

// CertSerial is the serial of r's verified client certificate ("" without one).
func CertSerial(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return ""
	}
	return pki.Serial(r.TLS.VerifiedChains[0][0])
}

// RevokedSerial returns why the certificate of serial may not be used any
// more (ssi user revoke), or nil; always nil with --insecure.
func (c *Control) RevokedSerial(serial string) error {
	if c.revoked == nil {
		return nil
	}
	r, ok := c.revoked.Revoked(serial)
	if !ok {
		return nil
	}
	return pki.RevokedError("of user "+r.User, serial, r.At, r.By)
}

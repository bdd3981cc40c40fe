package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pki"
)

// TestExpiredConfigSaysSo: an expired certificate is refused before any
// connection, with when and what to do.
func TestExpiredConfigSaysSo(t *testing.T) {
	ca, err := pki.NewCA("t")
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(-time.Hour).Truncate(time.Second)
	cfg, err := pki.NewUserConfig(ca, "127.0.0.1:7070", "alice", false, pki.Validity{NotBefore: exp.Add(-time.Hour), NotAfter: exp})
	if err != nil {
		t.Fatal(err)
	}
	err = checkOwnCert(cfg, "/tmp/alice.json", time.Now())
	if !errors.Is(err, errCertExpired) || !strings.Contains(err.Error(), "your certificate for alice (config /tmp/alice.json") ||
		!strings.Contains(err.Error(), "expired at "+exp.UTC().Format(time.RFC3339)) || !strings.Contains(err.Error(), "ssi user add alice --rotate") {
		t.Fatalf("expired: %v", err)
	}
	if err := checkOwnCert(cfg, "x", exp.Add(-time.Minute)); err != nil {
		t.Fatalf("valid: %v", err)
	}
}

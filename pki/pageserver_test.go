package pki

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func TestPageServerCreds(t *testing.T) {
	pc, err := NewPageServerCreds("10.1.2.3", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPageServerClient(pc.CACert, pc.ClientCert, pc.ClientKey); err != nil {
		t.Fatalf("own client half refused: %v", err)
	}
	// The server certificate is valid for the page server's address, under
	// this CA only.
	ca, _ := ParseCert(pc.CACert)
	srv, _ := ParseCert(pc.ServerCert)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.1.2.3"}); err != nil {
		t.Fatalf("server certificate for its address: %v", err)
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.1.2.4"}); err == nil {
		t.Fatal("server certificate valid for another address")
	}
	if srv.NotAfter.After(time.Now().Add(time.Hour + time.Minute)) {
		t.Fatalf("server certificate valid until %s, want about an hour", srv.NotAfter)
	}
	other, err := NewPageServerCreds("10.1.2.3", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := NewCA("n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		ca, cert, key []byte
		want          string
	}{
		{"another migration's client", pc.CACert, other.ClientCert, other.ClientKey, "unknown authority"},
		{"key of another certificate", pc.CACert, pc.ClientCert, other.ClientKey, "does not match"},
		{"server certificate as client", pc.CACert, pc.ServerCert, pc.ServerKey, "incompatible key usage"},
		{"a leaf as CA", pc.ClientCert, pc.ClientCert, pc.ClientKey, "not a CA"},
		{"the cluster CA", cluster.CertPEM, pc.ClientCert, pc.ClientKey, "unknown authority"},
		{"empty key", pc.CACert, pc.ClientCert, nil, "0 bytes"},
		{"oversized certificate", pc.CACert, []byte(strings.Repeat("A", 9<<10)), pc.ClientKey, "9216 bytes"},
		{"not PEM", pc.CACert, []byte("-----BEGIN NONSENSE"), pc.ClientKey, "no PEM certificate"},
	} {
		err := CheckPageServerClient(tc.ca, tc.cert, tc.key)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if _, err := NewPageServerCreds("", time.Hour); err == nil {
		t.Error("credentials for an empty host")
	}
}

// FuzzCheckPageServerClient: the client half of page-server credentials
// comes from a peer in a restore request; no input panics, and only a
// well-formed set is accepted.
func FuzzCheckPageServerClient(f *testing.F) {
	pc, err := NewPageServerCreds("127.0.0.1", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pc.CACert, pc.ClientCert, pc.ClientKey)
	f.Add(pc.CACert, pc.ServerCert, pc.ServerKey)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte{}, []byte("x"))
	f.Fuzz(func(t *testing.T, ca, cert, key []byte) {
		if CheckPageServerClient(ca, cert, key) != nil {
			return
		}
		c, err := ParseCert(cert)
		if err != nil || len(c.ExtKeyUsage) == 0 {
			t.Fatalf("accepted a client certificate that does not parse or names no usage: %v", err)
		}
	})
}

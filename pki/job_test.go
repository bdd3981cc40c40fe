package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"testing"
	"time"
)

// TestJobCertificate: a job's certificate speaks for its user and names the
// job, is an admin's only when issued so (a job of root), lives JobLifetime,
// and a job SAN that does not parse makes no identity.
func TestJobCertificate(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.IssueJob(key.Public(), "alice", false, 42, Validity{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := IdentityOf(c)
	if err != nil || id != (Identity{Name: "alice", Job: 42}) {
		t.Fatalf("identity %+v, %v", id, err)
	}
	if id.String() != "user alice (job 42)" {
		t.Errorf("String() = %q", id.String())
	}
	if life := c.NotAfter.Sub(c.NotBefore); life > JobLifetime+2*time.Minute {
		t.Errorf("lifetime %s, want about %s", life, JobLifetime)
	}
	if _, err := ca.IssueJob(key.Public(), "alice", false, 0, Validity{}); err == nil {
		t.Error("a job certificate without a job was issued")
	}
	root, err := ca.IssueJob(key.Public(), "root", true, 7, Validity{})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := IdentityOf(root); err != nil || id != (Identity{Name: "root", Admin: true, Job: 7}) || id.String() != "admin root" {
		t.Errorf("a job of root: %+v (%s), %v; want an admin of job 7", id, id, err)
	}
	bad, err := ca.sign(&x509.Certificate{
		Subject: pkix.Name{CommonName: "alice"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{{Scheme: "ssi", Opaque: "job:x"}},
	}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := IdentityOf(bad); !errors.Is(err, ErrBadIdentity) {
		t.Errorf("job SAN job:x: %v, want ErrBadIdentity", err)
	}
}

package pki

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

// TestPeerCheckAtHandshake: a node's listener and client configs refuse, at
// the handshake, a peer its PeerCheck refuses, both ways, and take a
// renewed certificate without being rebuilt.
func TestPeerCheckAtHandshake(t *testing.T) {
	dir := t.TempDir()
	n, err := Bootstrap(dir, "node1", []string{"127.0.0.1"}, "127.0.0.1:7070", "root")
	if err != nil {
		t.Fatal(err)
	}
	srv, cli := n.ServerTLS(true), n.ClientTLS()
	if serr, cerr := handshake(t, srv, cli); serr != nil || cerr != nil {
		t.Fatalf("no check: server %v, client %v", serr, cerr)
	}
	bad := Serial(n.Current())
	n.SetPeerCheck(func(c *x509.Certificate) error {
		if Serial(c) == bad {
			return RevokedError("of node node1", bad, time.Now(), "root")
		}
		return nil
	})
	serr, cerr := handshake(t, srv, cli)
	if !errors.Is(serr, ErrRevoked) && !errors.Is(cerr, ErrRevoked) {
		t.Fatalf("revoked peer: server %v, client %v; want ErrRevoked", serr, cerr)
	}

	// Renewal: the same configs now present the new certificate, which passes.
	c, err := n.CA.IssueNode(n.Current().PublicKey, "node1", []string{"127.0.0.1"}, Validity{NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Renewed(EncodeCert(c)); err != nil {
		t.Fatal(err)
	}
	if Serial(n.Current()) == bad {
		t.Fatal("Renewed did not install the new certificate")
	}
	if serr, cerr := handshake(t, srv, cli); serr != nil || cerr != nil {
		t.Fatalf("renewed: server %v, client %v", serr, cerr)
	}
	disk, err := LoadNode(dir)
	if err != nil || Serial(disk.Current()) != Serial(c) {
		t.Fatalf("node.crt on disk is not the renewed one: %v", err)
	}

	// A certificate for another key or name is not installed.
	other, _ := NewKey()
	c2, _ := n.CA.IssueNode(other.Public(), "node1", nil, Validity{})
	if _, err := n.Renewed(EncodeCert(c2)); err == nil {
		t.Fatal("Renewed accepted a certificate for another key")
	}
}

func TestRenewAt(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name     string
		left     time.Duration
		lifetime time.Duration
		want     time.Duration // from now
	}{
		{"fresh", 20 * time.Second, 20 * time.Second, 20*time.Second - 20*time.Second/3},
		{"a third left", 6 * time.Second, 20 * time.Second, 6*time.Second - 20*time.Second/3},
		{"outlives the lifetime wanted", 365 * 24 * time.Hour, 20 * time.Second, 0},
		{"year", 300 * 24 * time.Hour, 365 * 24 * time.Hour, 300*24*time.Hour - 365*24*time.Hour/3},
	} {
		if got := RenewAt(now, now.Add(tc.left), tc.lifetime).Sub(now); got != tc.want {
			t.Errorf("%s: renew in %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestParseSerial(t *testing.T) {
	for in, want := range map[string]string{"0x0AbC": "abc", "0a:bc": "abc", " 1f ": "1f"} {
		if got, err := ParseSerial(in); err != nil || got != want {
			t.Errorf("ParseSerial(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "xyz", "-1", "0x", string(make([]byte, 50))} {
		if _, err := ParseSerial(in); err == nil {
			t.Errorf("ParseSerial(%q) accepted", in)
		}
	}
}

package pki

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshake runs a TLS handshake between server and client configs over a pipe
// and returns the server's error and the client's.
func handshake(t *testing.T, srv, cli *tls.Config) (serr, cerr error) {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(a, srv)
		err := s.Handshake()
		if err == nil {
			// TLS 1.3: the client learns of a refused certificate on its first read.
			_, err = s.Write([]byte("x"))
		}
		a.Close()
		done <- err
	}()
	cli = cli.Clone()
	cli.ServerName = "localhost"
	c := tls.Client(b, cli)
	cerr = c.Handshake()
	if cerr == nil {
		_, cerr = io.ReadFull(c, make([]byte, 1))
	}
	b.Close()
	return <-done, cerr
}

func mustUser(t *testing.T, ca *CA, name string, admin bool, v Validity) tls.Certificate {
	t.Helper()
	cfg, err := NewUserConfig(ca, "127.0.0.1:7070", name, admin, v)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair([]byte(cfg.Cert), []byte(cfg.Key))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func TestBootstrapAndMTLS(t *testing.T) {
	dir := t.TempDir()
	n, err := Bootstrap(dir, "node1", []string{"10.0.0.1"}, "10.0.0.1:7070", "root")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v %v", fi.Mode(), err)
	}
	if _, err := Bootstrap(dir, "node1", nil, "x:1", "root"); err == nil {
		t.Fatal("second bootstrap of the same dir succeeded")
	}
	if id, err := IdentityOf(n.Cert.Leaf); err != nil || id != (Identity{Name: "node1", Node: true}) {
		t.Fatalf("node identity %+v %v", id, err)
	}
	admin, err := LoadClientConfig(filepath.Join(dir, AdminFile))
	if err != nil {
		t.Fatal(err)
	}
	acfg, _ := admin.TLS()
	if serr, cerr := handshake(t, n.ServerTLS(true), acfg); serr != nil || cerr != nil {
		t.Fatalf("admin handshake: server %v, client %v", serr, cerr)
	}

	ca := n.CA
	alice := mustUser(t, ca, "alice", false, Validity{})
	if id, _ := IdentityOf(alice.Leaf); id != (Identity{Name: "alice"}) {
		t.Fatalf("alice: %+v", id)
	}
	if serr, cerr := handshake(t, n.ServerTLS(true), ClientTLS(ca, alice)); serr != nil || cerr != nil {
		t.Fatalf("alice: %v %v", serr, cerr)
	}
	expired := mustUser(t, ca, "alice", false, Validity{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if serr, _ := handshake(t, n.ServerTLS(true), ClientTLS(ca, expired)); serr == nil || !strings.Contains(serr.Error(), "expired") {
		t.Fatalf("expired client cert accepted: %v", serr)
	}
	other, err := NewCA("evil")
	if err != nil {
		t.Fatal(err)
	}
	mallory := mustUser(t, other, "root", true, Validity{})
	if serr, _ := handshake(t, n.ServerTLS(true), ClientTLS(ca, mallory)); serr == nil {
		t.Fatal("client cert from another CA accepted")
	}
	// A client trusting another CA refuses our server.
	if _, cerr := handshake(t, n.ServerTLS(true), ClientTLS(other, mallory)); cerr == nil {
		t.Fatal("client trusted a server of another CA")
	}
	// No client certificate: refused when required, let through (to the
	// handler, which refuses) otherwise.
	none := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Pool()}
	if serr, _ := handshake(t, n.ServerTLS(true), none); serr == nil {
		t.Fatal("no client cert accepted by a server requiring one")
	}
	if serr, cerr := handshake(t, n.ServerTLS(false), none); serr != nil || cerr != nil {
		t.Fatalf("optional client cert: %v %v", serr, cerr)
	}
}

func TestLoadCARefusesOpenKey(t *testing.T) {
	dir := t.TempDir()
	ca, _ := NewCA("n")
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Join(dir, CAKeyFile), 0o644)
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable CA key: %v", err)
	}
	if _, err := LoadCA(t.TempDir()); !errors.Is(err, ErrNoCA) {
		t.Fatalf("empty dir: %v", err)
	}
}

func TestToken(t *testing.T) {
	ca, _ := NewCA("n")
	tok, err := NewToken(ca.Hash())
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseToken(tok.String())
	if err != nil || got != tok {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if !got.Matches(tok.SecretHash()) {
		t.Fatal("token does not match its own hash")
	}
	bad := tok
	bad.Secret = strings.Repeat("0", 32)
	if bad.Matches(tok.SecretHash()) {
		t.Fatal("wrong secret matches")
	}
	for _, s := range []string{"", "K10", tok.String()[3:], strings.Replace(tok.String(), "::", ":", 1), tok.String() + "0", strings.ToUpper(tok.String())} {
		if _, err := ParseToken(s); err == nil {
			t.Errorf("ParseToken(%q) succeeded", s)
		}
	}
}

func TestIdentityAndNames(t *testing.T) {
	ca, _ := NewCA("n")
	key, _ := NewKey()
	for _, name := range []string{"", "../x", "a b", "-x", strings.Repeat("a", 33), "node:x"} {
		if _, err := ca.IssueUser(key.Public(), name, false, Validity{}); err == nil {
			t.Errorf("user %q issued", name)
		}
	}
	c, err := ca.IssueUser(key.Public(), "bob", true, Validity{})
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := IdentityOf(c); id != (Identity{Name: "bob", Admin: true}) {
		t.Fatalf("admin identity %+v", id)
	}
	csr, _ := NewCSR(key, "whatever")
	pub, err := ParseCSR(csr)
	if err != nil || pub == nil {
		t.Fatalf("CSR: %v", err)
	}
	if _, err := ParseCSR([]byte("garbage")); err == nil {
		t.Fatal("garbage CSR parsed")
	}
}

func TestParseClientConfig(t *testing.T) {
	ca, _ := NewCA("n")
	cfg, err := NewUserConfig(ca, "127.0.0.1:7070", "u", false, Validity{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "c.json")
	if err := cfg.Write(path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadClientConfig(path); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(path, 0o644)
	if _, err := LoadClientConfig(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("readable config: %v", err)
	}
	for _, b := range []string{`{}`, `{"server":"x:1"}`, `{"server":"x:1","ca":"","cert":"","key":"","extra":1}`, `[`} {
		if _, err := ParseClientConfig([]byte(b)); err == nil {
			t.Errorf("ParseClientConfig(%s) succeeded", b)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	ca, _ := NewCA("n")
	tok, _ := NewToken(ca.Hash())
	f.Add(tok.String())
	f.Add("K10::.")
	f.Fuzz(func(t *testing.T, s string) {
		tk, err := ParseToken(s)
		if err != nil {
			return
		}
		if again, err := ParseToken(tk.String()); err != nil || again != tk {
			t.Fatalf("round trip of %q: %+v %v", s, again, err)
		}
	})
}

func FuzzParseClientConfig(f *testing.F) {
	ca, _ := NewCA("n")
	cfg, _ := NewUserConfig(ca, "127.0.0.1:7070", "u", false, Validity{})
	b, _ := os.ReadFile(func() string { p := filepath.Join(f.TempDir(), "c"); _ = cfg.Write(p); return p }())
	f.Add(b)
	f.Add([]byte(`{"server":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseClientConfig(b)
	})
}

func FuzzParseCSR(f *testing.F) {
	key, _ := NewKey()
	csr, _ := NewCSR(key, "x")
	f.Add(csr)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseCSR(b)
	})
}

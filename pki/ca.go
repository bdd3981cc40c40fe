package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Subject markers of the identities (see the package doc).
const (
	OrgNodes   = "ssi:nodes"
	OrgAdmins  = "ssi:admins"
	nodePrefix = "node:"
	// NodeSAN is a DNS name in every node certificate and in no user
	// certificate: etcd, which checks SANs but not subjects, admits only
	// certificates valid for it (its --client-cert-allowed-hostname). The
	// .invalid TLD never resolves.
	NodeSAN = "node.ssi.invalid"
)

// Lifetimes of what the CA issues.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	NodeLifetime = 365 * 24 * time.Hour
	UserLifetime = 365 * 24 * time.Hour
)

// Files in a PKI directory (<data-dir>/pki).
const (
	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
	AdminFile    = "admin.json"
)

// Errors, checked with errors.Is.
var (
	ErrNoCA        = errors.New("pki: no cluster CA")
	ErrBadIdentity = errors.New("pki: certificate carries no ssi identity")
)

// CA is the cluster certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer // nil when only the certificate is known
}

// Pool returns a cert pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Hash is the CA's fingerprint as used in join tokens: hex SHA-256 of the DER
// certificate.
func (ca *CA) Hash() string { return CertHash(ca.Cert) }

// CertHash returns the hex SHA-256 of a certificate's DER bytes.
func CertHash(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return hex.EncodeToString(h[:])
}

// NewKey returns a fresh ECDSA P-256 key.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// EncodeKey returns key as a PEM "PRIVATE KEY" (PKCS #8) block.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey parses a PEM private key (PKCS #8, EC or PKCS #1).
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("pki: no PEM block in private key")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("pki: PEM block %q is not a private key", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: parse private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: private key of type %T cannot sign", k)
	}
	return s, nil
}

// EncodeCert returns a certificate as PEM.
func EncodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// ParseCert parses the first PEM certificate in b.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("pki: no PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: parse certificate: %w", err)
	}
	return c, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewCA creates a self-signed cluster CA named after the cluster's first node.
func NewCA(name string) (*CA, error) {
	return newCA("ssi cluster CA ("+name+")", CALifetime)
}

// newCA creates a self-signed CA that signs leaf certificates only.
func newCA(cn string, lifetime time.Duration) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"ssi"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	c, _ := x509.ParseCertificate(der)
	return &CA{Cert: c, CertPEM: EncodeCert(c), Key: key}, nil
}

// Save writes the CA into dir: ca.crt (0644) and, if the key is known, ca.key (0600).
func (ca *CA) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if ca.Key != nil {
		kb, err := EncodeKey(ca.Key)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, CAKeyFile), kb, 0o600); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(dir, CACertFile), ca.CertPEM, 0o644)
}

// LoadCA reads dir's CA: the certificate always, the key when present. It
// refuses a key file readable by others than its owner.
func LoadCA(dir string) (*CA, error) {
	cb, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoCA, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	c, err := ParseCert(cb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CACertFile), err)
	}
	ca := &CA{Cert: c, CertPEM: cb}
	kp := filepath.Join(dir, CAKeyFile)
	fi, err := os.Stat(kp)
	if errors.Is(err, os.ErrNotExist) {
		return ca, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("pki: %s has mode %o: the CA key must be readable by its owner only (chmod 600 %s)", kp, fi.Mode().Perm(), kp)
	}
	kb, err := os.ReadFile(kp)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if ca.Key, err = ParseKey(kb); err != nil {
		return nil, fmt.Errorf("%s: %w", kp, err)
	}
	return ca, nil
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// Validity is a certificate's validity window; zero fields mean "now" and
// "now + the kind's default lifetime".
type Validity struct {
	NotBefore, NotAfter time.Time
}

func (v Validity) window(def time.Duration) (time.Time, time.Time) {
	nb, na := v.NotBefore, v.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Minute)
	}
	if na.IsZero() {
		na = time.Now().Add(def)
	}
	return nb, na
}

func (ca *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	if ca.Key == nil {
		return nil, fmt.Errorf("%w key on this node: certificates are issued by the agent holding %s", ErrNoCA, CAKeyFile)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = sn
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// IssueNode signs a node certificate for pub: CN=node:<name>, O=ssi:nodes,
// usable as TLS server and client, valid for the given addresses (IPs or DNS
// names; "localhost" and 127.0.0.1 are always added for local tools).
func (ca *CA) IssueNode(pub crypto.PublicKey, name string, addrs []string, v Validity) (*x509.Certificate, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	nb, na := v.window(NodeLifetime)
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: nodePrefix + name, Organization: []string{OrgNodes}},
		NotBefore:   nb,
		NotAfter:    na,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost", name, NodeSAN},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if a != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, a)
		}
	}
	return ca.sign(tmpl, pub)
}

// IssueUser signs a client certificate for user name (admin: O=ssi:admins).
func (ca *CA) IssueUser(pub crypto.PublicKey, name string, admin bool, v Validity) (*x509.Certificate, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	nb, na := v.window(UserLifetime)
	subj := pkix.Name{CommonName: name}
	if admin {
		subj.Organization = []string{OrgAdmins}
	}
	return ca.sign(&x509.Certificate{
		Subject: subj, NotBefore: nb, NotAfter: na,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, pub)
}

// CheckName checks a user or node name: what a unix account name may be.
func CheckName(name string) error {
	if name == "" || len(name) > 32 || strings.HasPrefix(name, "-") {
		return fmt.Errorf("pki: name %q: want 1-32 letters, digits, '.', '_' or '-', not starting with '-'", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("pki: name %q: want 1-32 letters, digits, '.', '_' or '-', not starting with '-'", name)
		}
	}
	return nil
}

// Identity is who a verified certificate speaks for.
type Identity struct {
	// Name is the user name, or the node name for a node.
	Name  string
	Node  bool
	Admin bool
	// Job is the gpid of the job whose credential it is (IssueJob): its
	// user's rights while that job runs; 0 for a user's own certificate.
	Job uint64
}

func (id Identity) String() string {
	switch {
	case id.Node:
		return "node " + id.Name
	case id.Admin:
		return "admin " + id.Name
	case id.Job != 0:
		return "user " + id.Name + " (job " + strconv.FormatUint(id.Job, 10) + ")"
	}
	return "user " + id.Name
}

// IdentityOf reads the identity of a certificate the TLS stack has verified
// against the cluster CA.
func IdentityOf(c *x509.Certificate) (Identity, error) {
	cn := c.Subject.CommonName
	orgs := c.Subject.Organization
	has := func(o string) bool {
		for _, x := range orgs {
			if x == o {
				return true
			}
		}
		return false
	}
	if has(OrgNodes) {
		name, ok := strings.CutPrefix(cn, nodePrefix)
		if !ok || CheckName(name) != nil {
			return Identity{}, fmt.Errorf("%w: node certificate with CN %q", ErrBadIdentity, cn)
		}
		return Identity{Name: name, Node: true}, nil
	}
	if strings.HasPrefix(cn, nodePrefix) || CheckName(cn) != nil {
		return Identity{}, fmt.Errorf("%w: CN %q", ErrBadIdentity, cn)
	}
	job, err := jobOf(c)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Name: cn, Admin: has(OrgAdmins), Job: job}, nil
}

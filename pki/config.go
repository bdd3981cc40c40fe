package pki

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// maxConfig bounds a client config file.
const maxConfig = 64 << 10

// ClientConfig is the CLI's credentials file (kubeconfig-like, JSON): which
// agent to talk to, the CA to trust and the user's certificate and key, all
// embedded as PEM.
type ClientConfig struct {
	// Server is an agent address, host:port or https://host:port.
	Server string `json:"server"`
	// User is the identity in Cert, for humans (the agent reads the certificate).
	User string `json:"user,omitempty"`
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// ParseClientConfig decodes and checks a client config: unknown fields are
// refused, and the certificate must match the key and be signed by the CA.
func ParseClientConfig(b []byte) (*ClientConfig, error) {
	if len(b) > maxConfig {
		return nil, fmt.Errorf("config of %d bytes: at most %d", len(b), maxConfig)
	}
	var c ClientConfig
	var old struct {
		Endpoint string `json:"endpoint"`
	}
	if json.Unmarshal(b, &old) == nil && old.Endpoint != "" {
		return nil, fmt.Errorf("a config from before mutual TLS ({\"endpoint\": %q}): it holds no credentials; ask an admin for a new one ('ssi user add'), or run 'make up' again for the local cluster", old.Endpoint)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("want {\"server\", \"ca\", \"cert\", \"key\"} as written by 'ssi user add': %w", err)
	}
	if c.Server == "" {
		return nil, errors.New(`no "server"`)
	}
	if _, err := c.TLS(); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadClientConfig reads a client config file. The file holds a private key:
// one readable by others is refused.
func LoadClientConfig(path string) (*ClientConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, err
	}
	c, err := ParseClientConfig(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("config %s has mode %o: it holds a private key, make it private (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	return c, nil
}

// Write writes the config with mode 0600.
func (c *ClientConfig) Write(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'), 0o600)
}

// HostPort returns the server as host:port.
func (c *ClientConfig) HostPort() string {
	s := strings.TrimPrefix(c.Server, "https://")
	return strings.TrimRight(s, "/")
}

// TLS returns the client TLS config the file describes.
func (c *ClientConfig) TLS() (*tls.Config, error) {
	ca, err := ParseCert([]byte(c.CA))
	if err != nil {
		return nil, fmt.Errorf(`"ca": %w`, err)
	}
	pair, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
	if err != nil {
		return nil, fmt.Errorf(`"cert"/"key": %w`, err)
	}
	return ClientTLS(&CA{Cert: ca}, pair), nil
}

// NewUserConfig issues a user certificate (fresh key) and wraps it in a
// client config for server.
func NewUserConfig(ca *CA, server, name string, admin bool, v Validity) (*ClientConfig, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	cert, err := ca.IssueUser(key.Public(), name, admin, v)
	if err != nil {
		return nil, err
	}
	kb, err := EncodeKey(key)
	if err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(strings.TrimPrefix(server, "https://")); err != nil {
		return nil, fmt.Errorf("pki: server %q: want HOST:PORT", server)
	}
	return &ClientConfig{Server: server, User: name, CA: string(ca.CertPEM), Cert: string(EncodeCert(cert)), Key: string(kb)}, nil
}

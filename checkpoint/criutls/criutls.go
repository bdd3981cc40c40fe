// Package criutls holds CRIU's TLS options for page-server connections (a
// post-copy migration's memory), shared by the agent's lazy dump (the server)
// and the shim's lazy-pages daemon (the client), without pulling go-criu into
// the shim. The credentials come from pki.NewPageServerCreds.
package criutls

import (
	"fmt"
	"os"
	"path/filepath"
)

// Files are the PEM files of one end of a CRIU TLS connection.
type Files struct {
	CACert string `json:"ca_cert"`
	Cert   string `json:"cert"`
	Key    string `json:"key"`
}

// Write writes the three PEM blocks into dir (mode 0600) under names that
// start with prefix, and returns their paths.
func Write(dir, prefix string, caCert, cert, key []byte) (Files, error) {
	f := Files{
		CACert: filepath.Join(dir, prefix+"-ca.crt"),
		Cert:   filepath.Join(dir, prefix+".crt"),
		Key:    filepath.Join(dir, prefix+".key"),
	}
	for path, b := range map[string][]byte{f.CACert: caCert, f.Cert: cert, f.Key: key} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return Files{}, fmt.Errorf("criutls: write %s: %w", path, err)
		}
	}
	return f, nil
}

// ServerArgs are CRIU's options for the page server's end: it trusts only
// f.CACert, which signed one client certificate; the client's name is not
// checked (CRIU would check it against the server's own address).
func (f Files) ServerArgs() []string {
	return append(f.args(), "--tls-no-cn-verify")
}

// ClientArgs are CRIU's options for the connecting end: it trusts only
// f.CACert and checks that the server's certificate names the address it
// connects to.
func (f Files) ClientArgs() []string { return f.args() }

func (f Files) args() []string {
	return []string{"--tls", "--tls-cacert", f.CACert, "--tls-cert", f.Cert, "--tls-key", f.Key}
}

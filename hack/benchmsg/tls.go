package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The files of the bare TLS peer's throwaway PKI, in its directory.
const (
	caFile     = "ca.pem"
	nodeCert   = "node.pem"
	nodeKey    = "node-key.pem"
	clientCert = "client.pem"
	clientKey  = "client-key.pem"
)

// writeTLS makes a throwaway CA in dir, a certificate for the bare servers
// (the nodes' addresses; server and client use: routes dial each other) and
// one for the clients, ECDSA P-256 as ssi's pki.
func writeTLS(dir string, ips []string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "benchmsg CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, caFile), "CERTIFICATE", caDER); err != nil {
		return err
	}
	issue := func(serial int64, name string, ips []string, certFile, keyFile string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		c := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		for _, ip := range ips {
			p := net.ParseIP(ip)
			if p == nil {
				return fmt.Errorf("bad IP %q", ip)
			}
			c.IPAddresses = append(c.IPAddresses, p)
		}
		der, err := x509.CreateCertificate(rand.Reader, c, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		return errors.Join(writePEM(filepath.Join(dir, certFile), "CERTIFICATE", der), writePEM(filepath.Join(dir, keyFile), "EC PRIVATE KEY", kb))
	}
	return errors.Join(issue(2, "benchmsg node", ips, nodeCert, nodeKey), issue(3, "benchmsg client", nil, clientCert, clientKey))
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// loadTLS returns the TLS config of the server (verifying clients), of a
// route (both sides) or of a client, TLS 1.3 as ssi's brokers.
func loadTLS(dir string, server bool) (*tls.Config, error) {
	certFile, keyFile := clientCert, clientKey
	if server {
		certFile, keyFile = nodeCert, nodeKey
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("tls: no certificate in %s", filepath.Join(dir, caFile))
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}
	if server {
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

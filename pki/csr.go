package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
)

// maxCSR bounds a PEM certificate request (a P-256 CSR is ~500 bytes).
const maxCSR = 8 << 10

// NewCSR returns a PEM certificate request for key (the subject is ignored by
// the issuer, which sets it from the authenticated request).
func NewCSR(key crypto.Signer, cn string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR parses a PEM certificate request, checks its self-signature and
// returns its public key. Only the key is used: names come from the caller's
// authenticated request, never from the CSR.
func ParseCSR(b []byte) (crypto.PublicKey, error) {
	if len(b) > maxCSR {
		return nil, fmt.Errorf("pki: CSR of %d bytes: at most %d", len(b), maxCSR)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("pki: CSR: no PEM CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: CSR signature: %w", err)
	}
	return csr.PublicKey, nil
}

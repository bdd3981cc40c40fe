package checkpoint_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/checkpoint/criutls"
	"github.com/ssi-cluster/ssi/internal/testenv"
	"github.com/ssi-cluster/ssi/pki"
)

// TestLazyPageServerTLS: the page server of a post-copy dump (real CRIU, its
// GnuTLS) speaks TLS and admits only the client certificate of its own
// migration's CA. A plain TCP client is refused (a TLS alert, or the
// connection closed; silence is not a refusal), and clients with no
// certificate or a certificate of another migration get no page; the right
// client completes the handshake and verifies the server's certificate for
// the address it dialled.
func TestLazyPageServerTLS(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to run CRIU")
	}
	if _, err := checkpoint.Probe(context.Background(), ""); err != nil {
		testenv.Skip(t, "CRIU not usable: %v", err)
	}
	const host = "127.0.0.1"
	creds, err := pki.NewPageServerCreds(host, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewPageServerCreds(host, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// clientTLS trusts this migration's CA for the server, and presents the
	// client certificate of cert (none if nil).
	clientTLS := func(cert *pki.PageServerCreds) *tls.Config {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(creds.CACert)
		cfg := &tls.Config{RootCAs: pool, ServerName: host}
		if cert != nil {
			kp, err := tls.X509KeyPair(cert.ClientCert, cert.ClientKey)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{kp}
		}
		return cfg
	}

	for _, tc := range []struct {
		name string
		// dial connects to the page server and reports whether it was admitted.
		dial  func(addr string) (admitted bool, detail string)
		admit bool
	}{
		{"plain TCP client", func(addr string) (bool, string) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return false, err.Error()
			}
			defer c.Close()
			// What CRIU's client would send first: a request header.
			if _, err := c.Write(make([]byte, 64)); err != nil {
				return false, "write refused: " + err.Error()
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(c)
			detail := fmt.Sprintf("read %d bytes, %s", len(b), errString(err))
			var ne net.Error
			switch {
			case len(b) > 0 && b[0] == 21:
				return false, "TLS alert: " + detail // refused, and said so
			case len(b) > 0:
				return true, "answered in plain: " + detail
			case errors.As(err, &ne) && ne.Timeout():
				// Silence with the connection open is no refusal: a server
				// that waits for more plain bytes has not refused them.
				return true, "no answer and no close within 5 s: " + detail
			}
			return false, "closed without a byte: " + detail // EOF or reset
		}, false},
		{"certificate of another migration's CA", func(addr string) (bool, string) {
			return tlsAdmitted(addr, clientTLS(other))
		}, false},
		{"no client certificate", func(addr string) (bool, string) {
			return tlsAdmitted(addr, clientTLS(nil))
		}, false},
		{"this migration's client certificate", func(addr string) (bool, string) {
			return tlsAdmitted(addr, clientTLS(creds))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files, err := criutls.Write(dir, "page-server", creds.CACert, creds.ServerCert, creds.ServerKey)
			if err != nil {
				t.Fatal(err)
			}
			images := filepath.Join(dir, "images")
			if err := os.Mkdir(images, 0o700); err != nil {
				t.Fatal(err)
			}
			// A session leader with no terminal, as CRIU wants a tree.
			job := exec.Command("sleep", "600")
			job.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := job.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = job.Process.Kill(); _ = job.Wait() }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			d, err := checkpoint.StartLazyDump(ctx, checkpoint.LazyDumpOpts{PID: job.Process.Pid, ImagesDir: images, Address: host, TLS: &files})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Kill()
			admitted, detail := tc.dial(d.Addr)
			if admitted != tc.admit {
				t.Fatalf("admitted %v (%s), want %v", admitted, detail, tc.admit)
			}
			if tc.admit {
				return
			}
			// Refused: the page server gives up (the migration would roll
			// back) and says why in its log.
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			defer wcancel()
			err = d.Wait(wctx)
			if err == nil {
				t.Fatal("page server ended well after a refused client")
			}
			t.Logf("refused (%s); page server: %v", detail, err)
		})
	}
}

// tlsAdmitted makes a TLS connection and reports whether the server accepted
// it: the handshake completed and the server did not answer with an alert.
func tlsAdmitted(addr string, cfg *tls.Config) (bool, string) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return false, "handshake: " + err.Error()
	}
	defer c.Close()
	// In TLS 1.3 the server judges the client's certificate after the
	// client's handshake ended: a refusal arrives as an alert on the first
	// read. An admitted client sees no data (CRIU's client speaks first), so
	// the read times out.
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	var b [1]byte
	_, err = c.Read(b[:])
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true, "handshake done, server waits for a request"
	}
	return false, "first read: " + errString(err)
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

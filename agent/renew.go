package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pki"
)

// minNodeCertLifetime bounds --node-cert-lifetime and the lifetime a renewal
// may ask for (tests use 20 s).
const minNodeCertLifetime = 10 * time.Second

// Node certificates renew themselves (docs/SECURITY.md, Lifetimes): once less
// than a third of --node-cert-lifetime remains, the agent has a new
// certificate signed for its key, by itself when it holds the CA key, else
// by the CA node (POST /v1/renew, authenticated by its current certificate),
// writes it to DATA-DIR/pki/node.crt and presents it from the next handshake
// on (pki.Node.SetCert: GetCertificate and GetClientCertificate), without a
// restart. The embedded etcd reads the files at each handshake too.

// renewLoop renews the node certificate when it is due, until ctx ends.
func (a *Agent) renewLoop(ctx context.Context) {
	for ctx.Err() == nil {
		cur := a.node.Current()
		wait := time.Until(pki.RenewAt(time.Now(), cur.NotAfter, a.cfg.NodeCertLifetime))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		leaf, err := a.renewCert(ctx)
		if err != nil {
			left := time.Until(cur.NotAfter)
			retry := min(max(left/10, time.Second), time.Minute)
			a.log.Warn("renew the node certificate", "err", err, "expires", cur.NotAfter, "retry_in", retry)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			continue
		}
		a.log.Info("node certificate renewed", "serial", pki.Serial(leaf), "expires", leaf.NotAfter)
	}
}

// renewCert gets and installs a new certificate for the node's key.
func (a *Agent) renewCert(ctx context.Context) (*x509.Certificate, error) {
	pair := a.node.CurrentPair()
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("node key of type %T cannot sign", pair.PrivateKey)
	}
	var certPEM []byte
	if a.node.CA.Key != nil {
		c, err := a.node.CA.IssueNode(key.Public(), a.cfg.Name, nodeAddrs(pair.Leaf), pki.Validity{NotAfter: time.Now().Add(a.cfg.NodeCertLifetime)})
		if err != nil {
			return nil, err
		}
		certPEM = pki.EncodeCert(c)
	} else {
		csr, err := pki.NewCSR(key, "node:"+a.cfg.Name)
		if err != nil {
			return nil, err
		}
		if certPEM, err = a.askRenewal(ctx, api.RenewRequest{CSR: string(csr), Lifetime: a.cfg.NodeCertLifetime}); err != nil {
			return nil, err
		}
	}
	return a.node.Renewed(certPEM)
}

// askRenewal sends the renewal request to the node holding the CA key.
func (a *Agent) askRenewal(ctx context.Context, req api.RenewRequest) ([]byte, error) {
	caNode, err := a.store.CANode(ctx)
	if err != nil {
		return nil, fmt.Errorf("find the node holding the cluster CA: %w", err)
	}
	snap, err := a.store.NodesSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	n, ok := snap.Node(caNode)
	if !ok {
		return nil, fmt.Errorf("the CA node %s is not registered", caNode)
	}
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+n.Addr+"/v1/renew", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: a.peer}).Do(hr)
	if err != nil {
		return nil, fmt.Errorf("renewal request to %s: %w", caNode, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		return nil, fmt.Errorf("renewal refused by %s: %s", caNode, e.Message)
	}
	var cr api.CertResponse
	if err := json.Unmarshal(b, &cr); err != nil {
		return nil, fmt.Errorf("renewal answer of %s: %w", caNode, err)
	}
	return []byte(cr.Cert), nil
}

// nodeAddrs returns the addresses a node certificate was issued for, minus
// those IssueNode always adds.
func nodeAddrs(c *x509.Certificate) []string {
	name, _ := pki.IdentityOf(c)
	var out []string
	for _, ip := range c.IPAddresses {
		if !ip.Equal(net.IPv4(127, 0, 0, 1)) {
			out = append(out, ip.String())
		}
	}
	for _, d := range c.DNSNames {
		if d != "localhost" && d != pki.NodeSAN && d != name.Name {
			out = append(out, d)
		}
	}
	return out
}

// handleRenew is POST /v1/renew: a node, authenticated by its current (valid,
// unrevoked) certificate, gets a new one for the same name and addresses.
func (a *Agent) handleRenew(w http.ResponseWriter, r *http.Request) {
	who := callerOf(r) // a node: the route's role (routes.go)
	if a.forwardToCA(w, r) {
		return
	}
	var req api.RenewRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if req.Lifetime == 0 {
		req.Lifetime = pki.NodeLifetime
	}
	if req.Lifetime < minNodeCertLifetime || req.Lifetime > pki.NodeLifetime {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "lifetime %s: want %s to %s", req.Lifetime, minNodeCertLifetime, pki.NodeLifetime))
		return
	}
	pub, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "%v", err))
		return
	}
	// The addresses are those of the certificate being renewed, never new ones.
	cert, err := a.node.CA.IssueNode(pub, who.node, nodeAddrs(r.TLS.VerifiedChains[0][0]), pki.Validity{NotAfter: time.Now().Add(req.Lifetime)})
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "%v", err))
		return
	}
	a.log.Info("node certificate renewed for a node", "peer", who.node, "serial", pki.Serial(cert), "expires", cert.NotAfter)
	writeJSON(w, http.StatusOK, api.CertResponse{Cert: string(pki.EncodeCert(cert)), CA: string(a.node.CA.CertPEM)})
}

// renewAtStart renews, before anything connects, the certificate of a node
// holding the CA key when it is due (its embedded etcd would present an
// expired one); other nodes renew in renewLoop, or must join again if theirs
// has expired.
func (a *Agent) renewAtStart(ctx context.Context) error {
	cur := a.node.Current()
	if a.node.CA.Key == nil {
		if time.Now().After(cur.NotAfter) {
			return fmt.Errorf("%w: the node certificate in %s expired at %s: join again (remove %s/node.* and restart with --join ADDR --token TOKEN)", ErrJoin, a.pkiDir(), cur.NotAfter.UTC().Format(time.RFC3339), a.pkiDir())
		}
		return nil
	}
	if time.Now().Before(pki.RenewAt(time.Now(), cur.NotAfter, a.cfg.NodeCertLifetime)) {
		return nil
	}
	leaf, err := a.renewCert(ctx)
	if err != nil {
		return fmt.Errorf("agent: renew the node certificate: %w", err)
	}
	a.log.Info("node certificate renewed", "serial", pki.Serial(leaf), "expires", leaf.NotAfter)
	return nil
}

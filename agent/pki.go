package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// Join token lifetimes: default and bounds.
const (
	defaultTokenTTL = 24 * time.Hour
	maxTokenTTL     = 30 * 24 * time.Hour
	// etcdFile keeps, in the pki dir, the etcd endpoints a joined node was given.
	etcdFile = "etcd.json"
)

// ErrJoin is returned by Run when the node cannot join the cluster.
var ErrJoin = errors.New("agent: cannot join the cluster")

func (a *Agent) pkiDir() string { return filepath.Join(a.cfg.DataDir, "pki") }

// scheme is the agent API's URL scheme.
func (a *Agent) scheme() string {
	if a.node == nil {
		return "http"
	}
	return "https"
}

// setupPKI loads this node's credentials, or makes them: a new cluster CA on
// the first node (no --join, embedded etcd), a certificate from the cluster
// with --join and --token. Returns the etcd endpoints to use.
func (a *Agent) setupPKI(ctx context.Context) error {
	if a.cfg.Insecure {
		a.log.Warn("INSECURE: --insecure given: the API and etcd are plain text and unauthenticated, and any client may claim to be any user, root included; for debugging on a private machine only")
		return nil
	}
	dir := a.pkiDir()
	switch {
	case pki.HasNodeCert(dir):
		if a.cfg.Join != "" {
			a.log.Info("node already has a certificate; --join and --token ignored", "dir", dir)
		}
	case a.cfg.Join != "":
		if err := a.joinCluster(ctx); err != nil {
			return err
		}
	case len(a.cfg.EtcdEndpoints) == 0 || a.cfg.InitCA:
		host, _, _ := net.SplitHostPort(a.cfg.Advertise)
		if _, err := pki.Bootstrap(dir, a.cfg.Name, []string{host}, a.cfg.Advertise, a.cfg.AdminUser); err != nil {
			return fmt.Errorf("agent: create the cluster CA: %w", err)
		}
		a.log.Info("created the cluster CA and an admin config", "ca", filepath.Join(dir, pki.CACertFile), "admin_config", filepath.Join(dir, pki.AdminFile), "admin", a.cfg.AdminUser)
	default:
		return fmt.Errorf("%w: no node certificate in %s: join with --join ADDR --token TOKEN (an admin prints a token with 'ssi token create'); the first agent of a cluster on an external etcd creates the CA with --init-ca", ErrJoin, dir)
	}
	n, err := pki.LoadNode(dir)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if id, err := pki.IdentityOf(n.Cert.Leaf); err != nil || !id.Node || id.Name != a.cfg.Name {
		return fmt.Errorf("agent: the certificate in %s is for %v, not node %s (err %v): use the data dir of that node", dir, id, a.cfg.Name, err)
	}
	a.node = n
	if err := a.renewAtStart(ctx); err != nil {
		return err
	}
	if len(a.cfg.EtcdEndpoints) == 0 {
		var eps []string
		if b, err := os.ReadFile(filepath.Join(dir, etcdFile)); err == nil && json.Unmarshal(b, &eps) == nil {
			a.cfg.EtcdEndpoints = eps
		}
	}
	a.peer.TLSClientConfig = n.ClientTLS()
	return nil
}

// joinCluster gets a node certificate from the agent at --join, trusting it
// only if it presents the CA the token names.
func (a *Agent) joinCluster(ctx context.Context) error {
	tok, err := pki.ParseToken(a.cfg.Token)
	if err != nil {
		return fmt.Errorf("%w: --token: %w", ErrJoin, err)
	}
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(key, "node:"+a.cfg.Name)
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(a.cfg.Advertise)
	body, _ := json.Marshal(api.JoinRequest{Token: a.cfg.Token, Name: a.cfg.Name, Addrs: []string{host}, CSR: string(csr)})
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: pinnedTLS(tok.CAHash)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+a.cfg.Join+"/v1/join", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: --join %q: %w", ErrJoin, a.cfg.Join, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w via %s: %w", ErrJoin, a.cfg.Join, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		return fmt.Errorf("%w via %s: %s", ErrJoin, a.cfg.Join, e.Message)
	}
	var cr api.CertResponse
	if err := json.Unmarshal(b, &cr); err != nil {
		return fmt.Errorf("%w: answer of %s: %w", ErrJoin, a.cfg.Join, err)
	}
	caCert, err := pki.ParseCert([]byte(cr.CA))
	if err != nil || pki.CertHash(caCert) != tok.CAHash {
		return fmt.Errorf("%w: %s sent a CA that is not the one the token names", ErrJoin, a.cfg.Join)
	}
	ca := &pki.CA{Cert: caCert, CertPEM: []byte(cr.CA)}
	cert, err := pki.ParseCert([]byte(cr.Cert))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrJoin, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("%w: the certificate from %s does not verify: %w", ErrJoin, a.cfg.Join, err)
	}
	kb, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := pki.SaveNode(a.pkiDir(), ca, []byte(cr.Cert), kb); err != nil {
		return err
	}
	if len(cr.EtcdEndpoints) > 0 {
		eb, _ := json.Marshal(cr.EtcdEndpoints)
		if err := os.WriteFile(filepath.Join(a.pkiDir(), etcdFile), eb, 0o600); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	a.log.Info("joined the cluster: node certificate stored", "via", a.cfg.Join, "dir", a.pkiDir(), "expires", cert.NotAfter)
	return nil
}

// pinnedTLS trusts a server only if its chain carries the CA whose hash is
// caHash and its certificate verifies against that CA (kubeadm's
// discovery-token-ca-cert-hash).
func pinnedTLS(caHash string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by VerifyConnection: pin, then verify
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			pool := x509.NewCertPool()
			found := false
			for _, c := range cs.PeerCertificates {
				if pki.CertHash(c) == caHash {
					pool.AddCert(c)
					found = true
				}
			}
			if !found {
				return errors.New("the server does not present the cluster CA named by the token (CA hash mismatch): wrong address, wrong token, or someone in between")
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	}
}

// forwardToCA sends r to the node holding the CA key when this one does not;
// it returns false when this node must answer itself.
func (a *Agent) forwardToCA(w http.ResponseWriter, r *http.Request) bool {
	if a.node == nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "node %s runs with --insecure: it has no CA, tokens or certificates", a.cfg.Name))
		return true
	}
	if a.node.CA.Key != nil {
		return false
	}
	if forwarded(r) {
		a.writeError(w, r, api.Errorf(api.CodeConflict, "node %s does not hold the cluster CA key", a.cfg.Name))
		return true
	}
	node, err := a.store.CANode(r.Context())
	if err != nil {
		a.writeError(w, r, fmt.Errorf("find the node holding the cluster CA: %w", err))
		return true
	}
	a.forward(w, r, node)
	return true
}

func (a *Agent) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	if a.node == nil {
		a.forwardToCA(w, r)
		return
	}
	var req api.TokenRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if req.TTL == 0 {
		req.TTL = defaultTokenTTL
	}
	if req.TTL < 10*time.Second || req.TTL > maxTokenTTL {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--ttl %s: want 10s to %s", req.TTL, maxTokenTTL))
		return
	}
	tok, err := pki.NewToken(a.node.CA.Hash())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	exp := time.Now().Add(req.TTL).UTC()
	if err := a.store.PutToken(r.Context(), tok.ID, pidtable.JoinToken{SecretHash: tok.SecretHash(), Expires: exp, Creator: callerOf(r).user}); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.log.Info("join token created", "token_id", tok.ID, "by", callerOf(r).user, "expires", exp)
	a.events.add(r.Context(), pidtable.Event{Kind: pidtable.EventAdmin, Caller: "admin " + callerOf(r).user, User: callerOf(r).user, Reason: fmt.Sprintf("token create %s, expires %s", tok.ID, exp.Format(time.RFC3339))})
	writeJSON(w, http.StatusOK, api.TokenResponse{Token: tok.String(), Expires: exp})
}

func (a *Agent) handleAddUser(w http.ResponseWriter, r *http.Request) {
	if a.forwardToCA(w, r) {
		return
	}
	var req api.UserRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := pki.CheckName(req.Name); err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "%v", err))
		return
	}
	if req.Name == "root" && !req.Admin {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "user root runs jobs as uid 0: it can only be an admin (--admin)"))
		return
	}
	if req.TTL < 0 || req.TTL > pki.CALifetime {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--ttl %s: want at most %s", req.TTL, pki.CALifetime))
		return
	}
	pub, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "%v", err))
		return
	}
	reg, err := a.checkUserAdd(r.Context(), req) // revoke.go: one certificate per name
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var v pki.Validity
	if req.TTL > 0 {
		v.NotAfter = time.Now().Add(req.TTL)
	}
	cert, err := a.node.CA.IssueUser(pub, req.Name, req.Admin, v)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := reg.commit(r.Context(), a, cert, req.Admin, callerOf(r).user); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.log.Info("user certificate issued", "user", req.Name, "admin", req.Admin, "by", callerOf(r).user, "expires", cert.NotAfter)
	writeJSON(w, http.StatusOK, api.CertResponse{Cert: string(pki.EncodeCert(cert)), CA: string(a.node.CA.CertPEM)})
}

// handleJoin is POST /v1/join: a new node, authenticated by a join token,
// gets a node certificate for its key.
func (a *Agent) handleJoin(w http.ResponseWriter, r *http.Request) {
	if a.forwardToCA(w, r) {
		return
	}
	var req api.JoinRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	refuse := func(format string, args ...any) {
		a.log.Warn("join refused", "name", req.Name, "remote", r.RemoteAddr, "why", fmt.Sprintf(format, args...))
		a.writeError(w, r, api.Errorf(api.CodeForbidden, format, args...))
	}
	tok, err := pki.ParseToken(req.Token)
	if err != nil {
		refuse("%v", err)
		return
	}
	if tok.CAHash != a.node.CA.Hash() {
		refuse("the token is for another cluster (CA hash mismatch)")
		return
	}
	st, err := a.store.Token(r.Context(), tok.ID)
	if errors.Is(err, pidtable.ErrNotFound) {
		refuse("unknown or expired join token %s: make a new one with 'ssi token create'", tok.ID)
		return
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if !tok.Matches(st.SecretHash) || time.Now().After(st.Expires) {
		refuse("unknown or expired join token %s: make a new one with 'ssi token create'", tok.ID)
		return
	}
	if !nodeNameRE.MatchString(req.Name) {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "node name %q: want 1-32 lower-case letters, digits and dashes", req.Name))
		return
	}
	if len(req.Addrs) > 16 {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "%d addresses: at most 16", len(req.Addrs)))
		return
	}
	snap, err := a.store.NodesSnapshot(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if _, taken := snap.Node(req.Name); taken {
		refuse("node name %s is already registered in this cluster: pick another --name", req.Name)
		return
	}
	pub, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "%v", err))
		return
	}
	cert, err := a.node.CA.IssueNode(pub, req.Name, req.Addrs, pki.Validity{})
	if err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "%v", err))
		return
	}
	eps := a.cfg.EtcdEndpoints
	if a.embedded != nil {
		eps = []string{a.cfg.EtcdClientURL}
	}
	a.log.Info("node joined: certificate issued", "joiner", req.Name, "token_id", tok.ID, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, api.CertResponse{Cert: string(pki.EncodeCert(cert)), CA: string(a.node.CA.CertPEM), EtcdEndpoints: eps})
}

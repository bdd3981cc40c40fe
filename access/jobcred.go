package access

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// Jobs' credentials (their workload identity): a job's agent has the node
// holding the CA key sign a short-lived certificate of the job's user that
// names the job (pki.IssueJob), for a key made on the job's node that never
// leaves it; Admit takes such a certificate as that user (an admin for a job
// of root) and only while the job's record says it runs (jobAlive). The agent
// writes it for the job (agent/jobcreds.go) and renews it.

// JobCred returns a job's credential for p, a job running on this node: its
// certificate and key, and the CA's certificate, as PEM.
func (c *Control) JobCred(ctx context.Context, p pidtable.Proc) (certPEM, keyPEM, caPEM []byte, err error) {
	if c.node == nil {
		return nil, nil, nil, errors.New("no job credentials with --insecure")
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, nil, err
	}
	csr, err := pki.NewCSR(key, p.User)
	if err != nil {
		return nil, nil, nil, err
	}
	req := api.JobCredRequest{GPID: p.GPID, CSR: string(csr)}
	var resp api.CertResponse
	if c.HoldsCAKey() {
		resp, err = c.IssueJobCred(ctx, c.cfg.Name, req)
	} else {
		err = c.askCA(ctx, "/v1/jobcreds", req, &resp)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	keyPEM, err = pki.EncodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return []byte(resp.Cert), keyPEM, []byte(resp.CA), nil
}

// IssueJobCred is POST /v1/jobcreds, on the node holding the CA key: node
// asks for the credential of a job it runs. The certificate is the job's
// user's (from the record, never from the request), names the job and
// lives pki.JobLifetime.
func (c *Control) IssueJobCred(ctx context.Context, node string, req api.JobCredRequest) (api.CertResponse, error) {
	if !c.HoldsCAKey() {
		return api.CertResponse{}, api.Errorf(api.CodeNotReady, "node %s does not hold the cluster CA's key; ask the CA node", c.cfg.Name)
	}
	p, _, err := c.cfg.Store.Get(ctx, req.GPID)
	if err != nil {
		return api.CertResponse{}, err
	}
	if p.Node != node || p.State.Ended() {
		return api.CertResponse{}, api.Errorf(api.CodeForbidden, "gpid %d is %s on %s: node %s may not have its credential", req.GPID, p.State, p.Node, node)
	}
	pub, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return api.CertResponse{}, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	// A job of root acts as an admin: only admins start one, and it is root
	// on its node (it could read the node's own key) anyway.
	cert, err := c.node.CA.IssueJob(pub, p.User, p.User == "root", p.GPID, pki.Validity{})
	if err != nil {
		return api.CertResponse{}, err
	}
	return api.CertResponse{Cert: string(pki.EncodeCert(cert)), CA: string(c.node.CA.CertPEM)}, nil
}

// askCA posts req to path on the node holding the CA key and decodes its
// answer into out.
func (c *Control) askCA(ctx context.Context, path string, req, out any) error {
	st := c.cfg.Store
	caNode, err := st.CANode(ctx)
	if err != nil {
		return fmt.Errorf("find the node holding the cluster CA: %w", err)
	}
	snap, err := st.NodesSnapshot(ctx)
	if err != nil {
		return err
	}
	n, ok := snap.Node(caNode)
	if !ok {
		return fmt.Errorf("the CA node %s is not registered", caNode)
	}
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+n.Addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: c.cfg.Peer}).Do(hr)
	if err != nil {
		return fmt.Errorf("%s of the CA node %s: %w", path, caNode, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		return fmt.Errorf("%s refused by the CA node %s: %s", path, caNode, e.Message)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: answer of the CA node %s: %w", path, caNode, err)
	}
	return nil
}

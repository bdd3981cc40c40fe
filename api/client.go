package api

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
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one agent.
type Client struct {
	base string
	hc   *http.Client
	tls  *tls.Config // nil: plain HTTP, identity in headers (--insecure)
	user string
	uid  int
}

// NewClient returns an insecure client (plain HTTP, for agents started with
// --insecure) for the agent at endpoint (http://host:port or host:port) that
// asserts user/uid in headers.
func NewClient(endpoint, user string, uid int) (*Client, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || u.Scheme != "http" {
		return nil, fmt.Errorf("invalid endpoint %q: want http://HOST:PORT (plain HTTP is for --insecure only)", endpoint)
	}
	return &Client{base: strings.TrimRight(u.String(), "/"), hc: &http.Client{Transport: transport(nil)}, user: user, uid: uid}, nil
}

// NewTLSClient returns a client for the agent at endpoint (https://host:port or
// host:port) over mutual TLS: conf carries the client certificate, which is
// the caller's identity, and the CA the agent's certificate must chain to.
func NewTLSClient(endpoint string, conf *tls.Config) (*Client, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || u.Scheme != "https" {
		return nil, fmt.Errorf("invalid endpoint %q: want HOST:PORT or https://HOST:PORT", endpoint)
	}
	return &Client{base: strings.TrimRight(u.String(), "/"), hc: &http.Client{Transport: transport(conf)}, tls: conf}, nil
}

func transport(conf *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // the cluster network is never behind an HTTP proxy
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		TLSClientConfig:     conf,
		ForceAttemptHTTP2:   false,
	}
}

// For returns a client for the agent at addr (host:port) with the same
// credentials.
func (c *Client) For(addr string) (*Client, error) {
	if c.tls != nil {
		return NewTLSClient(addr, c.tls)
	}
	return NewClient(addr, c.user, c.uid)
}

// User is the user the client acts as: the certificate's, or the one an
// insecure client asserts.
func (c *Client) User() string {
	if c.tls != nil && len(c.tls.Certificates) > 0 && c.tls.Certificates[0].Leaf != nil {
		return c.tls.Certificates[0].Leaf.Subject.CommonName
	}
	return c.user
}

// Endpoint returns the agent's base URL.
func (c *Client) Endpoint() string { return c.base }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	_, err := c.doHeader(ctx, method, path, in, out)
	return err
}

// doHeader is do that also returns the answer's header.
func (c *Client) doHeader(ctx context.Context, method, path string, in, out any) (http.Header, error) {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Header, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return nil, fmt.Errorf("decode response of %s %s: %w", method, path, err)
	}
	return resp.Header, nil
}

// send performs a request and returns the response of a 2xx status; other
// statuses become *Error.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	if in == nil {
		return c.sendBody(ctx, method, path, "", nil)
	}
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return c.sendBody(ctx, method, path, "application/json", b)
}

// sendBody is send with a body of the given content type (none when nil). The
// body is in memory, so a redirect to the node that serves the request
// (307) is followed with the same body.
func (c *Client) sendBody(ctx context.Context, method, path, contentType string, b []byte) (*http.Response, error) {
	var body io.Reader
	if b != nil {
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.tls == nil {
		req.Header.Set(HeaderUser, c.user)
		req.Header.Set(HeaderUID, strconv.Itoa(c.uid))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if refused(err) {
			return nil, fmt.Errorf("%w at %s: %w", ErrRefused, c.base, err)
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.base, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var e Error
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(msg, &e) != nil || e.Message == "" {
		return nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(msg))}
	}
	return nil, &e
}

// Run starts a job.
func (c *Client) Run(ctx context.Context, r RunRequest) (RunResponse, error) {
	var out RunResponse
	return out, c.do(ctx, http.MethodPost, "/v1/procs", r, &out)
}

// Proc returns one job.
func (c *Client) Proc(ctx context.Context, gpid uint64) (ProcInfo, error) {
	var out ProcInfo
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/procs/%d", gpid), nil, &out)
}

// signalRetry bounds how long Signal retries a job that is being moved or
// checkpointed (CodeBusy); a move takes seconds.
const signalRetry = 2 * time.Minute

// Signal sends sig to a job. A job being migrated or checkpointed holds
// signals off (CodeBusy) until it runs again, where it then runs: Signal
// retries until the signal is delivered or refused for another reason.
func (c *Client) Signal(ctx context.Context, gpid uint64, sig string) error {
	deadline := time.Now().Add(signalRetry)
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		err := c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/procs/%d/signal", gpid), SignalRequest{Signal: sig}, nil)
		if !IsCode(err, CodeBusy) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (while waiting to retry: %w)", err, ctx.Err())
		case <-time.After(backoff):
		}
	}
}

// Wait blocks until a job ends.
func (c *Client) Wait(ctx context.Context, gpid uint64) (ExitStatus, error) {
	var out ExitStatus
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/procs/%d/wait", gpid), nil, &out)
}

// Logs opens a job's output as a joblog stream starting at byte offset; with
// follow it stays open until the job ends and then carries an Exit record.
func (c *Client) Logs(ctx context.Context, gpid uint64, follow bool, offset int64) (io.ReadCloser, error) {
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.send(ctx, http.MethodGet, fmt.Sprintf("/v1/procs/%d/logs?%s", gpid, q.Encode()), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Nodes lists the nodes.
func (c *Client) Nodes(ctx context.Context) ([]NodeInfo, error) {
	var out []NodeInfo
	return out, c.do(ctx, http.MethodGet, "/v1/nodes", nil, &out)
}

// refused reports whether err is a TLS refusal: the agent refused our
// certificate (a TLS alert), or we refused the agent's.
func refused(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var hn x509.HostnameError
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	return errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &hn) || errors.As(err, &cv) || errors.As(err, &rh)
}

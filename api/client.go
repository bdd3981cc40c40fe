package api

import (
	"bytes"
	"context"
	"encoding/json"
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
	user string
	uid  int
}

// NewClient returns a client for the agent at endpoint (http://host:port or
// host:port) acting for user/uid.
func NewClient(endpoint, user string, uid int) (*Client, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("invalid endpoint %q: want http://HOST:PORT", endpoint)
	}
	tr := &http.Transport{
		Proxy:               nil, // the cluster network is never behind an HTTP proxy
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
	}
	return &Client{base: strings.TrimRight(u.String(), "/"), hc: &http.Client{Transport: tr}, user: user, uid: uid}, nil
}

// For returns a client for the agent at addr (host:port), acting as the same user.
func (c *Client) For(addr string) (*Client, error) { return NewClient(addr, c.user, c.uid) }

// Endpoint returns the agent's base URL.
func (c *Client) Endpoint() string { return c.base }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode response of %s %s: %w", method, path, err)
	}
	return nil
}

// send performs a request and returns the response of a 2xx status; other
// statuses become *Error.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(HeaderUser, c.user)
	req.Header.Set(HeaderUID, strconv.Itoa(c.uid))
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.base, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var e Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		return nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))}
	}
	return nil, &e
}

// Run starts a job.
func (c *Client) Run(ctx context.Context, r RunRequest) (RunResponse, error) {
	var out RunResponse
	return out, c.do(ctx, http.MethodPost, "/v1/procs", r, &out)
}

// PS lists jobs: all users' when user is "", ended ones too when exited.
func (c *Client) PS(ctx context.Context, user string, exited bool) ([]ProcInfo, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	if exited {
		q.Set("exited", "1")
	}
	var out []ProcInfo
	return out, c.do(ctx, http.MethodGet, "/v1/procs?"+q.Encode(), nil, &out)
}

// Proc returns one job.
func (c *Client) Proc(ctx context.Context, gpid uint64) (ProcInfo, error) {
	var out ProcInfo
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/procs/%d", gpid), nil, &out)
}

// Signal sends sig to a job.
func (c *Client) Signal(ctx context.Context, gpid uint64, sig string) error {
	return c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/procs/%d/signal", gpid), SignalRequest{Signal: sig}, nil)
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

package msg

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Client is a connection to the cluster's brokers as a user: their
// certificate, their inbox (InboxPrefix), and the server's refusals
// (permission violations) kept to be reported.
type Client struct {
	*nats.Conn
	User string

	mu  sync.Mutex
	err error
}

// Dial connects to the brokers at urls (a comma list, as SSI_NATS_URL) with
// tlsCfg (nil: none, --insecure clusters) as user. The URLs are tried in
// their order, not shuffled (nats.go's default): a job's SSI_NATS_URL lists
// its own node's broker first, the others to reconnect to.
func Dial(ctx context.Context, urls, user string, tlsCfg *tls.Config, name string) (*Client, error) {
	c := &Client{User: user}
	opts := []nats.Option{
		nats.Name(name), nats.CustomInboxPrefix(InboxPrefix(user)), nats.DontRandomize(),
		nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.setErr(err) }),
	}
	if tlsCfg != nil {
		opts = append(opts, nats.Secure(tlsCfg))
	}
	if d, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(d)))
	}
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		if strings.Contains(err.Error(), "Authorization Violation") {
			return nil, fmt.Errorf("msg: the broker at %s refused the certificate of %s: %w", urls, user, err)
		}
		return nil, fmt.Errorf("msg: connect to the broker at %s: %w (is the agent running with its broker? --nats-listen)", urls, err)
	}
	c.Conn = nc
	return c, nil
}

func (c *Client) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// Err returns the first refusal the server sent (a permission violation),
// explained: whose subjects are whose.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return nil
	}
	if errors.Is(c.err, nats.ErrPermissionViolation) || strings.Contains(c.err.Error(), "Permissions Violation") {
		return fmt.Errorf("refused: %w; user %s may use only their own subjects (%s>, written without the prefix) unless an admin granted others", c.err, c.User, Namespace(c.User))
	}
	return c.err
}

// Check flushes the connection and returns a refusal of what was sent.
func (c *Client) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.FlushWithContext(ctx); err != nil {
		return err
	}
	// The server's -ERR comes after the PONG of the flush at worst by a
	// moment: a second round trip lets it arrive.
	_ = c.FlushWithContext(ctx)
	time.Sleep(20 * time.Millisecond)
	return c.Err()
}

// Call sends an API request to the agents (Service) and decodes the reply.
func (c *Client) Call(ctx context.Context, op string, req any) (Reply, error) {
	return c.call(ctx, APIPrefix(c.User)+op, op, req)
}

// AdminCall sends an admin's request (grant, revoke) to the agents.
func (c *Client) AdminCall(ctx context.Context, op string, req any) (Reply, error) {
	return c.call(ctx, AdminPrefix+op, op, req)
}

func (c *Client) call(ctx context.Context, subject, op string, req any) (Reply, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Reply{}, err
	}
	m, err := c.RequestWithContext(ctx, subject, b)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return Reply{}, fmt.Errorf("msg: no agent answers topic requests (%w)", err)
		}
		if e := c.Err(); e != nil {
			return Reply{}, e
		}
		return Reply{}, fmt.Errorf("msg: %s: %w", op, err)
	}
	var rep Reply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return Reply{}, fmt.Errorf("msg: bad reply to %s: %w", op, err)
	}
	if rep.Error != "" {
		return rep, &RequestError{Msg: rep.Error, Final: rep.Final}
	}
	return rep, nil
}

// RequestError is an agent's refusal of a request (not a failure to reach
// one).
type RequestError struct {
	Msg   string
	Final bool
}

func (e *RequestError) Error() string { return e.Msg }

// CallRetry is Call retried for up to a minute while no agent answers in
// time (JetStream electing a leader after a node died), not when refused.
func (c *Client) CallRetry(ctx context.Context, op string, req any) (Reply, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rep, err := c.Call(rctx, op, req)
		cancel()
		var re *RequestError
		if err == nil || errors.As(err, &re) && re.Final || ctx.Err() != nil || time.Now().After(deadline) {
			return rep, err
		}
		if c.Err() != nil {
			return rep, c.Err()
		}
		time.Sleep(500 * time.Millisecond)
	}
}

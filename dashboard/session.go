package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/access"
)

// Lifetimes of a login link and of the session it opens.
const (
	LoginTTL   = 60 * time.Second
	SessionTTL = 12 * time.Hour
)

const (
	loginsPrefix   = "/ssi/dashboard/logins/"
	sessionsPrefix = "/ssi/dashboard/sessions/"
	// recheck is how long an agent trusts a session it read from etcd
	// before it reads it again (a logout elsewhere holds within it).
	recheck = 10 * time.Second
	// maxCached bounds the sessions an agent keeps in memory.
	maxCached = 4096
)

// ErrNoSession is returned for a missing, unknown, used or expired token.
var ErrNoSession = errors.New("dashboard: no valid session")

// grant is what a login token or a session stands for: a user, with the
// role and the certificate of the request that made the login link.
type grant struct {
	User  string `json:"user"`
	Admin bool   `json:"admin"`
	// Serial is the certificate the CLI presented (none with --insecure):
	// the session dies with its revocation.
	Serial  string    `json:"serial,omitempty"`
	Expires time.Time `json:"expires"`
}

func (g grant) caller() access.Caller { return access.Caller{User: g.User, Admin: g.Admin} }

// sessions are the logins and sessions in etcd, with a short-lived cache.
type sessions struct {
	etcd *clientv3.Client
	now  func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	g    grant
	read time.Time
}

// newToken returns a random token of 256 bits, URL-safe.
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("dashboard: random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// hashed is the key of a token: etcd holds only its SHA-256, so reading
// etcd does not give a usable login or session.
func hashed(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// put stores g under key on a lease of ttl.
func (s *sessions) put(ctx context.Context, what, key string, g grant, ttl time.Duration) error {
	lease, err := s.etcd.Grant(ctx, int64(ttl/time.Second)+1)
	if err != nil {
		return fmt.Errorf("dashboard: lease for a %s: %w", what, err)
	}
	b, _ := json.Marshal(g)
	if _, err := s.etcd.Put(ctx, key, string(b), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("dashboard: store a %s: %w", what, err)
	}
	return nil
}

// newLogin makes a one-time login token for g's user, valid LoginTTL.
func (s *sessions) newLogin(ctx context.Context, g grant) (string, time.Time, error) {
	tok, err := newToken()
	if err != nil {
		return "", time.Time{}, err
	}
	g.Expires = s.now().Add(LoginTTL)
	if err := s.put(ctx, "login link", loginsPrefix+hashed(tok), g, LoginTTL); err != nil {
		return "", time.Time{}, err
	}
	return tok, g.Expires, nil
}

// redeem exchanges a login token, once, for a new session token. A used,
// unknown or expired login is ErrNoSession.
func (s *sessions) redeem(ctx context.Context, login string) (string, grant, error) {
	key := loginsPrefix + hashed(login)
	// Read and delete in one transaction: of two browsers opening the same
	// link at once, one gets the session.
	resp, err := s.etcd.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
		Then(clientv3.OpGet(key), clientv3.OpDelete(key)).Commit()
	if err != nil {
		return "", grant{}, fmt.Errorf("dashboard: redeem a login link: %w", err)
	}
	if !resp.Succeeded || len(resp.Responses) == 0 || len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
		return "", grant{}, fmt.Errorf("%w: the login link is unknown, used or expired (it is valid once, for %s); run ssi dashboard again", ErrNoSession, LoginTTL)
	}
	var g grant
	if err := json.Unmarshal(resp.Responses[0].GetResponseRange().Kvs[0].Value, &g); err != nil {
		return "", grant{}, fmt.Errorf("dashboard: a malformed login record: %w", err)
	}
	if !s.now().Before(g.Expires) {
		return "", grant{}, fmt.Errorf("%w: the login link expired at %s; run ssi dashboard again", ErrNoSession, g.Expires.UTC().Format(time.RFC3339))
	}
	sess, err := newToken()
	if err != nil {
		return "", grant{}, err
	}
	g.Expires = s.now().Add(SessionTTL)
	if err := s.put(ctx, "session", sessionsPrefix+hashed(sess), g, SessionTTL); err != nil {
		return "", grant{}, err
	}
	return sess, g, nil
}

// lookup returns the grant of a session token.
func (s *sessions) lookup(ctx context.Context, sess string) (grant, error) {
	if sess == "" {
		return grant{}, ErrNoSession
	}
	key := hashed(sess)
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[key]
	s.mu.Unlock()
	if ok && now.Sub(c.read) < recheck && now.Before(c.g.Expires) {
		return c.g, nil
	}
	resp, err := s.etcd.Get(ctx, sessionsPrefix+key)
	if err != nil {
		return grant{}, fmt.Errorf("dashboard: read a session: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(resp.Kvs) == 0 {
		delete(s.cache, key)
		return grant{}, ErrNoSession
	}
	var g grant
	if err := json.Unmarshal(resp.Kvs[0].Value, &g); err != nil || !now.Before(g.Expires) {
		delete(s.cache, key)
		return grant{}, ErrNoSession
	}
	if len(s.cache) >= maxCached {
		clear(s.cache)
	}
	s.cache[key] = cached{g: g, read: now}
	return g, nil
}

// end deletes a session (logout).
func (s *sessions) end(ctx context.Context, sess string) error {
	key := hashed(sess)
	s.mu.Lock()
	delete(s.cache, key)
	s.mu.Unlock()
	if _, err := s.etcd.Delete(ctx, sessionsPrefix+key); err != nil {
		return fmt.Errorf("dashboard: end a session: %w", err)
	}
	return nil
}

package pidtable

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	usersPrefix   = prefix + "users/"
	revokedPrefix = prefix + "revoked/"
)

// User is the registry entry of a user certificate the cluster CA issued
// (`ssi user add`): the name's current certificate. A name has at most one;
// issuing another (--rotate) revokes this one in the same transaction.
type User struct {
	Name  string `json:"name"`
	Admin bool   `json:"admin,omitempty"`
	// Serial is the certificate's serial number, lower-case hex (pki.Serial).
	Serial  string    `json:"serial"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	// By is the admin who issued it.
	By string `json:"by,omitempty"`
}

// Revocation says a certificate (by serial) must no longer be accepted. It is
// kept until the certificate expires (then the TLS stack refuses it anyway):
// its key is on a lease ending then, or durable when the expiry is unknown.
type Revocation struct {
	Serial string    `json:"serial"`
	At     time.Time `json:"at"`
	// User is the certificate's user (or "node:NAME"), when known.
	User    string    `json:"user,omitempty"`
	By      string    `json:"by,omitempty"`
	Expires time.Time `json:"expires,omitempty"`
}

// User reads the registry entry of name and its mod revision; ErrNotFound
// when there is none.
func (s *Store) User(ctx context.Context, name string) (User, int64, error) {
	resp, err := s.c.Get(ctx, usersPrefix+name)
	if err != nil {
		return User{}, 0, fmt.Errorf("pidtable: read user %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return User{}, 0, fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	var u User
	if err := decode(resp.Kvs[0].Value, &u, false); err != nil {
		return User{}, 0, fmt.Errorf("pidtable: decode user %s: %w", name, err)
	}
	return u, resp.Kvs[0].ModRevision, nil
}

// Users lists the registry, sorted by name.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	resp, err := s.c.Get(ctx, usersPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("pidtable: list users: %w", err)
	}
	out := make([]User, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var u User
		if decode(kv.Value, &u, false) == nil {
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// revocationOps returns the ops that store r: on a lease that ends an hour
// after the certificate does, or durable when its expiry is unknown.
func (s *Store) revocationOps(ctx context.Context, r Revocation) ([]clientv3.Op, error) {
	b, _ := json.Marshal(r)
	var opts []clientv3.OpOption
	if !r.Expires.IsZero() {
		ttl := int64(time.Until(r.Expires.Add(time.Hour)).Seconds())
		if ttl < 60 {
			ttl = 60
		}
		l, err := s.c.Grant(ctx, ttl)
		if err != nil {
			return nil, fmt.Errorf("pidtable: revocation lease: %w", err)
		}
		opts = append(opts, clientv3.WithLease(l.ID))
	}
	return []clientv3.Op{clientv3.OpPut(revokedPrefix+r.Serial, string(b), opts...)}, nil
}

// PutUser records u as the current certificate of its name, if the entry is
// still at revision rev (0: there must be none). With revoke, the previous
// certificate is revoked in the same transaction. ErrConflict when the entry
// changed meanwhile.
func (s *Store) PutUser(ctx context.Context, u User, rev int64, revoke *Revocation) error {
	b, _ := json.Marshal(u)
	ops := []clientv3.Op{clientv3.OpPut(usersPrefix+u.Name, string(b))}
	if revoke != nil {
		rops, err := s.revocationOps(ctx, *revoke)
		if err != nil {
			return err
		}
		ops = append(ops, rops...)
	}
	resp, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(usersPrefix+u.Name), "=", rev)).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("pidtable: store user %s: %w", u.Name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("pidtable: user %s changed meanwhile: %w", u.Name, ErrConflict)
	}
	return nil
}

// Revoke stores r. When user is set, that registry entry (at revision rev)
// is removed in the same transaction (its certificate is the one revoked).
func (s *Store) Revoke(ctx context.Context, r Revocation, user string, rev int64) error {
	ops, err := s.revocationOps(ctx, r)
	if err != nil {
		return err
	}
	txn := s.c.Txn(ctx)
	if user != "" {
		txn = txn.If(clientv3.Compare(clientv3.ModRevision(usersPrefix+user), "=", rev))
		ops = append(ops, clientv3.OpDelete(usersPrefix+user))
	}
	resp, err := txn.Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("pidtable: revoke %s: %w", r.Serial, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("pidtable: user %s changed meanwhile: %w", user, ErrConflict)
	}
	return nil
}

// Revocations lists the stored revocations and the revision of the read.
func (s *Store) Revocations(ctx context.Context) ([]Revocation, int64, error) {
	resp, err := s.c.Get(ctx, revokedPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("pidtable: list revocations: %w", err)
	}
	out := make([]Revocation, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r Revocation
		if decode(kv.Value, &r, false) == nil {
			out = append(out, r)
		}
	}
	return out, resp.Header.Revision, nil
}

// TokenInfo is a join token as listed: its id and stored fields, never its
// secret (which the cluster does not have).
type TokenInfo struct {
	ID string `json:"id"`
	JoinToken
}

// Tokens lists the join tokens that have not expired, sorted by expiry.
func (s *Store) Tokens(ctx context.Context) ([]TokenInfo, error) {
	resp, err := s.c.Get(ctx, tokensPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("pidtable: list tokens: %w", err)
	}
	out := make([]TokenInfo, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var t JoinToken
		if decode(kv.Value, &t, false) != nil {
			continue
		}
		out = append(out, TokenInfo{ID: strings.TrimPrefix(string(kv.Key), tokensPrefix), JoinToken: t})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Expires.Before(out[j].Expires) })
	return out, nil
}

// DeleteToken removes the join token id; ErrNotFound when there is none.
func (s *Store) DeleteToken(ctx context.Context, id string) error {
	resp, err := s.c.Delete(ctx, tokensPrefix+id)
	if err != nil {
		return fmt.Errorf("pidtable: delete token %s: %w", id, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return nil
}

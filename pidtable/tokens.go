package pidtable

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	tokensPrefix = prefix + "tokens/"
	caNodeKey    = prefix + "ca-node"
)

// JoinToken is the stored half of a join token: the hash of its secret, never
// the secret. The key lives on a lease that ends with the token.
type JoinToken struct {
	SecretHash string    `json:"secret_hash"`
	Expires    time.Time `json:"expires"`
	Creator    string    `json:"creator"`
}

// PutToken stores a join token under id until it expires.
func (s *Store) PutToken(ctx context.Context, id string, t JoinToken) error {
	ttl := int64(time.Until(t.Expires).Seconds()) + 1
	if ttl < 2 {
		return fmt.Errorf("pidtable: token expires too soon (%s)", t.Expires)
	}
	lease, err := s.c.Grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("pidtable: token lease: %w", err)
	}
	b, _ := json.Marshal(t)
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(tokensPrefix+id), "=", 0)).
		Then(clientv3.OpPut(tokensPrefix+id, string(b), clientv3.WithLease(lease.ID))).Commit()
	if err != nil {
		return fmt.Errorf("pidtable: store token: %w", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("pidtable: token id %s exists: %w", id, ErrConflict)
	}
	return nil
}

// Token reads the join token id; ErrNotFound when there is none (never made,
// or expired and gone with its lease).
func (s *Store) Token(ctx context.Context, id string) (JoinToken, error) {
	resp, err := s.c.Get(ctx, tokensPrefix+id)
	if err != nil {
		return JoinToken{}, fmt.Errorf("pidtable: read token: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return JoinToken{}, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	var t JoinToken
	if err := decodeStrict(resp.Kvs[0].Value, &t); err != nil {
		return JoinToken{}, fmt.Errorf("pidtable: decode token %s: %w", id, err)
	}
	return t, nil
}

// SetCANode records which node holds the cluster CA's key (it signs node and
// user certificates).
func (s *Store) SetCANode(ctx context.Context, node string) error {
	if _, err := s.c.Put(ctx, caNodeKey, node); err != nil {
		return fmt.Errorf("pidtable: record CA node: %w", err)
	}
	return nil
}

// CANode returns the node holding the cluster CA's key.
func (s *Store) CANode(ctx context.Context) (string, error) {
	resp, err := s.c.Get(ctx, caNodeKey)
	if err != nil {
		return "", fmt.Errorf("pidtable: read CA node: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("CA node: %w", ErrNotFound)
	}
	return string(resp.Kvs[0].Value), nil
}

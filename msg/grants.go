package msg

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// grantPrefix holds the admins' grants, one record per user.
const grantPrefix = "/ssi/msg/grants/"

// Grant is what an admin granted a user beyond their namespace: subjects
// (of other users' namespaces, u.*) they may publish and subscribe to.
type Grant struct {
	Pub []string `json:"pub,omitempty"`
	Sub []string `json:"sub,omitempty"`
}

// GrantStore keeps the grants in etcd.
type GrantStore struct{ etcd *clientv3.Client }

// NewGrantStore returns the grants kept in etcd.
func NewGrantStore(c *clientv3.Client) *GrantStore { return &GrantStore{etcd: c} }

// Get returns user's grant (empty if none).
func (g *GrantStore) Get(ctx context.Context, user string) (Grant, error) {
	resp, err := g.etcd.Get(ctx, grantPrefix+user)
	if err != nil {
		return Grant{}, fmt.Errorf("msg: read the grants of %s: %w", user, err)
	}
	var gr Grant
	if len(resp.Kvs) == 0 {
		return gr, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &gr); err != nil {
		return Grant{}, fmt.Errorf("msg: grant record of %s: %w", user, err)
	}
	return gr, nil
}

// CheckGrantSubject checks a subject an admin grants: absolute, in some
// user's namespace (u.<user>....), wildcards allowed.
func CheckGrantSubject(s string) error {
	if _, err := Subject("", "/"+s, true); err != nil {
		return err
	}
	toks := strings.Split(s, ".")
	if len(toks) < 3 || toks[0] != "u" || toks[1] == "*" || toks[1] == ">" {
		return fmt.Errorf("%w: %q: a grant is a subject of one user's namespace, u.<user>.<subject> (wildcards after the user allowed)", ErrBadSubject, s)
	}
	return nil
}

// Update adds (or, with remove, removes) subject to user's grant for
// publishing and/or subscribing, in one transaction against concurrent
// updates.
func (g *GrantStore) Update(ctx context.Context, user, subject string, pub, sub, remove bool) (Grant, error) {
	if err := CheckGrantSubject(subject); err != nil {
		return Grant{}, err
	}
	key := grantPrefix + user
	for {
		resp, err := g.etcd.Get(ctx, key)
		if err != nil {
			return Grant{}, fmt.Errorf("msg: read the grants of %s: %w", user, err)
		}
		var gr Grant
		var rev int64
		if len(resp.Kvs) > 0 {
			rev = resp.Kvs[0].ModRevision
			if err := json.Unmarshal(resp.Kvs[0].Value, &gr); err != nil {
				return Grant{}, fmt.Errorf("msg: grant record of %s: %w", user, err)
			}
		}
		edit := func(list []string, on bool) []string {
			list = slices.DeleteFunc(list, func(x string) bool { return x == subject })
			if on && !remove {
				list = append(list, subject)
			}
			slices.Sort(list)
			return list
		}
		gr.Pub, gr.Sub = edit(gr.Pub, pub), edit(gr.Sub, sub)
		b, _ := json.Marshal(gr)
		var cmp clientv3.Cmp
		if rev == 0 {
			cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		} else {
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
		}
		op := clientv3.OpPut(key, string(b))
		if len(gr.Pub) == 0 && len(gr.Sub) == 0 {
			op = clientv3.OpDelete(key)
		}
		tx, err := g.etcd.Txn(ctx).If(cmp).Then(op).Commit()
		if err != nil {
			return Grant{}, fmt.Errorf("msg: write the grants of %s: %w", user, err)
		}
		if tx.Succeeded {
			return gr, nil
		}
	}
}

// Func is the authenticator's view of the grants, read at each connection
// (an etcd read of at most 2 s; none on error).
func (g *GrantStore) Func() Grants {
	return func(user string) ([]string, []string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		gr, err := g.Get(ctx, user)
		if err != nil {
			return nil, nil
		}
		return gr.Pub, gr.Sub
	}
}

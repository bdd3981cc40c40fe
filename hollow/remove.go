package hollow

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/pidtable"
)

// Remove deletes every trace of the named nodes from the cluster's etcd:
// their leases (revoked, so their status keys go), their registrations
// and settings (Store.RemoveNode) and their records, live and archived. A
// test or benchmark calls it after stopping its hollow nodes, so that the
// cluster looks as before them. It must not name a real node: its jobs'
// records would be deleted with it.
func Remove(ctx context.Context, cli *clientv3.Client, names []string) error {
	st := pidtable.New(cli)
	gone := make(map[string]bool, len(names))
	for _, name := range names {
		gone[name] = true
		if _, lease, live, err := st.Status(ctx, name); err != nil {
			return err
		} else if live {
			// The lease may expire between the read and the revoke (a
			// node that stopped renewing it): gone either way.
			if _, err := cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return fmt.Errorf("hollow: revoke the lease of %s: %w", name, err)
			}
		}
		if err := st.RemoveNode(ctx, name, true, nil); err != nil && !errors.Is(err, pidtable.ErrNotFound) {
			return err
		}
	}
	var keys []string
	if _, err := st.ListProcs(ctx, pidtable.ListOptions{History: true}, func(p pidtable.Proc, _ int64) error {
		if gone[p.Node] {
			keys = append(keys, pidtable.ProcKey(p.GPID), pidtable.HistoryKey(p.GPID))
		}
		return nil
	}); err != nil {
		return fmt.Errorf("hollow: list the records to remove: %w", err)
	}
	for len(keys) > 0 {
		n := min(len(keys), 128)
		ops := make([]clientv3.Op, 0, n)
		for _, k := range keys[:n] {
			ops = append(ops, clientv3.OpDelete(k))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("hollow: delete records: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

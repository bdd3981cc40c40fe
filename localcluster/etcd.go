package localcluster

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// EtcdStatus lists the cluster's etcd members with each one's health,
// asking through every member's client URL as a node of the cluster (the
// certificate of the first node that has one; etcd admits nodes only).
func (s *State) EtcdStatus(ctx context.Context) ([]pidtable.Member, error) {
	cc := clientv3.Config{Endpoints: s.EtcdEndpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()}
	if !s.Insecure() {
		var creds *pki.Node
		for _, n := range s.Nodes {
			if dir := filepath.Join(n.DataDir, "pki"); pki.HasNodeCert(dir) {
				c, err := pki.LoadNode(dir)
				if err != nil {
					return nil, fmt.Errorf("localcluster: %w", err)
				}
				creds = c
				break
			}
		}
		if creds == nil {
			return nil, fmt.Errorf("localcluster: no node of cluster %s has a certificate yet", s.Name)
		}
		cc.TLS = creds.ClientTLS()
	}
	c, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("localcluster: etcd at %v: %w", cc.Endpoints, err)
	}
	defer c.Close()
	return pidtable.Members(ctx, c, 2*time.Second)
}

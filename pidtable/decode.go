package pidtable

import (
	"encoding/json"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

func decodeProcs(kvs []*mvccpb.KeyValue) ([]Proc, error) {
	procs := make([]Proc, 0, len(kvs))
	for _, kv := range kvs {
		var p Proc
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			return nil, fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
		}
		procs = append(procs, p)
	}
	return procs, nil
}

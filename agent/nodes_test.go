package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// TestNodeLifecycleAPI drives cordon, label, drain and rm through a real
// agent as an admin: twice the same cordon changes nothing and says so;
// labels reach the nodes' snapshot at once; a drain with nowhere to go, of
// an unknown node or of a NotReady one is refused saying what to do; rm of
// a NotReady node records its jobs lost and revokes its certificates.
func TestNodeLifecycleAPI(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	call := func(method, path, body string, wantStatus int, out any) string {
		t.Helper()
		status, b := f.do(t, admin, method, path, body)
		if status != wantStatus {
			t.Fatalf("%s %s: HTTP %d %s; want %d", method, path, status, b, wantStatus)
		}
		if out != nil {
			// A fresh value: Unmarshal merges into what is there.
			switch v := out.(type) {
			case *api.NodeResult:
				*v = api.NodeResult{}
			case *api.DrainResponse:
				*v = api.DrainResponse{}
			}
			if err := json.Unmarshal([]byte(b), out); err != nil {
				t.Fatal(err)
			}
		}
		return b
	}
	var res api.NodeResult
	call("POST", "/v1/nodes/node3/cordon", `{"reason":"disk"}`, http.StatusOK, &res)
	if !res.Changed || !res.Config.Cordoned || !strings.Contains(res.Message, "cordoned") {
		t.Fatalf("cordon: %+v", res)
	}
	call("POST", "/v1/nodes/node3/cordon", `{}`, http.StatusOK, &res)
	if res.Changed || !strings.Contains(res.Message, "already cordoned") {
		t.Fatalf("second cordon: %+v", res)
	}
	call("PUT", "/v1/nodes/node2/labels", `{"set":{"gpu":"a100"}}`, http.StatusOK, &res)
	snap, _ := f.store.NodesSnapshot(ctx)
	if n, _ := snap.Node("node2"); n.Labels["gpu"] != "a100" {
		t.Fatalf("labels %v", n.Labels)
	}
	call("PUT", "/v1/nodes/node2/labels", `{"remove":["gpu"]}`, http.StatusOK, &res)
	if _, ok := res.Labels["gpu"]; ok {
		t.Fatalf("label not removed: %+v", res)
	}
	if b := call("PUT", "/v1/nodes/node2/labels", `{"set":{"bad key":"x"}}`, http.StatusBadRequest, nil); !strings.Contains(b, "only letters") {
		t.Fatalf("bad label: %s", b)
	}

	if b := call("POST", "/v1/nodes/nosuch/drain", `{}`, http.StatusNotFound, nil); !strings.Contains(b, "known nodes: node1, node2, node3") {
		t.Fatalf("unknown node: %s", b)
	}
	call("POST", "/v1/nodes/node1/cordon", `{}`, http.StatusOK, nil)
	if b := call("POST", "/v1/nodes/node2/drain", `{}`, http.StatusConflict, nil); !strings.Contains(b, "nowhere to move") {
		t.Fatalf("drain with nowhere to go: %s", b)
	}
	call("POST", "/v1/nodes/node1/uncordon", ``, http.StatusOK, nil)
	var dr api.DrainResponse
	call("POST", "/v1/nodes/node2/drain", `{"parallel":3,"deadline":60000000000}`, http.StatusCreated, &dr)
	if dr.Parallel != 3 || dr.State != pidtable.DrainActive || dr.Deadline.Sub(dr.Started) != time.Minute {
		t.Fatalf("drain: %+v", dr)
	}
	call("POST", "/v1/nodes/node2/drain", `{}`, http.StatusOK, &dr)
	if !dr.Already {
		t.Fatalf("second drain: %+v", dr)
	}
	if b := call("POST", "/v1/nodes/node2/uncordon", ``, http.StatusConflict, nil); !strings.Contains(b, "--cancel") {
		t.Fatalf("uncordon while draining: %s", b)
	}
	call("DELETE", "/v1/nodes/node2/drain", ``, http.StatusOK, &dr)
	if dr.State != pidtable.DrainCancelled {
		t.Fatalf("cancel: %+v", dr)
	}

	// node4 is registered, NotReady, and its record says a job runs there.
	if err := f.store.RegisterNode(ctx, pidtable.Node{Name: "node4", Addr: "127.0.0.1:7074"}); err != nil {
		t.Fatal(err)
	}
	lease, _ := f.a.etcd.Grant(ctx, 60)
	if err := f.store.PublishStatus(ctx, "node4", pidtable.NodeStatus{}, lease.ID); err != nil {
		t.Fatal(err)
	}
	p, err := f.store.Create(ctx, pidtable.Proc{Node: "node4", State: pidtable.Running, User: "alice", Argv: []string{"sleep", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.RecordNodeCert(ctx, "node4", pidtable.NodeCert{Serial: "0abc", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if b := call("DELETE", "/v1/nodes/node4", ``, http.StatusConflict, nil); !strings.Contains(b, "stop its agent first") {
		t.Fatalf("rm of a Ready node: %s", b)
	}
	if _, err := f.a.etcd.Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	if b := call("POST", "/v1/nodes/node4/drain", `{}`, http.StatusServiceUnavailable, nil); !strings.Contains(b, "ssi node rm node4") {
		t.Fatalf("drain of a NotReady node: %s", b)
	}
	var rm api.NodeRemoveResult
	call("DELETE", "/v1/nodes/node4", ``, http.StatusOK, &rm)
	if len(rm.Lost) != 1 || rm.Lost[0] != p.GPID || len(rm.Revoked) != 1 || rm.Revoked[0] != "0abc" {
		t.Fatalf("rm: %+v", rm)
	}
	got, _, _ := f.store.Get(ctx, p.GPID)
	if got.State != pidtable.Lost || !strings.Contains(got.Error, "ssi node rm") {
		t.Fatalf("job after rm: %+v", got)
	}
	call("DELETE", "/v1/nodes/node4", ``, http.StatusNotFound, nil)
}

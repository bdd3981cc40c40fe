package service

import (
	"context"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/etcdtest"
	"github.com/ssi-cluster/ssi/pidtable"
)

func wantAPIError(t *testing.T, what string, err error, code api.Code, want string) {
	t.Helper()
	e := api.FromError(err)
	if e == nil || e.Code != code || !strings.Contains(e.Message, want) {
		t.Fatalf("%s: %v; want %s %q", what, err, code, want)
	}
}

// TestRequests: apply creates, then finds nothing to change, then updates;
// only the owner (or an admin) is admitted; scale and remove write the
// record once; a service being removed is neither scaled nor applied.
func TestRequests(t *testing.T) {
	ctx := context.Background()
	var events []pidtable.Event
	q := NewRequests(RequestsConfig{Node: "n1", Store: pidtable.New(etcdtest.Client(t)),
		Events: func(_ context.Context, ev pidtable.Event) { events = append(events, ev) }})
	owner := access.Caller{User: "alice", Admin: true}
	spec := pidtable.ServiceSpec{Argv: []string{"sleep", "1000"}, Replicas: 2}
	resp, err := q.Apply(ctx, owner, "web", api.ApplyRequest{Spec: spec})
	if err != nil || resp.Action != "created" || resp.Generation != 1 {
		t.Fatalf("apply: %+v %v", resp, err)
	}
	if resp, err = q.Apply(ctx, owner, "web", api.ApplyRequest{Spec: spec}); err != nil || resp.Action != "unchanged" {
		t.Fatalf("apply again: %+v %v", resp, err)
	}
	spec.Argv = []string{"sleep", "2000"}
	if resp, err = q.Apply(ctx, owner, "web", api.ApplyRequest{Spec: spec}); err != nil || resp.Action != "updated" || !resp.Rolling || resp.Generation != 2 {
		t.Fatalf("update: %+v %v", resp, err)
	}
	_, err = q.Apply(ctx, owner, "bad name", api.ApplyRequest{Spec: spec})
	wantAPIError(t, "bad name", err, api.CodeBadRequest, "service name")
	_, err = q.Apply(ctx, access.Caller{User: "mallory"}, "web", api.ApplyRequest{Spec: pidtable.ServiceSpec{Argv: []string{"true"}}})
	wantAPIError(t, "another's service", err, api.CodeForbidden, "belongs to alice")

	_, err = q.Admit(ctx, access.Caller{Node: "n2"}, "web")
	wantAPIError(t, "a node", err, api.CodeForbidden, "a node certificate (n2)")
	_, err = q.Admit(ctx, owner, "nosuch")
	wantAPIError(t, "no service", err, api.CodeNotFound, `no service "nosuch"`)
	rec, err := q.Admit(ctx, owner, "web")
	if err != nil || rec.Service.Spec.Replicas != 2 {
		t.Fatalf("admit: %+v %v", rec, err)
	}
	_, err = q.Scale(ctx, owner, rec, "POST /v1/services/web/scale", -1)
	wantAPIError(t, "negative scale", err, api.CodeBadRequest, "-1 replicas")
	if resp, err = q.Scale(ctx, owner, rec, "POST /v1/services/web/scale", 3); err != nil || resp.Action != "scaled" || resp.Generation != 3 {
		t.Fatalf("scale: %+v %v", resp, err)
	}
	// rec is stale now: the write is retried on the record read afresh.
	if err := q.Remove(ctx, owner, rec, "DELETE /v1/services/web"); err != nil {
		t.Fatal(err)
	}
	rec, _ = q.Admit(ctx, owner, "web")
	if !rec.Service.Removing || rec.Service.Spec.Replicas != 3 {
		t.Fatalf("after rm: %+v", rec.Service)
	}
	_, err = q.Scale(ctx, owner, rec, "POST /v1/services/web/scale", 1)
	wantAPIError(t, "scale while removed", err, api.CodeConflict, "being removed")
	_, err = q.Apply(ctx, owner, "web", api.ApplyRequest{Spec: spec})
	wantAPIError(t, "apply while removed", err, api.CodeConflict, "being removed")
	if last := events[len(events)-1]; !strings.Contains(last.Reason, "service web: DELETE /v1/services/web by admin alice") {
		t.Fatalf("last event %+v", last)
	}
	list, err := q.List(ctx, access.Caller{User: "mallory"})
	if err != nil || len(list) != 0 {
		t.Fatalf("another's list: %+v %v", list, err)
	}
}

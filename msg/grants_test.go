package msg

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/internal/etcdtest"
)

func TestGrantStore(t *testing.T) {
	g := NewGrantStore(etcdtest.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := g.Update(ctx, "bob", "u.alice.orders", true, true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Update(ctx, "bob", "u.alice.logs.>", false, true, false); err != nil {
		t.Fatal(err)
	}
	pub, sub := g.Func()("bob")
	if !slices.Equal(pub, []string{"u.alice.orders"}) || !slices.Equal(sub, []string{"u.alice.logs.>", "u.alice.orders"}) {
		t.Fatalf("grants: pub %v sub %v", pub, sub)
	}
	// The authenticator gives them to bob's connections.
	perms := UserPermissions("bob", g.Func())
	if !slices.Contains(perms.Subscribe.Allow, "u.alice.logs.>") || slices.Contains(perms.Publish.Allow, "u.alice.logs.>") {
		t.Fatalf("permissions: %+v %+v", perms.Publish, perms.Subscribe)
	}
	if _, err := g.Update(ctx, "bob", "u.alice.orders", true, true, true); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Update(ctx, "bob", "u.alice.logs.>", true, true, true); err != nil {
		t.Fatal(err)
	}
	if pub, sub := g.Func()("bob"); len(pub)+len(sub) != 0 {
		t.Fatalf("after revokes: %v %v", pub, sub)
	}
	for _, bad := range []string{"_INBOX.>", ">", "u.>", "u.*.x", "ssi.api.bob.topic.list", "u.alice", "u..x"} {
		if _, err := g.Update(ctx, "bob", bad, true, true, false); !errors.Is(err, ErrBadSubject) {
			t.Errorf("grant of %q: %v, want ErrBadSubject", bad, err)
		}
	}
}

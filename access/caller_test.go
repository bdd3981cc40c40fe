package access

import (
	"net/http"
	"testing"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pki"
)

func TestCallerFromIdentity(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	cases := []struct {
		name string
		id   pki.Identity
		h    http.Header
		want Caller
		code api.Code
	}{
		{"user", pki.Identity{Name: "alice"}, hdr(), Caller{User: "alice"}, ""},
		{"admin", pki.Identity{Name: "root", Admin: true}, hdr(), Caller{User: "root", Admin: true}, ""},
		{"user claims another user", pki.Identity{Name: "alice"}, hdr(api.HeaderOnBehalfOf, "root"), Caller{}, api.CodeForbidden},
		{"user claims admin", pki.Identity{Name: "alice"}, hdr(api.HeaderAdmin, "1"), Caller{}, api.CodeForbidden},
		{"user claims to forward", pki.Identity{Name: "alice"}, hdr(api.HeaderForwarded, "node1"), Caller{}, api.CodeForbidden},
		{"user headers are ignored", pki.Identity{Name: "alice"}, hdr(api.HeaderUser, "root", api.HeaderUID, "0"), Caller{User: "alice"}, ""},
		{"node for itself", pki.Identity{Name: "node2", Node: true}, hdr(api.HeaderForwarded, "node2"), Caller{Node: "node2"}, ""},
		{"node claims to act for a user", pki.Identity{Name: "node2", Node: true}, hdr(api.HeaderOnBehalfOf, "alice"), Caller{}, api.CodeForbidden},
		{"node claims to act for an admin", pki.Identity{Name: "node2", Node: true}, hdr(api.HeaderOnBehalfOf, "root", api.HeaderAdmin, "1"), Caller{}, api.CodeForbidden},
		{"node claims admin", pki.Identity{Name: "node2", Node: true}, hdr(api.HeaderAdmin, "1"), Caller{}, api.CodeForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := callerFromIdentity(tc.id, tc.h)
			if tc.code != "" {
				if !api.IsCode(err, tc.code) {
					t.Fatalf("err %v, want code %s", err, tc.code)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	cases := []struct {
		who   Caller
		owner string
		ok    bool
	}{
		{Caller{User: "alice"}, "alice", true},
		{Caller{User: "alice"}, "bob", false},
		{Caller{User: "root", Admin: true}, "bob", true},
		{Caller{Node: "node1"}, "bob", false},
		{Caller{Node: "node1", User: "bob"}, "bob", true},
		{Caller{}, "", false},
	}
	for _, tc := range cases {
		err := Authorize(tc.who, "gpid 7", tc.owner)
		if (err == nil) != tc.ok {
			t.Errorf("Authorize(%+v, owner %q) = %v, want ok=%v", tc.who, tc.owner, err, tc.ok)
		}
		if err != nil && !api.IsCode(err, api.CodeForbidden) {
			t.Errorf("authorize error %v is not forbidden", err)
		}
	}
}

// FuzzForwardedIdentity: whatever headers come with a certificate, a user
// certificate yields exactly its user, and a node certificate no user at all.
func FuzzForwardedIdentity(f *testing.F) {
	f.Add("alice", false, false, "", "", "")
	f.Add("node1", true, false, "root", "1", "node1")
	f.Add("bob", false, true, "root", "1", "")
	f.Fuzz(func(t *testing.T, name string, node, admin bool, behalf, adm, fwd string) {
		if pki.CheckName(name) != nil {
			return
		}
		h := http.Header{}
		h.Set(api.HeaderOnBehalfOf, behalf)
		h.Set(api.HeaderAdmin, adm)
		h.Set(api.HeaderForwarded, fwd)
		id := pki.Identity{Name: name, Node: node, Admin: admin && !node}
		who, err := callerFromIdentity(id, h)
		if err != nil {
			return
		}
		if !node && (who.User != name || who.Admin != id.Admin || who.Node != "") {
			t.Fatalf("user %+v became %+v", id, who)
		}
		if node && (who.User != "" || who.Admin || who.Node != name) {
			t.Fatalf("node %+v became %+v", id, who)
		}
	})
}

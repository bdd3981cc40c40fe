package agent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/supervisor"
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
		want caller
		code api.Code
	}{
		{"user", pki.Identity{Name: "alice"}, hdr(), caller{user: "alice"}, ""},
		{"admin", pki.Identity{Name: "root", Admin: true}, hdr(), caller{user: "root", admin: true}, ""},
		{"user claims another user", pki.Identity{Name: "alice"}, hdr(api.HeaderOnBehalfOf, "root"), caller{}, api.CodeForbidden},
		{"user claims admin", pki.Identity{Name: "alice"}, hdr(api.HeaderAdmin, "1"), caller{}, api.CodeForbidden},
		{"user claims to forward", pki.Identity{Name: "alice"}, hdr(api.HeaderForwarded, "node1"), caller{}, api.CodeForbidden},
		{"user headers are ignored", pki.Identity{Name: "alice"}, hdr(api.HeaderUser, "root", api.HeaderUID, "0"), caller{user: "alice"}, ""},
		{"node for itself", pki.Identity{Name: "node2", Node: true}, hdr(api.HeaderForwarded, "node2"), caller{node: "node2"}, ""},
		{"node claims to act for a user", pki.Identity{Name: "node2", Node: true}, hdr(api.HeaderOnBehalfOf, "alice"), caller{}, api.CodeForbidden},
		{"node claims to act for an admin", pki.Identity{Name: "node2", Node: true}, hdr(api.HeaderOnBehalfOf, "root", api.HeaderAdmin, "1"), caller{}, api.CodeForbidden},
		{"node claims admin", pki.Identity{Name: "node2", Node: true}, hdr(api.HeaderAdmin, "1"), caller{}, api.CodeForbidden},
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
		who   caller
		owner string
		ok    bool
	}{
		{caller{user: "alice"}, "alice", true},
		{caller{user: "alice"}, "bob", false},
		{caller{user: "root", admin: true}, "bob", true},
		{caller{node: "node1"}, "bob", false},
		{caller{node: "node1", user: "bob"}, "bob", true},
		{caller{}, "", false},
	}
	for _, tc := range cases {
		err := authorize(tc.who, "gpid 7", tc.owner)
		if (err == nil) != tc.ok {
			t.Errorf("authorize(%+v, owner %q) = %v, want ok=%v", tc.who, tc.owner, err, tc.ok)
		}
		if err != nil && !api.IsCode(err, api.CodeForbidden) {
			t.Errorf("authorize error %v is not forbidden", err)
		}
	}
}

func TestDecodeLimits(t *testing.T) {
	cases := map[string]string{
		"malformed":     `{"argv":`,
		"unknown field": `{"argv":["x"],"root":true}`,
		"two objects":   `{"argv":["x"]}{"argv":["y"]}`,
		"oversized":     `{"argv":["` + strings.Repeat("a", maxRequestBody) + `"]}`,
		"wrong type":    `{"argv":"x"}`,
	}
	for name, body := range cases {
		var req api.RunRequest
		err := decode(httptest.NewRequest("POST", "/v1/procs", strings.NewReader(body)), &req)
		if !api.IsCode(err, api.CodeBadRequest) {
			t.Errorf("%s: %v, want a bad request", name, err)
		}
	}
	// A large body followed by whitespace (curl, editors) is fine.
	var req api.RunRequest
	ok := `{"argv":["echo","` + strings.Repeat("a", 200<<10) + `"]}` + "\n\n"
	if err := decode(httptest.NewRequest("POST", "/v1/procs", strings.NewReader(ok)), &req); err != nil {
		t.Fatalf("large body with a trailing newline: %v", err)
	}
}

// FuzzRunRequest feeds arbitrary bodies to the run endpoint's decoder and
// validation: whatever passes must be within the limits.
func FuzzRunRequest(f *testing.F) {
	f.Add([]byte(`{"argv":["sleep","1"],"env":["A=B"],"cpus":0.5,"memory":67108864,"constraints":{"a":"b"}}`))
	f.Add([]byte(`{"argv":[""]}`))
	f.Add([]byte(`{"argv":["x"],"user":"root","node":"n1","workdir":"/","workdir_explicit":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req api.RunRequest
		if err := decode(httptest.NewRequest("POST", "/v1/procs", strings.NewReader(string(b))), &req); err != nil {
			if !api.IsCode(err, api.CodeBadRequest) {
				t.Fatalf("decode error %v is not a bad request", err)
			}
			return
		}
		if err := supervisor.ValidateRun(req); err != nil {
			if !api.IsCode(err, api.CodeBadRequest) {
				t.Fatalf("validation error %v is not a bad request", err)
			}
			return
		}
		size := 0
		for _, s := range append(req.Argv, req.Env...) {
			size += len(s) + 1
			if strings.IndexByte(s, 0) >= 0 {
				t.Fatal("NUL accepted")
			}
		}
		if len(req.Argv) == 0 || req.Argv[0] == "" || len(req.Argv)+len(req.Env) > supervisor.MaxArgs || size > supervisor.MaxArgBytes || req.CPUs < 0 || req.Memory < 0 {
			t.Fatalf("accepted %+v", req)
		}
	})
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
		if !node && (who.user != name || who.admin != id.Admin || who.node != "") {
			t.Fatalf("user %+v became %+v", id, who)
		}
		if node && (who.user != "" || who.admin || who.node != name) {
			t.Fatalf("node %+v became %+v", id, who)
		}
	})
}

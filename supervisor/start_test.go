package supervisor

import (
	"errors"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/pidtable"
)

// TestValidateRun: requests too big for a job's record, or with NUL bytes,
// are refused as invalid before anything is allocated.
func TestValidateRun(t *testing.T) {
	for name, req := range map[string]api.RunRequest{
		"too many args": {Argv: make([]string, MaxArgs+1)},
		"too big":       {Argv: []string{"echo", strings.Repeat("a", MaxArgBytes)}},
		"NUL":           {Argv: []string{"echo", "a\x00b"}},
		"env NUL":       {Argv: []string{"echo"}, Env: []string{"A=\x00"}},
		"env identity":  {Argv: []string{"echo"}, Env: []string{"SSI_USER=mallory"}},
	} {
		if req.Argv[0] == "" {
			req.Argv[0] = "x"
		}
		if err := ValidateRun(req); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: %v, want a bad request", name, err)
		}
	}
	if err := ValidateRun(api.RunRequest{Argv: []string{"echo", "hi"}, Env: []string{"A=1", "SSI_TIMER=t"}}); err != nil {
		t.Errorf("a plain request: %v", err)
	}
}

// TestJobIdentity: a job's own variables, a replica's with its service.
func TestJobIdentity(t *testing.T) {
	got := strings.Join(jobIdentity(pidtable.Proc{GPID: 42, User: "alice", Node: "node2"}, ""), " ")
	if got != "SSI_GPID=42 SSI_USER=alice SSI_NODE=node2" {
		t.Errorf("job: %q", got)
	}
	got = strings.Join(jobIdentity(pidtable.Proc{GPID: 7, User: "bob", Node: "node1", Service: "web"}, "/run/ssi/x/jobs"), " ")
	if got != "SSI_GPID=7 SSI_USER=bob SSI_NODE=node1 SSI_SERVICE=web SSI_CONFIG=/run/ssi/x/jobs/7/config.json" {
		t.Errorf("replica: %q", got)
	}
}

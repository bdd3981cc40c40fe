package supervisor

import (
	"errors"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/errdefs"
)

// TestValidateRun: requests too big for a job's record, or with NUL bytes,
// are refused as invalid before anything is allocated.
func TestValidateRun(t *testing.T) {
	for name, req := range map[string]api.RunRequest{
		"too many args": {Argv: make([]string, MaxArgs+1)},
		"too big":       {Argv: []string{"echo", strings.Repeat("a", MaxArgBytes)}},
		"NUL":           {Argv: []string{"echo", "a\x00b"}},
		"env NUL":       {Argv: []string{"echo"}, Env: []string{"A=\x00"}},
	} {
		if req.Argv[0] == "" {
			req.Argv[0] = "x"
		}
		if err := ValidateRun(req); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: %v, want a bad request", name, err)
		}
	}
	if err := ValidateRun(api.RunRequest{Argv: []string{"echo", "hi"}, Env: []string{"A=1"}}); err != nil {
		t.Errorf("a plain request: %v", err)
	}
}

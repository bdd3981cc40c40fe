package migrate

import (
	"errors"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/pidtable"
)

// TestCheckProtocol: agents of one protocol move jobs whatever their version
// strings; another protocol, or none (an agent from before the check), is a
// conflict naming both versions and the way out.
func TestCheckProtocol(t *testing.T) {
	if err := CheckProtocol("node1", "v1.2", pidtable.Node{Name: "node2", Version: "v1.3-dirty", Protocol: Protocol}); err != nil {
		t.Fatalf("same protocol, other version: %v", err)
	}
	for _, tc := range []struct {
		target pidtable.Node
		want   string
	}{
		{pidtable.Node{Name: "node2", Version: "v9", Protocol: Protocol + 1}, "node node2 runs ssi v9 (migration protocol 2), node node1 runs ssi v1.2 (migration protocol 1)"},
		{pidtable.Node{Name: "node2", Version: "v0.9"}, "node node2 runs ssi v0.9 (an ssi from before migration protocol versions)"},
	} {
		err := CheckProtocol("node1", "v1.2", tc.target)
		if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "versions differ") || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "upgrade the older agent") {
			t.Errorf("%+v: %v", tc.target, err)
		}
	}
}

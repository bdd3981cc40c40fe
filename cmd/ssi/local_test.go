package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLocalUpBadEtcdMembers: an even count of etcd members, or more members
// than nodes, exits 2 with a message saying what to pass instead, before
// anything is checked or made (no root needed, no state dir created).
func TestLocalUpBadEtcdMembers(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--etcd-members", "2"}, "--etcd-members 2: want an odd number"},
		{[]string{"--etcd-members", "4", "--nodes", "5"}, "pass --etcd-members 5 (survives the loss of 2) or 3"},
		{[]string{"--etcd-members", "5"}, "--etcd-members 5 with --nodes 3: each member runs in one node's agent; pass --nodes 5 or more, or --etcd-members 3 or fewer"},
	} {
		state := filepath.Join(t.TempDir(), "state")
		var out, errb bytes.Buffer
		e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
		root := newRoot(e)
		root.SetArgs(append([]string{"local", "--name", "badha", "--state-dir", state, "up", "--write-config", ""}, c.args...))
		err := root.ExecuteContext(context.Background())
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitUsage || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing was started") {
			t.Errorf("local up %v: %v; want exit 2 saying %q", c.args, err, c.want)
		}
		if _, err := os.Stat(state); !os.IsNotExist(err) {
			t.Errorf("local up %v made %s (err %v)", c.args, state, err)
		}
	}
}

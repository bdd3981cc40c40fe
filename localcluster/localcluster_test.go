package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/shim"
)

// TestUpRefusesBadConfig: a bad name, node count or subnet is refused, saying
// which rule, before anything is made (no state file, no data dir).
func TestUpRefusesBadConfig(t *testing.T) {
	good := func() Config {
		dir := t.TempDir()
		return Config{Name: "ssitcfg", Nodes: 3, Subnet: "10.251.250.0/24", Binary: "/nonexistent/ssi",
			DataDir: filepath.Join(dir, "data"), StateDir: filepath.Join(dir, "state")}
	}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"empty name", func(c *Config) { c.Name = "" }, "name"},
		{"name too long", func(c *Config) { c.Name = "ssitabcdefg" }, "1-10 lower-case"},
		{"name with a dash", func(c *Config) { c.Name = "ssit-a" }, "name"},
		{"name starting with a digit", func(c *Config) { c.Name = "1ssit" }, "starting with a letter"},
		{"upper case", func(c *Config) { c.Name = "Ssit" }, "lower-case"},
		{"no nodes", func(c *Config) { c.Nodes = 0 }, "want 1 to 200"},
		{"too many nodes", func(c *Config) { c.Nodes = 201 }, "want 1 to 200"},
		{"not a prefix", func(c *Config) { c.Subnet = "10.251.250.0" }, "subnet"},
		{"IPv6", func(c *Config) { c.Subnet = "fd00::/64" }, "IPv4"},
		{"smaller than /24", func(c *Config) { c.Subnet = "10.251.250.0/25" }, "/24 or larger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(&c)
			st, _, err := Up(context.Background(), c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Up(%+v) = %v; want an error saying %q", c, err, tc.want)
			}
			if st != nil {
				t.Fatalf("Up returned a state with its error: %+v", st)
			}
			for _, dir := range []string{c.DataDir, c.StateDir} {
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s made despite the refusal (%v)", dir, err)
				}
			}
		})
	}
}

// TestStateFile: the state a cluster saves is what Load reads back; a cluster
// with no state file is os.ErrNotExist, a damaged one an error.
func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	st := &State{
		Name: "ssitst", Bridge: "ssitst-br", Subnet: "10.251.251.0/24", Binary: "/usr/local/bin/ssi", BinaryID: "abc",
		DataDir: filepath.Join(dir, "data"), StateDir: filepath.Join(dir, "state"), ConfigFile: filepath.Join(dir, "admin.json"),
		AgentArgs: []string{"--insecure"}, NodeArgs: map[string][]string{"node1": {"--balancer=false"}},
		Nodes: []NodeState{
			{Name: "node1", Namespace: "ssitst-node1", HostIf: "ssitst-v1", IP: "10.251.251.11", DataDir: filepath.Join(dir, "data", "node1"), Agent: shim.ProcID{PID: 123, Start: 456}},
			{Name: "node2", Namespace: "ssitst-node2", HostIf: "ssitst-v2", IP: "10.251.251.12", DataDir: filepath.Join(dir, "data", "node2")},
		},
	}
	if _, err := Load(st.StateDir, st.Name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load before save: %v, want os.ErrNotExist", err)
	}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	got, err := Load(st.StateDir, st.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("loaded %+v, saved %+v", got, st)
	}
	if got.Endpoint() != "10.251.251.11:7070" || !got.Insecure() || got.CgroupParent() != "/ssi-ssitst" {
		t.Fatalf("endpoint %s, insecure %v, cgroup parent %s", got.Endpoint(), got.Insecure(), got.CgroupParent())
	}
	if err := os.WriteFile(statePath(st.StateDir, st.Name), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(st.StateDir, st.Name); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a damaged state file: %v, want a decode error", err)
	}
}

// TestBinaryID: a binary is known by its content, not its path or time.
func TestBinaryID(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b, c := write("a", "build 1"), write("b", "build 1"), write("c", "build 2")
	if binaryID(a) == "" || binaryID(a) != binaryID(b) || binaryID(a) == binaryID(c) {
		t.Fatalf("ids: a %q, b (same content) %q, c (other content) %q", binaryID(a), binaryID(b), binaryID(c))
	}
	if id := binaryID(filepath.Join(dir, "absent")); id != "" {
		t.Fatalf("id of a missing file: %q", id)
	}
}

// TestDownOfNothing: Down of a cluster that was never up (no state file, no
// namespaces or links of its name) succeeds and removes nothing else; twice.
func TestDownOfNothing(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "state", "other.json")
	if err := os.MkdirAll(filepath.Dir(keep), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keep, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("ssit%d", os.Getpid()%1000000)
	for range 2 {
		if err := Down(context.Background(), filepath.Join(dir, "state"), name, nil); err != nil {
			t.Fatalf("Down of %s, never up: %v", name, err)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("Down of %s removed another cluster's state file: %v", name, err)
	}
}

// TestCheckEtcdMembers: 1 and odd counts up to the nodes pass; even counts,
// more members than nodes or than MaxEtcdMembers fail with an error that
// names the flag and what to pass instead; Up refuses them before it makes
// anything (no state file).
func TestCheckEtcdMembers(t *testing.T) {
	for _, tc := range []struct {
		members, nodes int
		want           string // "" = ok; else in the error
	}{
		{0, 3, ""}, {1, 1, ""}, {3, 3, ""}, {5, 6, ""},
		{2, 3, "pass --etcd-members 3 (survives the loss of 1) or 1"},
		{2, 2, "pass --etcd-members 1, or more nodes and --etcd-members 3"},
		{4, 5, "want an odd number"},
		{5, 3, "pass --nodes 5 or more, or --etcd-members 3 or fewer"},
		{3, 2, "--etcd-members 1 or fewer"},
		{9, 20, "at most 7"},
		{-1, 3, "want 1"},
	} {
		err := CheckEtcdMembers(tc.members, tc.nodes)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%d members, %d nodes: %v", tc.members, tc.nodes, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%d members, %d nodes: error %v, want one saying %q", tc.members, tc.nodes, err, tc.want)
		}
	}
	dir := t.TempDir()
	_, _, err := Up(context.Background(), Config{Name: "hat", Nodes: 3, EtcdMembers: 2, Subnet: "10.250.0.0/24", StateDir: dir, DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "--etcd-members 2") {
		t.Fatalf("Up with 2 members: %v, want the --etcd-members error", err)
	}
	if _, err := os.Stat(statePath(dir, "hat")); !os.IsNotExist(err) {
		t.Fatalf("Up with 2 members left a state file (err %v)", err)
	}
}

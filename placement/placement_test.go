package placement

import (
	"errors"
	"math/rand/v2"
	"testing"

	"pgregory.net/rapid"
)

func TestPlaceTable(t *testing.T) {
	nodes := []Node{
		{Name: "a", Ready: true, CPUs: 2, Memory: 4 << 30, Load: 1.5, Labels: map[string]string{"disk": "ssd"}},
		{Name: "b", Ready: true, CPUs: 2, Memory: 4 << 30, Load: 0.1},
		{Name: "c", Ready: false, CPUs: 8, Memory: 64 << 30},
	}
	rnd := rand.New(rand.NewPCG(1, 1))
	cases := []struct {
		name    string
		req     Request
		want    string
		wantErr error
	}{
		{"explicit node", Request{Node: "b"}, "b", nil},
		{"unknown node", Request{Node: "zz"}, "", ErrUnknownNode},
		{"not ready node", Request{Node: "c"}, "", ErrNotReady},
		{"constraint", Request{Constraints: map[string]string{"disk": "ssd"}}, "a", nil},
		{"constraint nobody has", Request{Constraints: map[string]string{"gpu": "yes"}}, "", ErrNoNode},
		{"too big", Request{Memory: 8 << 30}, "", ErrNoNode},
		{"least loaded", Request{Policy: LeastLoaded}, "b", nil},
		{"bad policy", Request{Policy: "fastest"}, "", ErrUnknownPolicy},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Place(nodes, c.req, rnd)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err=%v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestRandomSpreadsOverReadyNodes(t *testing.T) {
	nodes := []Node{{Name: "a", Ready: true}, {Name: "b", Ready: true}, {Name: "c", Ready: true}, {Name: "d"}}
	rnd := rand.New(rand.NewPCG(7, 7))
	count := map[string]int{}
	for range 3000 {
		n, err := Place(nodes, Request{}, rnd)
		if err != nil {
			t.Fatal(err)
		}
		count[n]++
	}
	if count["d"] != 0 {
		t.Fatalf("placed %d jobs on a NotReady node", count["d"])
	}
	for _, n := range []string{"a", "b", "c"} {
		if count[n] < 800 || count[n] > 1200 {
			t.Fatalf("random placement is skewed: %v", count)
		}
	}
}

// TestPlaceProperties: for any cluster and request, a chosen node is Ready, has the
// free capacity, carries the constraint labels and honours --node; and when Place
// refuses, no node satisfied all of that.
func TestPlaceProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 12).Draw(t, "nodes")
		nodes := make([]Node, n)
		for i := range nodes {
			nodes[i] = Node{
				Name:           string(rune('a' + i)),
				Ready:          rapid.Bool().Draw(t, "ready"),
				CPUs:           float64(rapid.IntRange(1, 16).Draw(t, "cpus")),
				Memory:         int64(rapid.IntRange(1, 64).Draw(t, "memGiB")) << 30,
				ReservedCPUs:   float64(rapid.IntRange(0, 16).Draw(t, "rcpus")),
				ReservedMemory: int64(rapid.IntRange(0, 64).Draw(t, "rmemGiB")) << 30,
				Load:           rapid.Float64Range(0, 16).Draw(t, "load"),
				Labels:         map[string]string{"zone": rapid.SampledFrom([]string{"x", "y"}).Draw(t, "zone")},
			}
		}
		req := Request{
			CPUs:   float64(rapid.IntRange(0, 8).Draw(t, "reqcpus")),
			Memory: int64(rapid.IntRange(0, 32).Draw(t, "reqmem")) << 30,
			Policy: rapid.SampledFrom(Policies).Draw(t, "policy"),
		}
		if rapid.Bool().Draw(t, "constrain") {
			req.Constraints = map[string]string{"zone": "x"}
		}
		if n > 0 && rapid.Bool().Draw(t, "pin") {
			req.Node = nodes[rapid.IntRange(0, n-1).Draw(t, "pinned")].Name
		}
		got, err := Place(nodes, req, rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 0)))
		eligible := func(nd Node) bool {
			return nd.Ready && Fits(nd, req) && Matches(nd, req.Constraints) && (req.Node == "" || nd.Name == req.Node)
		}
		if err != nil {
			for _, nd := range nodes {
				if eligible(nd) {
					t.Fatalf("refused (%v) although %s was eligible", err, nd.Name)
				}
			}
			return
		}
		for _, nd := range nodes {
			if nd.Name == got {
				if !eligible(nd) {
					t.Fatalf("placed on ineligible node %+v for %+v", nd, req)
				}
				return
			}
		}
		t.Fatalf("placed on %q, which is not in the snapshot", got)
	})
}

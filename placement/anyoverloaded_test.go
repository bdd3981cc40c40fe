package placement

import "testing"

func TestAnyOverloaded(t *testing.T) {
	node := func(name string, cpus, load float64) BalanceNode {
		return BalanceNode{Node: Node{Name: name, CPUs: cpus, Load: load, Ready: true}}
	}
	cfg := DefaultBalanceConfig()
	for _, tc := range []struct {
		name  string
		nodes []BalanceNode
		want  bool
	}{
		{"idle", []BalanceNode{node("a", 2, 0), node("b", 2, 0)}, false},
		{"busy but not above a job per core", []BalanceNode{node("a", 2, 2), node("b", 2, 0)}, false},
		{"above one per core, others idle", []BalanceNode{node("a", 2, 4), node("b", 2, 0)}, true},
		{"all equally overloaded", []BalanceNode{node("a", 2, 4), node("b", 2, 4)}, false},
		{"the only idle node NotReady", []BalanceNode{node("a", 2, 4), {Node: Node{Name: "b", CPUs: 2}}}, false},
		{"no nodes", nil, false},
	} {
		if got := AnyOverloaded(tc.nodes, cfg); got != tc.want {
			t.Errorf("%s: AnyOverloaded = %v, want %v", tc.name, got, tc.want)
		}
	}
}

package placement

import (
	"strings"
	"testing"
	"time"
)

// TestNoMoveAcrossProtocols: during a rolling upgrade that changes the
// migration protocol, the balancer and a drain move jobs only between nodes
// of one protocol, and say so when that leaves no target.
func TestNoMoveAcrossProtocols(t *testing.T) {
	busy := bnode("busy", 1, 4)
	newer := bnode("newer", 1, 0) // the idlest, but upgraded
	newer.Protocol = 2
	other := bnode("other", 1, 0.5)
	var jobs []BalanceJob
	for g := uint64(1); g <= 4; g++ {
		jobs = append(jobs, bjob(g, "busy", time.Hour))
	}
	plan := Balance([]BalanceNode{busy, newer, other}, jobs, BalanceConfig{})
	if len(plan.Moves) == 0 {
		t.Fatalf("no move: %+v", plan.Rejected)
	}
	for _, m := range plan.Moves {
		if m.To == "newer" {
			t.Fatalf("balancer moved gpid %d to a node of another protocol", m.GPID)
		}
	}
	plan = Balance([]BalanceNode{busy, newer}, jobs, BalanceConfig{})
	if len(plan.Moves) != 0 || len(plan.Rejected) == 0 || !strings.Contains(plan.Rejected[0].Reason, "another migration protocol") {
		t.Fatalf("only a target of another protocol: %+v", plan)
	}

	ev := []EvacuateJob{{BalanceJob: BalanceJob{GPID: 1, Node: "busy", Memory: 1 << 20}}}
	if p := Evacuate([]BalanceNode{busy, newer, other}, "busy", ev, 4, BalanceConfig{}); len(p.Moves) != 1 || p.Moves[0].To != "other" {
		t.Fatalf("drain: %+v, want gpid 1 to other", p)
	}
	p := Evacuate([]BalanceNode{busy, newer}, "busy", ev, 4, BalanceConfig{})
	if len(p.Moves) != 0 || len(p.Rejected) != 1 || !strings.Contains(p.Rejected[0].Reason, "1 run another migration protocol") {
		t.Fatalf("drain with only a target of another protocol: %+v", p)
	}
}

package placement

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestPlaceSkipsCordoned: no policy ever picks a cordoned node; naming one
// with --node is refused with ErrCordoned; all cordoned is ErrNoNode saying so.
func TestPlaceSkipsCordoned(t *testing.T) {
	nodes := []Node{
		{Name: "a", Ready: true, CPUs: 2, Memory: 4 << 30, Load: 0, Cordoned: true},
		{Name: "b", Ready: true, CPUs: 2, Memory: 4 << 30, Load: 1.9},
		{Name: "c", Ready: true, CPUs: 2, Memory: 4 << 30, Load: 1.5},
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, p := range Policies {
		for range 200 {
			got, err := Place(nodes, Request{Policy: p}, rnd)
			if err != nil || got == "a" {
				t.Fatalf("%s: placed on %q, %v", p, got, err)
			}
		}
	}
	if _, err := Place(nodes, Request{Node: "a"}, rnd); !errors.Is(err, ErrCordoned) || !strings.Contains(err.Error(), "uncordon a") {
		t.Fatalf("--node a: %v, want ErrCordoned naming the way out", err)
	}
	nodes[1].Cordoned, nodes[2].Cordoned = true, true
	if _, err := Place(nodes, Request{}, rnd); !errors.Is(err, ErrNoNode) || !strings.Contains(err.Error(), "cordoned") {
		t.Fatalf("all cordoned: %v", err)
	}
}

// TestBalanceNeverTargetsCordoned: the idlest node is cordoned; the balancer
// moves to the other one, or says the cordon is why it cannot.
func TestBalanceNeverTargetsCordoned(t *testing.T) {
	busy := bnode("busy", 1, 4)
	idle := bnode("idle", 1, 0)
	idle.Cordoned = true
	other := bnode("other", 1, 0.5)
	var jobs []BalanceJob
	for g := uint64(1); g <= 4; g++ {
		jobs = append(jobs, bjob(g, "busy", time.Hour))
	}
	plan := Balance([]BalanceNode{busy, idle, other}, jobs, BalanceConfig{})
	if len(plan.Moves) == 0 {
		t.Fatalf("no move: %+v", plan.Rejected)
	}
	for _, m := range plan.Moves {
		if m.To == "idle" {
			t.Fatalf("moved gpid %d onto the cordoned node", m.GPID)
		}
	}
	plan = Balance([]BalanceNode{busy, idle}, jobs, BalanceConfig{})
	if len(plan.Moves) != 0 || len(plan.Rejected) == 0 || !strings.Contains(plan.Rejected[0].Reason, "cordoned") {
		t.Fatalf("only a cordoned target: %+v", plan)
	}
}

// TestEvacuate: moves go smallest first, at most slots of them, spread over
// the targets, never to the source or a cordoned node; unmovable jobs and
// jobs no node can take are rejected with the reason; big jobs go post-copy.
func TestEvacuate(t *testing.T) {
	nodes := []BalanceNode{bnode("src", 4, 2), bnode("t1", 4, 0), bnode("t2", 4, 0), bnode("t3", 4, 0)}
	nodes[3].Cordoned = true
	nodes[1].Labels = map[string]string{"gpu": "1"}
	job := func(g uint64, mem int64) EvacuateJob {
		return EvacuateJob{BalanceJob: BalanceJob{GPID: g, Node: "src", Memory: mem, Demand: 0}}
	}
	jobs := []EvacuateJob{job(1, 300<<20), job(2, 10<<20), job(3, 20<<20), job(4, 1<<30), job(5, 5<<20)}
	jobs = append(jobs, EvacuateJob{BalanceJob: BalanceJob{GPID: 6, Node: "src"}, Unmovable: "it has a terminal"})
	j7 := job(7, 1<<20)
	j7.Constraints = map[string]string{"disk": "nvme"}
	jobs = append(jobs, j7)
	j8 := job(8, 1<<20)
	j8.Migrating = true
	jobs = append(jobs, j8)

	plan := Evacuate(nodes, "src", jobs, 3, BalanceConfig{})
	var got []uint64
	per := map[string]int{}
	for _, m := range plan.Moves {
		got = append(got, m.GPID)
		per[m.To]++
		if m.To == "src" || m.To == "t3" {
			t.Fatalf("move to %s", m.To)
		}
	}
	if len(got) != 3 || got[0] != 5 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("moves %v, want the 3 smallest movable (5, 2, 3); plan %+v", got, plan)
	}
	if per["t1"] == 0 || per["t2"] == 0 {
		t.Fatalf("not spread: %v", per)
	}
	reasons := map[uint64]string{}
	for _, r := range plan.Rejected {
		reasons[r.GPID] = r.Reason
	}
	if !strings.Contains(reasons[6], "terminal") || !strings.Contains(reasons[7], "lack labels disk=nvme") || !strings.Contains(reasons[7], "1 cordoned") {
		t.Fatalf("rejections %v", reasons)
	}
	if _, ok := reasons[8]; ok {
		t.Fatal("a job in flight was rejected")
	}
	all := Evacuate(nodes, "src", jobs, 100, BalanceConfig{})
	for _, m := range all.Moves {
		if m.GPID == 4 && !m.PostCopy {
			t.Fatalf("1 GiB job moves stop-and-copy: %+v", m)
		}
		if m.GPID == 5 && m.PostCopy {
			t.Fatalf("5 MiB job moves post-copy: %+v", m)
		}
	}
	if len(all.Moves) != 5 {
		t.Fatalf("with room for all: %d moves, want 5", len(all.Moves))
	}
	only := Evacuate(nodes[:1], "src", jobs[:1], 1, BalanceConfig{})
	if len(only.Moves) != 0 || !strings.Contains(only.Rejected[0].Reason, "no other Ready node") {
		t.Fatalf("single node: %+v", only)
	}
}

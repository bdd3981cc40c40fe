package placement

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func bnode(name string, cpus, load float64) BalanceNode {
	return BalanceNode{Node: Node{Name: name, Ready: true, CPUs: cpus, Memory: 64 << 30, Load: load}}
}

func bjob(gpid uint64, node string, age time.Duration) BalanceJob {
	return BalanceJob{GPID: gpid, Node: node, Age: age, Resident: age, Demand: 1, Memory: 64 << 20}
}

func TestBalanceDefaults(t *testing.T) {
	d := DefaultBalanceConfig()
	if got := (BalanceConfig{}).WithDefaults(); got != d {
		t.Fatalf("zero config with defaults = %+v, want %+v", got, d)
	}
	custom := BalanceConfig{Residency: time.Minute, Hysteresis: 1}
	got := custom.WithDefaults()
	if got.Residency != time.Minute || got.Hysteresis != 1 || got.MaxInflightPerNode != d.MaxInflightPerNode {
		t.Fatalf("WithDefaults overwrote set fields or missed zero ones: %+v", got)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (BalanceConfig{Hysteresis: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "Hysteresis") {
		t.Fatalf("negative hysteresis: %v", err)
	}
	if got, want := MigrationCost(250e6, d), 1200*time.Millisecond; got != want {
		t.Fatalf("MigrationCost(250 MB) = %s, want %s", got, want)
	}
}

func TestBalanceTable(t *testing.T) {
	old := 10 * time.Minute
	cases := []struct {
		name      string
		nodes     []BalanceNode
		jobs      []BalanceJob
		cfg       BalanceConfig
		moves     []string // "gpid:from->to"
		rejectHas map[uint64]string
		check     func(*testing.T, Plan)
	}{
		{
			name:  "one overloaded, one idle",
			nodes: []BalanceNode{bnode("a", 1, 2), bnode("b", 1, 0)},
			jobs:  []BalanceJob{bjob(1, "a", old), bjob(2, "a", old/2)},
			moves: []string{"1:a->b"},
			// The second is refused: the source has a move in flight (K=1).
			rejectHas: map[uint64]string{2: "in flight"},
		},
		{
			name:      "balanced cluster: nothing considered",
			nodes:     []BalanceNode{bnode("a", 2, 2), bnode("b", 2, 2)},
			jobs:      []BalanceJob{bjob(1, "a", old), bjob(2, "b", old)},
			rejectHas: map[uint64]string{},
		},
		{
			name:      "pinned, migrating, young, idle",
			nodes:     []BalanceNode{bnode("a", 1, 4), bnode("b", 1, 0)},
			jobs:      []BalanceJob{{GPID: 1, Node: "a", Age: old, Resident: old, Demand: 1, Pinned: true}, {GPID: 2, Node: "a", Age: old, Resident: old, Demand: 1, Migrating: true}, {GPID: 3, Node: "a", Age: old, Resident: time.Second, Moved: true, Demand: 1}, {GPID: 4, Node: "a", Age: old, Resident: old}},
			rejectHas: map[uint64]string{1: "pinned", 2: "already migrating", 3: "residency", 4: "no CPU demand"},
		},
		{
			name:      "a job whose move failed is backed off; the round moves another",
			nodes:     []BalanceNode{bnode("a", 1, 3), bnode("b", 1, 0)},
			jobs:      []BalanceJob{{GPID: 1, Node: "a", Age: old, Resident: old, Demand: 1, BackedOff: 20 * time.Second}, bjob(2, "a", old)},
			moves:     []string{"2:a->b"},
			rejectHas: map[uint64]string{1: "backed off for 20s more"},
		},
		{
			name:  "a big job whose stop-and-copy freeze would exceed the budget moves post-copy",
			nodes: []BalanceNode{bnode("a", 1, 2), bnode("b", 1, 0)},
			jobs:  []BalanceJob{{GPID: 1, Node: "a", Age: time.Hour, Resident: time.Hour, Demand: 1, Memory: 2 << 30}},
			moves: []string{"1:a->b"},
			check: func(t *testing.T, p Plan) {
				if !p.Moves[0].PostCopy || !strings.Contains(p.Moves[0].Reason, "post-copy") {
					t.Errorf("a 2 GiB job (8.8 s by stop-and-copy at 250 MB/s) moves %+v", p.Moves[0])
				}
			},
		},
		{
			name:  "a small job moves stop-and-copy",
			nodes: []BalanceNode{bnode("a", 1, 2), bnode("b", 1, 0)},
			jobs:  []BalanceJob{{GPID: 1, Node: "a", Age: time.Hour, Resident: time.Hour, Demand: 1, Memory: 64 << 20}},
			moves: []string{"1:a->b"},
			check: func(t *testing.T, p Plan) {
				if p.Moves[0].PostCopy {
					t.Errorf("a 64 MiB job moves post-copy: %+v", p.Moves[0])
				}
			},
		},
		{
			name:      "too young to pay for its memory",
			nodes:     []BalanceNode{bnode("a", 1, 2), bnode("b", 1, 0)},
			jobs:      []BalanceJob{{GPID: 1, Node: "a", Age: 20 * time.Second, Resident: 20 * time.Second, Demand: 1, Memory: 8 << 30}},
			rejectHas: map[uint64]string{1: "≤ cost"},
		},
		{
			name:  "never to a NotReady node",
			nodes: []BalanceNode{bnode("a", 1, 3), {Node: Node{Name: "dead", CPUs: 8}}, bnode("c", 1, 1)},
			jobs:  []BalanceJob{bjob(1, "a", old)},
			moves: []string{"1:a->c"},
		},
		{
			name:      "within the hysteresis",
			nodes:     []BalanceNode{bnode("a", 4, 4.8), bnode("b", 4, 4)},
			jobs:      []BalanceJob{bjob(1, "a", old)},
			rejectHas: map[uint64]string{},
		},
		{
			name:      "constraints: the only idle node lacks the label",
			nodes:     []BalanceNode{bnode("a", 1, 3), bnode("b", 1, 0)},
			jobs:      []BalanceJob{{GPID: 1, Node: "a", Age: old, Resident: old, Demand: 1, Constraints: map[string]string{"gpu": "yes"}}},
			rejectHas: map[uint64]string{1: "lack labels gpu=yes"},
		},
		{
			name:  "one round spreads over targets",
			nodes: []BalanceNode{bnode("a", 1, 3), bnode("b", 1, 3), bnode("c", 1, 0), bnode("d", 1, 0.2)},
			jobs:  []BalanceJob{bjob(1, "a", old), bjob(2, "b", old)},
			moves: []string{"1:a->c", "2:b->d"},
		},
		{
			name:      "round limit",
			nodes:     []BalanceNode{bnode("a", 1, 3), bnode("b", 1, 3), bnode("c", 1, 0), bnode("d", 1, 0)},
			jobs:      []BalanceJob{bjob(1, "a", old), bjob(2, "b", old)},
			cfg:       BalanceConfig{MaxMovesPerRound: 1},
			moves:     []string{"1:a->c"},
			rejectHas: map[uint64]string{2: "round full"},
		},
		{
			name:  "garbage in: NaN load, NaN demand, unknown node",
			nodes: []BalanceNode{bnode("a", 1, 3), bnode("nan", 1, math.NaN()), bnode("c", 1, 0)},
			jobs: []BalanceJob{
				{GPID: 1, Node: "a", Age: old, Resident: old, Demand: math.NaN()},
				bjob(2, "a", old/2), bjob(3, "nowhere", old), bjob(4, "nan", old),
			},
			moves:     []string{"2:a->c"},
			rejectHas: map[uint64]string{1: "no CPU demand"},
		},
		{
			name:      "target busy with another migration",
			nodes:     []BalanceNode{bnode("a", 1, 3), {Node: bnode("b", 1, 0).Node, Inflight: 1}},
			jobs:      []BalanceJob{bjob(1, "a", old)},
			rejectHas: map[uint64]string{1: "in flight"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Balance(c.nodes, c.jobs, c.cfg)
			var got []string
			for _, m := range p.Moves {
				got = append(got, fmt.Sprintf("%d:%s->%s", m.GPID, m.From, m.To))
				if m.Reason == "" || m.Gain <= m.Cost {
					t.Errorf("move %+v: no reason or gain ≤ cost", m)
				}
			}
			if !reflect.DeepEqual(got, c.moves) {
				t.Fatalf("moves %v, want %v (rejected %+v)", got, c.moves, p.Rejected)
			}
			for gpid, want := range c.rejectHas {
				found := false
				for _, r := range p.Rejected {
					if r.GPID == gpid {
						found = true
						if !strings.Contains(r.Reason, want) {
							t.Errorf("job %d rejected for %q, want it to mention %q", gpid, r.Reason, want)
						}
					}
				}
				if !found {
					t.Errorf("job %d not in Rejected %+v", gpid, p.Rejected)
				}
			}
			if c.rejectHas != nil && len(c.rejectHas) == 0 && len(p.Rejected) != 0 {
				t.Errorf("rejections on a cluster with no source: %+v", p.Rejected)
			}
			if c.check != nil {
				c.check(t, p)
			}
		})
	}
}

// genCluster draws a cluster and jobs whose node loads are the sums of their demands.
func genCluster(t *rapid.T) ([]BalanceNode, []BalanceJob, BalanceConfig) {
	n := rapid.IntRange(1, 10).Draw(t, "nodes")
	nodes := make([]BalanceNode, n)
	for i := range nodes {
		nodes[i] = BalanceNode{
			Node: Node{
				Name:   fmt.Sprintf("n%d", i),
				Ready:  rapid.IntRange(0, 9).Draw(t, "notReady") < 8,
				CPUs:   float64(rapid.IntRange(1, 4).Draw(t, "cpus")),
				Memory: int64(rapid.IntRange(1, 16).Draw(t, "memGiB")) << 30,
				Labels: map[string]string{"zone": rapid.SampledFrom([]string{"x", "y"}).Draw(t, "zone")},
			},
			Inflight: max(0, rapid.IntRange(0, 5).Draw(t, "inflight")-3),
		}
	}
	nj := rapid.IntRange(0, 30).Draw(t, "jobs")
	jobs := make([]BalanceJob, nj)
	for i := range jobs {
		age := time.Duration(rapid.IntRange(0, 3600).Draw(t, "ageS")) * time.Second
		j := BalanceJob{
			GPID:          uint64(i + 1),
			Node:          nodes[rapid.IntRange(0, n-1).Draw(t, "on")].Name,
			Age:           age,
			Resident:      max(0, age-time.Duration(rapid.IntRange(0, 100).Draw(t, "sinceMoveS"))*time.Second),
			Moved:         rapid.Bool().Draw(t, "moved"),
			Demand:        rapid.SampledFrom([]float64{0, 0.5, 1, 1, 1, 2}).Draw(t, "demand"),
			Memory:        int64(rapid.IntRange(1, 4096).Draw(t, "memMiB")) << 20,
			CPUs:          float64(rapid.IntRange(0, 2).Draw(t, "reqcpus")),
			MemoryRequest: int64(rapid.IntRange(0, 4).Draw(t, "reqmemGiB")) << 30,
			Pinned:        rapid.IntRange(0, 9).Draw(t, "pinned") == 9,
			Migrating:     rapid.IntRange(0, 9).Draw(t, "migrating") == 9,
		}
		if rapid.IntRange(0, 9).Draw(t, "constrained") >= 7 {
			j.Constraints = map[string]string{"zone": "x"}
		}
		jobs[i] = j
	}
	// Loads and reservations are those of the jobs, plus some outside load.
	for i := range nodes {
		nodes[i].Load = float64(rapid.IntRange(0, 2).Draw(t, "extraLoad"))
	}
	for _, j := range jobs {
		for i := range nodes {
			if nodes[i].Name == j.Node {
				nodes[i].Load += j.Demand
				nodes[i].ReservedCPUs += j.CPUs
				nodes[i].ReservedMemory += j.MemoryRequest
				nodes[i].Jobs++
			}
		}
	}
	cfg := BalanceConfig{
		Residency:          time.Duration(rapid.IntRange(0, 60).Draw(t, "residencyS")) * time.Second,
		MaxInflightPerNode: rapid.IntRange(0, 3).Draw(t, "k"),
		MaxMovesPerRound:   rapid.IntRange(0, 6).Draw(t, "maxMoves"),
		Hysteresis:         rapid.SampledFrom([]float64{0, 0.1, 0.25, 1}).Draw(t, "hysteresis"),
	}
	return nodes, jobs, cfg
}

// TestBalanceProperties: for any cluster, every move goes from the job's node
// to another Ready node that carries its labels and has room for its request
// (given the moves before it in the plan), never moves a pinned, migrating or
// not yet resident job, keeps every node within its in-flight cap and the
// round within its move cap, has gain > cost with the documented cost; every
// job considered gets exactly one decision; and the plan does not depend on
// the order of the input.
func TestBalanceProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes, jobs, cfg := genCluster(t)
		plan := Balance(nodes, jobs, cfg)
		full := cfg.WithDefaults()

		state := make(map[string]BalanceNode)
		for _, n := range nodes {
			state[n.Name] = n
		}
		byGPID := make(map[uint64]BalanceJob)
		for _, j := range jobs {
			byGPID[j.GPID] = j
		}
		if len(plan.Moves) > full.MaxMovesPerRound {
			t.Fatalf("%d moves > MaxMovesPerRound %d", len(plan.Moves), full.MaxMovesPerRound)
		}
		decided := make(map[uint64]int)
		for _, m := range plan.Moves {
			decided[m.GPID]++
			j, ok := byGPID[m.GPID]
			if !ok {
				t.Fatalf("move of unknown job %d", m.GPID)
			}
			from, to := state[m.From], state[m.To]
			switch {
			case m.From != j.Node:
				t.Fatalf("move %+v: job is on %s", m, j.Node)
			case m.From == m.To:
				t.Fatalf("move to itself: %+v", m)
			case !to.Ready:
				t.Fatalf("move to NotReady node: %+v", m)
			case !from.Ready:
				t.Fatalf("move from NotReady node: %+v", m)
			case !Matches(to.Node, j.Constraints):
				t.Fatalf("move %+v breaks constraints %v (labels %v)", m, j.Constraints, to.Labels)
			case !Fits(to.Node, Request{CPUs: j.CPUs, Memory: j.MemoryRequest}):
				t.Fatalf("move %+v overfills %+v with cpus=%g mem=%d", m, to.Node, j.CPUs, j.MemoryRequest)
			case j.Pinned || j.Migrating || (j.Moved && j.Resident < full.Residency) || j.Demand <= 0:
				t.Fatalf("moved an ineligible job %+v", j)
			case m.Gain <= m.Cost:
				t.Fatalf("move %+v: gain ≤ cost", m)
			case m.Cost != MigrationCost(j.Memory, full):
				t.Fatalf("move %+v: cost, want %s", m, MigrationCost(j.Memory, full))
			case m.Gain > j.Age:
				t.Fatalf("move %+v: gain beyond the job's age %s", m, j.Age)
			case LoadPerCore(from.Node)-LoadPerCore(to.Node) <= full.Hysteresis:
				t.Fatalf("move %+v within the hysteresis: %g vs %g", m, from.Load, to.Load)
			}
			from.Load -= j.Demand
			from.ReservedCPUs -= j.CPUs
			from.ReservedMemory -= j.MemoryRequest
			from.Inflight++
			to.Load += j.Demand
			to.ReservedCPUs += j.CPUs
			to.ReservedMemory += j.MemoryRequest
			to.Inflight++
			state[m.From], state[m.To] = from, to
		}
		// Inflight: a node that had room may reach the cap, not exceed it;
		// a node already at or over it gets no new migration.
		for _, n := range nodes {
			after := state[n.Name].Inflight
			if after > n.Inflight && after > full.MaxInflightPerNode {
				t.Fatalf("node %s: %d migrations in flight after the plan (was %d, cap %d)", n.Name, after, n.Inflight, full.MaxInflightPerNode)
			}
		}
		for _, r := range plan.Rejected {
			decided[r.GPID]++
			if r.Reason == "" {
				t.Fatalf("rejection without a reason: %+v", r)
			}
			if byGPID[r.GPID].Node != r.Node {
				t.Fatalf("rejection %+v names the wrong node", r)
			}
		}
		for gpid, k := range decided {
			if k != 1 {
				t.Fatalf("job %d has %d decisions", gpid, k)
			}
		}
		// Order independence.
		rnd := rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "shuffle"), 1))
		n2 := append([]BalanceNode(nil), nodes...)
		j2 := append([]BalanceJob(nil), jobs...)
		rnd.Shuffle(len(n2), func(a, b int) { n2[a], n2[b] = n2[b], n2[a] })
		rnd.Shuffle(len(j2), func(a, b int) { j2[a], j2[b] = j2[b], j2[a] })
		if p2 := Balance(n2, j2, cfg); !reflect.DeepEqual(plan, p2) {
			t.Fatalf("plan depends on input order:\n%+v\n%+v", plan, p2)
		}
	})
}

// TestBalanceRoundsProperties runs the balancer round after round on a
// cluster whose moves complete instantly, and checks that no job is moved
// again (in particular, back) within the residency period. (It does not ask
// the rounds to settle: jobs age, and an older job may pay for a move that
// did not pay before.)
func TestBalanceRoundsProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes, jobs, cfg := genCluster(t)
		full := cfg.WithDefaults()
		for i := range nodes {
			nodes[i].Inflight = 0
		}
		for i := range jobs {
			jobs[i].Migrating = false
		}
		lastMove := make(map[uint64]time.Duration) // gpid -> time of the last move
		const tick = time.Second
		rounds := 120
		for r := range rounds {
			now := time.Duration(r) * tick
			plan := Balance(nodes, jobs, cfg)
			for _, m := range plan.Moves {
				if at, ok := lastMove[m.GPID]; ok && now-at < full.Residency {
					t.Fatalf("round %d: job %d moved again %s after its last move (residency %s)", r, m.GPID, now-at, full.Residency)
				}
				lastMove[m.GPID] = now
				for i := range jobs {
					if jobs[i].GPID == m.GPID {
						jobs[i].Node = m.To
						jobs[i].Resident, jobs[i].Moved = 0, true
						for k := range nodes {
							switch nodes[k].Name {
							case m.From:
								nodes[k].Load -= jobs[i].Demand
								nodes[k].ReservedCPUs -= jobs[i].CPUs
								nodes[k].ReservedMemory -= jobs[i].MemoryRequest
								nodes[k].Jobs--
							case m.To:
								nodes[k].Load += jobs[i].Demand
								nodes[k].ReservedCPUs += jobs[i].CPUs
								nodes[k].ReservedMemory += jobs[i].MemoryRequest
								nodes[k].Jobs++
							}
						}
					}
				}
			}
			for i := range jobs {
				jobs[i].Age += tick
				jobs[i].Resident += tick
			}
		}
	})
}

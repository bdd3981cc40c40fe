package service

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func svcOf(replicas int, spread, restart string) pidtable.Service {
	spec := pidtable.ServiceSpec{Argv: []string{"/bin/sleep", "1000"}, Replicas: replicas, Spread: spread, Restart: restart}
	Defaults(&spec)
	return pidtable.Service{Name: "web", Owner: "alice", Spec: spec, Hash: Hash(spec), RunHash: RunHash(spec), Generation: 1}
}

func rep(gpid uint64, node string, state pidtable.State, hash string) pidtable.Proc {
	return pidtable.Proc{GPID: gpid, Node: node, State: state, Service: "web", ServiceHash: hash, Started: t0.Add(-time.Hour)}
}

func exited(gpid uint64, node string, code int, ran time.Duration) pidtable.Proc {
	p := rep(gpid, node, pidtable.Exited, "")
	p.ExitCode, p.Ended, p.Started = &code, t0.Add(-time.Second), t0.Add(-time.Second-ran)
	return p
}

func nodes(names ...string) []Node {
	var out []Node
	for _, n := range names {
		out = append(out, Node{Name: n, Ready: true})
	}
	return out
}

func TestDecide(t *testing.T) {
	web := svcOf(3, pidtable.SpreadNode, pidtable.RestartAlways)
	h := web.RunHash
	for _, tc := range []struct {
		name      string
		svc       pidtable.Service
		status    pidtable.ServiceStatus
		replicas  []pidtable.Proc
		nodes     []Node
		start     []string
		stop      []uint64
		state     string
		wake      bool
		restarts  int
		failures  int
		msg       string
		completed int
	}{
		{name: "new service: one per node", svc: web, nodes: nodes("n1", "n2", "n3"), start: []string{"n1", "n2", "n3"}, state: StateStarting},
		{name: "cordoned node: no new replica there, its replica still counts", svc: web, status: pidtable.ServiceStatus{Generation: 1}, replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, h)}, nodes: []Node{{Name: "n1", Ready: true, Cordoned: true}, {Name: "n2", Ready: true, Cordoned: true}, {Name: "n3", Ready: true}}, start: []string{"n3"}, state: StateDegraded, msg: "1 replicas cannot be placed: Spread=node and only 1 eligible nodes"},
		{name: "every node cordoned", svc: web, nodes: []Node{{Name: "n1", Ready: true, Cordoned: true}}, state: StateDegraded, msg: "every ready node is cordoned"},
		{name: "steady", svc: web, status: pidtable.ServiceStatus{Generation: 1}, replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, h), rep(2, "n2", pidtable.Running, h), rep(3, "n3", pidtable.Running, h)}, nodes: nodes("n1", "n2", "n3"), state: StateRunning},
		{name: "scale up, spread shortfall", svc: svcOf(5, pidtable.SpreadNode, pidtable.RestartAlways), replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, h)}, nodes: nodes("n1", "n2", "n3"), start: []string{"n2", "n3"}, state: StateDegraded, msg: "2 replicas cannot be placed: Spread=node and only 3 eligible nodes"},
		{name: "scale up, spread any: fewest per node", svc: svcOf(5, pidtable.SpreadAny, pidtable.RestartAlways), replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, h)}, nodes: nodes("n1", "n2"), start: []string{"n2", "n1", "n2", "n1"}, state: StateStarting},
		{name: "scale down: newest first, crowded nodes first", svc: svcOf(1, pidtable.SpreadAny, pidtable.RestartAlways), replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, h), rep(2, "n2", pidtable.Running, h), rep(3, "n2", pidtable.Running, h)}, nodes: nodes("n1", "n2"), stop: []uint64{3, 2}, state: StateRunning},
		{name: "scale to zero", svc: svcOf(0, pidtable.SpreadAny, pidtable.RestartAlways), replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, h)}, nodes: nodes("n1"), stop: []uint64{1}, state: StateRunning},
		{name: "crash: restart after RestartSec", svc: web, status: pidtable.ServiceStatus{Generation: 1}, replicas: []pidtable.Proc{exited(1, "n1", 137, time.Second), rep(2, "n2", pidtable.Running, h), rep(3, "n3", pidtable.Running, h)}, nodes: nodes("n1", "n2", "n3"), start: []string{"n1"}, restarts: 1, failures: 1, state: StateStarting},
		{name: "crash loop: backoff holds the start", svc: web, status: pidtable.ServiceStatus{Generation: 1, Failures: 4, Handled: []uint64{1}}, replicas: []pidtable.Proc{exited(1, "n1", 1, 0), exited(4, "n1", 1, 0), rep(2, "n2", pidtable.Running, h), rep(3, "n3", pidtable.Running, h)}, nodes: nodes("n1", "n2", "n3"), wake: true, restarts: 1, failures: 5, state: StateCrashLoop},
		{name: "on-failure: clean exit completes", svc: svcOf(2, pidtable.SpreadAny, pidtable.RestartOnFailure), replicas: []pidtable.Proc{exited(1, "n1", 0, time.Minute), rep(2, "n2", pidtable.Running, h)}, nodes: nodes("n1", "n2"), completed: 1, state: StateRunning},
		{name: "restart=no: failure not restarted", svc: svcOf(1, pidtable.SpreadAny, pidtable.RestartNo), replicas: []pidtable.Proc{exited(1, "n1", 3, time.Minute)}, nodes: nodes("n1"), completed: 1, failures: 1, state: StateStopped},
		{name: "node death: replaced elsewhere", svc: web, replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, h), rep(2, "n2", pidtable.Running, h), rep(3, "n3", pidtable.Running, h)}, nodes: append(nodes("n1", "n2", "n4"), Node{Name: "n3"}), start: []string{"n4"}, state: StateStarting},
		{name: "node death, CheckpointEvery: left to failover, not replaced", svc: web, replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, h), rep(2, "n2", pidtable.Running, h), func() pidtable.Proc {
			r := rep(3, "n3", pidtable.Running, h)
			r.CheckpointEvery = time.Minute
			return r
		}()}, nodes: append(nodes("n1", "n2", "n4"), Node{Name: "n3"}), state: StateStarting, msg: "1 replicas on dead nodes being restored"},
		{name: "node returns: the replaced replica is stopped", svc: web, status: pidtable.ServiceStatus{Generation: 1, Handled: []uint64{3}}, replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, h), rep(2, "n2", pidtable.Running, h), rep(3, "n3", pidtable.Running, h), rep(4, "n4", pidtable.Running, h)}, nodes: nodes("n1", "n2", "n3", "n4"), stop: []uint64{3}, state: StateRunning},
		{name: "constraint no node meets", svc: func() pidtable.Service { s := web; s.Spec.Constraints = map[string]string{"zone": "b"}; return s }(), nodes: nodes("n1"), state: StateDegraded, msg: "no ready node has the labels zone=b"},
		{name: "rolling: one new first", svc: web, status: pidtable.ServiceStatus{Generation: 1}, replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, "old"), rep(2, "n2", pidtable.Running, "old")}, nodes: nodes("n1", "n2", "n3"), start: []string{"n3"}, state: StateUpdating},
		{name: "rolling: then an old one stops", svc: web, status: pidtable.ServiceStatus{Generation: 1}, replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, "old"), rep(2, "n2", pidtable.Running, "old"), rep(3, "n3", pidtable.Running, "old"), rep(4, "n4", pidtable.Running, h)}, nodes: nodes("n1", "n2", "n3", "n4"), stop: []uint64{3}, state: StateUpdating},
		{name: "removing: everything stops", svc: func() pidtable.Service { s := web; s.Removing = true; return s }(), replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, h)}, nodes: nodes("n1"), stop: []uint64{1}, state: StateRemoving},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.svc.Spec.Replicas == 3 && tc.name == "rolling: then an old one stops" {
				tc.svc.Spec.Spread = pidtable.SpreadAny
			}
			p := Decide(Input{Now: t0, Service: tc.svc, Status: tc.status, Replicas: tc.replicas, Nodes: tc.nodes})
			var stops []uint64
			for _, s := range p.Stop {
				stops = append(stops, s.GPID)
			}
			if !slices.Equal(p.Start, tc.start) || !slices.Equal(stops, tc.stop) {
				t.Fatalf("start %v stop %v, want %v %v (events %q)", p.Start, stops, tc.start, tc.stop, p.Events)
			}
			st := p.Status
			if st.State != tc.state || (tc.wake != !p.Wake.IsZero()) || st.Restarts != tc.restarts || st.Failures != tc.failures || st.Completed != tc.completed || !strings.Contains(st.Message, tc.msg) {
				t.Fatalf("status %+v wake %v", st, p.Wake)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	for f, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 7: MaxBackoff, 100: MaxBackoff} {
		if got := Backoff(time.Second, f); got != want {
			t.Errorf("Backoff(1s, %d) = %s, want %s", f, got, want)
		}
	}
}

// TestStoppedReplicaNotCounted: a replica the controller stops is handled
// at once, so its end is no failure and no restart.
func TestStoppedReplicaNotCounted(t *testing.T) {
	s := svcOf(1, pidtable.SpreadAny, pidtable.RestartAlways)
	p := Decide(Input{Now: t0, Service: s, Replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, s.RunHash), rep(2, "n1", pidtable.Running, s.RunHash)}, Nodes: nodes("n1")})
	if len(p.Stop) != 1 || p.Stop[0].GPID != 2 {
		t.Fatalf("stop %v", p.Stop)
	}
	p = Decide(Input{Now: t0, Service: s, Status: p.Status, Replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, s.RunHash), exited(2, "n1", 143, time.Second)}, Nodes: nodes("n1")})
	if len(p.Start) != 0 || p.Status.Restarts != 0 || p.Status.Failures != 0 {
		t.Fatalf("plan %+v", p)
	}
}

// TestDrainedReplicaReplaced: a replica its node's drain asks to replace
// (Migratable=no) keeps running while a replacement starts elsewhere, and is
// stopped once the service runs its count without it; with no room
// elsewhere it stays.
func TestDrainedReplicaReplaced(t *testing.T) {
	web := svcOf(2, pidtable.SpreadAny, pidtable.RestartAlways)
	h := web.RunHash
	st := pidtable.ServiceStatus{Generation: 1}
	drained := []Node{{Name: "n1", Ready: true}, {Name: "n2", Ready: true, Cordoned: true, Replacing: []uint64{2}}, {Name: "n3", Ready: true}}
	in := Input{Now: t0, Service: web, Status: st, Nodes: drained,
		Replicas: []pidtable.Proc{rep(1, "n1", pidtable.Running, h), rep(2, "n2", pidtable.Running, h)}}
	p := Decide(in)
	if len(p.Stop) != 0 || len(p.Start) != 1 || p.Start[0] == "n2" {
		t.Fatalf("first plan: start %v, stop %v; want one start off n2 and no stop", p.Start, p.Stop)
	}
	if !strings.Contains(p.Status.Message, "being replaced") {
		t.Fatalf("status: %+v", p.Status)
	}
	// The replacement runs: the drained replica is stopped.
	in.Status = p.Status
	in.Replicas = append(in.Replicas, rep(3, p.Start[0], pidtable.Running, h))
	p = Decide(in)
	if len(p.Start) != 0 || len(p.Stop) != 1 || p.Stop[0].GPID != 2 {
		t.Fatalf("second plan: start %v, stop %v; want gpid 2 stopped", p.Start, p.Stop)
	}
	// No room elsewhere (every other node cordoned): it stays.
	in.Status, in.Replicas = st, in.Replicas[:2]
	in.Nodes = []Node{{Name: "n1", Ready: true, Cordoned: true}, {Name: "n2", Ready: true, Cordoned: true, Replacing: []uint64{2}}}
	if p := Decide(in); len(p.Stop) != 0 || len(p.Start) != 0 {
		t.Fatalf("no room: start %v, stop %v; want the replica left running", p.Start, p.Stop)
	}
}

//go:build soak

package e2e

// The failover fault campaign (issue 9's Proof: "at least 50 injected
// faults ... count lost and duplicated processes"): `make soak-failover`
// (hack/soak-failover.sh) runs TestFailoverCampaign, and only it, on a
// four-node cluster of its own name and subnet; `make test` does not build
// this file.
//
// A 3-replica service (Spread=node: one replica on each of three of the
// four nodes) runs throughout. Each fault starts a fresh checkpointed job
// (testdata/counter.py, 16 MiB checked by digest, 100 ticks of 0.2 s,
// --checkpoint-every 3s) on the fault's target (node2..node4 in turn,
// shifted by one every round of kinds so that each kind hits every node;
// node1 runs etcd and is never hit), waits for a copy of one of its automatic
// checkpoints on another node, then injects one fault, the kinds in turn:
//
//   - node kill: the node cut from every other node (blackhole routes), its
//     agent SIGKILLed, every process of its job cgroups SIGKILLed; held
//     until the job runs elsewhere and the service is back to 3, then the
//     links healed and the agent started again;
//   - agent kill: the agent SIGKILLed and started again 1 s later (as a
//     supervisor would); its jobs keep running;
//   - long partition: the node cut off as above, agent alive (it must fence
//     its jobs), held until the job runs elsewhere, then healed;
//   - short partition: cut off for 2 s, less than the 5 s lease, then healed:
//     nothing should move;
//   - leader kill: a node kill of a node that does not lead the failover
//     controller, and, as soon as the job's record is claimed (Starting on
//     the restoring node, the restore under way), the leader's agent
//     SIGKILLed and started again 1 s later;
//   - agent down: the agent SIGKILLed and started again 10 s later, longer
//     than the lease (5 s) and the controller's grace (2 s) together: a
//     crashed agent that a supervisor restarts slowly. Its jobs keep running
//     meanwhile, with no agent to fence them.
//
// Counted after each fault: a job is lost if it does not finish with exit
// status 0 and ticks 1..100 in order with one memory digest (read after the
// campaign, each job's `ssi wait` started before its fault); the service
// lost replicas if it has fewer than 3 running on Ready, distinct nodes
// campaignRecover after the fault. Duplicates: a sampler looks at every job
// cgroup of every node at 10 Hz for the whole campaign and counts samples
// where one gpid has live processes (liveCopy: neither stopped, traced nor
// dying) on two nodes. The table (kind × count × lost × duplicated, times)
// goes to FAILOVER_REPORT (default /tmp/ssi-failover-campaign.md), for
// docs/ROBUSTNESS.md. The test fails if anything was lost or duplicated.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

const (
	campaignTicks       = 100
	campaignSampleEvery = 100 * time.Millisecond // 10 Hz
	campaignRecover     = 30 * time.Second       // service back to 3, job running elsewhere
	campaignJobEnd      = 4 * time.Minute        // a job's ssi wait
	campaignService     = "fobsvc"
)

// Fault kinds, in the order they are injected.
const (
	kindNodeKill   = "node kill (agent + jobs + links)"
	kindAgentKill  = "agent kill (SIGKILL, restarted 1 s later)"
	kindLongPart   = "partition > lease, healed"
	kindShortPart  = "partition < lease (2 s), healed"
	kindLeaderKill = "node kill + controller leader killed mid-restore"
	kindAgentDown  = "agent kill, restarted 10 s later (> lease + grace)"
)

var campaignKinds = []string{kindNodeKill, kindAgentKill, kindLongPart, kindShortPart, kindLeaderKill, kindAgentDown}

// faultRun is one injected fault and what followed.
type faultRun struct {
	kind, node string
	gpid       uint64
	// jobBack: fault to the job running again (elsewhere after a node's
	// death); svcBack: to the service at 3 again (0 if the node held no
	// replica); -1: not within campaignRecover.
	jobBack, svcBack time.Duration
	hadReplica       bool
	svcLost          int // replicas short after campaignRecover
	jobLost          bool
	dups             int // samples with two live copies of a gpid during this fault
	note             string
}

// dupSampler counts, at 10 Hz, gpids with live copies on two nodes; each
// such sample is charged to the fault under way.
type dupSampler struct {
	mu    sync.Mutex
	fault int // index of the fault under way; -1: none
	dups  map[int]int
	// seen: the first and the last duplicated sample of each fault,
	// described (the first of a window may be the restore's CRIU process,
	// the last shows what ran until the window closed).
	seen    map[int][2]string
	samples int
	maxGap  time.Duration
}

func startDupSampler(c *testCluster) (*dupSampler, func()) {
	s := &dupSampler{fault: -1, dups: map[int]int{}, seen: map[int][2]string{}}
	root := filepath.Join(jobCgroupRoot(), c.CgroupParent())
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(campaignSampleEvery)
		defer tick.Stop()
		last := time.Now()
		for {
			live := map[uint64][]holder{}
			for _, n := range c.Nodes {
				ents, _ := os.ReadDir(filepath.Join(root, n.Name))
				for _, e := range ents {
					g, err := strconv.ParseUint(e.Name(), 10, 64)
					if err != nil || !e.IsDir() {
						continue
					}
					if l := liveCopy(filepath.Join(root, n.Name, e.Name())); len(l) > 0 {
						live[g] = append(live[g], holder{n.Name, l})
					}
				}
			}
			now := time.Now()
			s.mu.Lock()
			if s.samples > 0 {
				s.maxGap = max(s.maxGap, now.Sub(last))
			}
			s.samples, last = s.samples+1, now
			for g, hs := range live {
				if len(hs) > 1 {
					s.dups[s.fault]++
					d := fmt.Sprintf("%s gpid %d on %v (fault %d): %s", now.Format("15:04:05.000"), g, hs, s.fault+1, describeHolders(hs))
					fl := s.seen[s.fault]
					if fl[0] == "" {
						fl[0] = d
					} else {
						fl[1] = d
					}
					s.seen[s.fault] = fl
				}
			}
			s.mu.Unlock()
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return s, func() { once.Do(func() { close(quit); <-done }) }
}

func (s *dupSampler) setFault(i int) {
	s.mu.Lock()
	s.fault = i
	s.mu.Unlock()
}

func (s *dupSampler) dupsOf(i int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dups[i]
}

// jobWait is the outcome of one job's ssi wait, started before its fault.
type jobWait struct {
	code int
	err  error
}

func (c *testCluster) startWait(gpid uint64) <-chan jobWait {
	ch := make(chan jobWait, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), campaignJobEnd)
		defer cancel()
		cmd := c.cmd(ctx, "wait", strconv.FormatUint(gpid, 10))
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			ch <- jobWait{code: ee.ExitCode()}
			return
		}
		ch <- jobWait{err: err}
	}()
	return ch
}

func TestFailoverCampaign(t *testing.T) {
	c := need(t)
	if len(c.Nodes) < 4 {
		t.Fatalf("%d nodes: the campaign wants 4 (SSI_E2E_NODES=4; hack/soak-failover.sh sets it), so that Spread=node can replace a replica", len(c.Nodes))
	}
	faults := 9 * len(campaignKinds) // 54: nine of each kind
	if v := os.Getenv("FAILOVER_FAULTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("FAILOVER_FAULTS=%q: want a positive number", v)
		}
		faults = n
	}
	unit := writeUnit(t, t.TempDir(), campaignService+".service",
		"[Service]\nExecStart=/bin/sleep 100000\nRestart=always\nRestartSec=200ms\n[X-SSI]\nReplicas=3\nSpread=node\n")
	c.ok(t, "apply", unit)
	t.Cleanup(func() { c.ssi(t, "service", "rm", campaignService) })
	c.waitReplicas(t, campaignService, 3, true, 60*time.Second)

	// The agents' logs, kept where no other run's writes them (TestMain's
	// copy goes to a directory every e2e run on the machine shares).
	t.Cleanup(func() { keepAgentLogs(t, c) })
	sampler, stopSampler := startDupSampler(c)
	defer stopSampler()
	var runs []*faultRun
	waits := map[uint64]<-chan jobWait{}
	start := time.Now()
	defer func() { writeCampaignReport(t, runs, sampler, time.Since(start)) }()
	targets := []string{}
	for _, n := range c.Nodes[1:] {
		targets = append(targets, n.Name)
	}
	for i := range faults {
		// The node moves on by one more every round of kinds, so that each
		// kind hits every node in turn.
		r := &faultRun{kind: campaignKinds[i%len(campaignKinds)], node: targets[(i+i/len(campaignKinds))%len(targets)]}
		runs = append(runs, r)
		c.settle(t)
		if r.kind == kindLeaderKill {
			leader := c.failoverLeader(t)
			for r.node == leader {
				r.node = targets[(slices.Index(targets, r.node)+1)%len(targets)]
			}
		}
		r.gpid = c.detach(t, "--node", r.node, "--checkpoint-every", "3s", "--", "python3", counterPath(t), "16", "0.2", strconv.Itoa(campaignTicks))
		waits[r.gpid] = c.startWait(r.gpid)
		c.waitCopy(t, r.gpid, r.node)
		for _, p := range c.replicas(t, campaignService) {
			r.hadReplica = r.hadReplica || p.Node == r.node
		}
		sampler.setFault(i)
		c.inject(t, r)
		sampler.setFault(-1)
		r.dups = sampler.dupsOf(i)
		t.Logf("fault %d/%d: %s on %s, gpid %d: job back in %s, service in %s (replica there: %v), %d short; %d duplicate samples %s",
			i+1, faults, r.kind, r.node, r.gpid, r.jobBack.Round(time.Millisecond), r.svcBack.Round(time.Millisecond), r.hadReplica, r.svcLost, r.dups, r.note)
	}
	// Every job's result: its wait's exit status, then its output.
	for _, r := range runs {
		w := <-waits[r.gpid]
		switch {
		case w.err != nil:
			r.jobLost, r.note = true, r.note+fmt.Sprintf("; ssi wait: %v", w.err)
		case w.code != 0:
			r.jobLost, r.note = true, r.note+fmt.Sprintf("; exit status %d", w.code)
		default:
			if n, err := ticksOf(c.ssi(t, "logs", strconv.FormatUint(r.gpid, 10)).stdout); err != nil || n != campaignTicks {
				r.jobLost, r.note = true, r.note+fmt.Sprintf("; output: %d ticks, %v", n, err)
			}
		}
		if r.jobLost {
			t.Errorf("fault %s on %s: job %d lost%s", r.kind, r.node, r.gpid, r.note)
		}
	}
	stopSampler()
	for _, r := range runs {
		if r.svcLost > 0 {
			t.Errorf("fault %s on %s: service %d replicas short after %s", r.kind, r.node, r.svcLost, campaignRecover)
		}
	}
	if d := sampler.dups[-1]; d > 0 {
		t.Errorf("%d samples with a duplicated gpid between faults", d)
	}
	for i := -1; i < len(runs); i++ {
		if fl, ok := sampler.seen[i]; ok {
			t.Errorf("duplicated, first sample: %s", fl[0])
			if fl[1] != "" {
				t.Errorf("duplicated, last sample: %s", fl[1])
			}
		}
	}
	if sampler.maxGap > copySampleGapLimit {
		t.Errorf("sampler paused %s: not continuous", sampler.maxGap)
	}
}

// ticksOf is checkTicks without t: ticks 1..n in order, one digest.
func ticksOf(out string) (int, error) {
	n, digest := 0, ""
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "tick" {
			return n, fmt.Errorf("unexpected line %q", line)
		}
		k, _ := strconv.Atoi(f[1])
		if k != n+1 {
			return n, fmt.Errorf("tick %d follows tick %d", k, n)
		}
		if digest != "" && f[2] != digest {
			return n, fmt.Errorf("digest changed at tick %d", k)
		}
		n, digest = k, f[2]
	}
	return n, nil
}

// settle waits until every node is Ready and the service has 3 replicas on
// distinct nodes.
func (c *testCluster) settle(t *testing.T) {
	t.Helper()
	eventually(t, 60*time.Second, "every node Ready", func() error {
		for name, n := range c.nodes(t) {
			if !n.Ready {
				return fmt.Errorf("%s NotReady", name)
			}
		}
		return nil
	})
	c.waitReplicas(t, campaignService, 3, true, 60*time.Second)
}

// waitCopy waits for a Ready copy of an automatic checkpoint of gpid off
// node.
func (c *testCluster) waitCopy(t *testing.T, gpid uint64, node string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("a checkpoint of gpid %d copied off %s", gpid, node), func() error {
		cs, err := c.checkpointsJSON(t)
		if err != nil {
			return err
		}
		for _, ck := range cs {
			if ck.GPID == gpid && ck.Auto && ck.CopyOf != "" && ck.State == pidtable.Ready && ck.Node != node {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
}

func (c *testCluster) checkpointsJSON(t *testing.T) ([]pidtable.Checkpoint, error) {
	r := c.ssi(t, "checkpoints", "-o", "json")
	if r.code != 0 {
		return nil, fmt.Errorf("ssi checkpoints: %v", r)
	}
	var cs []pidtable.Checkpoint
	return cs, json.Unmarshal([]byte(r.stdout), &cs)
}

// failoverLeader is the node whose agent was last elected failover
// controller (its log says so), among the agents running now.
func (c *testCluster) failoverLeader(t *testing.T) string {
	t.Helper()
	var leader string
	var newest time.Time
	for _, n := range c.Nodes {
		f, err := os.Open(filepath.Join(n.DataDir, "agent.log"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, `msg="failover: elected controller"`) {
				continue
			}
			ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			if at, err := time.Parse(time.RFC3339Nano, ts); err == nil && at.After(newest) {
				leader, newest = n.Name, at
			}
		}
		f.Close()
	}
	if leader == "" {
		t.Fatal("no agent log says it was elected failover controller")
	}
	return leader
}

// inject does r's fault and waits for the cluster to recover from it.
func (c *testCluster) inject(t *testing.T, r *faultRun) {
	t.Helper()
	cut := func() (heal func()) {
		var heals []func()
		for _, n := range c.Nodes {
			if n.Name != r.node {
				heals = append(heals, c.partition(t, r.node, n.Name))
			}
		}
		return func() {
			for _, h := range heals {
				h()
			}
		}
	}
	t0 := time.Now()
	switch r.kind {
	case kindNodeKill, kindLeaderKill:
		heal := cut()
		c.stopAgent(t, r.node, syscall.SIGKILL)
		killed := c.killNodeJobs(r.node)
		r.note = fmt.Sprintf("%d processes killed", killed)
		if r.kind == kindLeaderKill {
			c.killLeaderMidRestore(t, r)
		}
		c.awaitRecovery(t, r, t0, true)
		heal()
		c.startAgent(t, r.node)
	case kindAgentKill, kindAgentDown:
		c.stopAgent(t, r.node, syscall.SIGKILL)
		if r.kind == kindAgentDown {
			time.Sleep(10 * time.Second)
		} else {
			time.Sleep(time.Second)
		}
		c.startAgent(t, r.node)
		c.awaitRecovery(t, r, t0, false)
	case kindLongPart:
		heal := cut()
		c.awaitRecovery(t, r, t0, true)
		heal()
	case kindShortPart:
		heal := cut()
		time.Sleep(2 * time.Second)
		heal()
		c.awaitRecovery(t, r, t0, false)
	}
}

// killLeaderMidRestore waits until r's job is claimed by the failover
// controller (Starting, failed over from r.node) and SIGKILLs the leader's
// agent then, starting it again 1 s later.
func (c *testCluster) killLeaderMidRestore(t *testing.T, r *faultRun) {
	t.Helper()
	leader := c.failoverLeader(t)
	cl, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(campaignRecover)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p, err := cl.Proc(ctx, r.gpid)
		cancel()
		if err == nil && p.FailedOverFrom == r.node && p.Node != r.node {
			c.stopAgent(t, leader, syscall.SIGKILL)
			r.note += fmt.Sprintf("; leader %s killed with the job %s on %s", leader, p.State, p.Node)
			time.Sleep(time.Second)
			c.startAgent(t, leader)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.note += "; the job was never claimed: leader not killed"
}

// awaitRecovery waits (campaignRecover) until r's job runs (off r.node if moved)
// and the service is at 3 on Ready, distinct nodes; it records the times.
func (c *testCluster) awaitRecovery(t *testing.T, r *faultRun, t0 time.Time, moved bool) {
	t.Helper()
	r.jobBack, r.svcBack = -1, -1
	deadline := t0.Add(campaignRecover)
	for {
		if r.jobBack < 0 {
			p := c.proc(t, r.gpid)
			switch {
			case p.State.Ended():
				r.jobBack = time.Since(t0) // it finished: nothing to wait for
			case p.State == pidtable.Running && p.NodeReady && (!moved || p.Node != r.node):
				r.jobBack = time.Since(t0)
			}
		}
		reps := c.replicas(t, campaignService)
		nodes := map[string]bool{}
		for _, p := range reps {
			if p.State == pidtable.Running && (!moved || p.Node != r.node) {
				nodes[p.Node] = true
			}
		}
		if r.svcBack < 0 && len(nodes) >= 3 {
			r.svcBack = time.Since(t0)
		}
		if r.jobBack >= 0 && r.svcBack >= 0 {
			return
		}
		if time.Now().After(deadline) {
			if r.svcBack < 0 {
				r.svcLost = 3 - len(nodes)
			}
			if r.jobBack < 0 {
				p := c.proc(t, r.gpid)
				r.note += fmt.Sprintf("; job not running after %s: %s on %s", campaignRecover, p.State, p.Node)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killNodeJobs SIGKILLs every process of node's job cgroups, as the node's
// death would, and returns how many.
func (c *testCluster) killNodeJobs(node string) int {
	n := 0
	_ = filepath.WalkDir(filepath.Join(jobCgroupRoot(), c.CgroupParent(), node), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
		return nil
	})
	return n
}

// writeCampaignReport writes the table of the campaign to FAILOVER_REPORT.
func writeCampaignReport(t *testing.T, runs []*faultRun, s *dupSampler, took time.Duration) {
	path := os.Getenv("FAILOVER_REPORT")
	if path == "" {
		path = "/tmp/ssi-failover-campaign.md"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Failover fault campaign, %s: %d faults in %s; duplicate sampler: %d samples at 10 Hz, longest gap %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), len(runs), took.Round(time.Second), s.samples, s.maxGap.Round(time.Millisecond))
	b.WriteString("| fault | count | jobs lost | replicas short | duplicated (samples) | job running again: median / max | service at 3 again (node had a replica): median / max |\n|---|--:|--:|--:|--:|--:|--:|\n")
	for _, k := range campaignKinds {
		var n, lost, short, dups int
		var job, svc []time.Duration
		for _, r := range runs {
			if r.kind != k {
				continue
			}
			n++
			short += r.svcLost
			dups += r.dups
			if r.jobLost {
				lost++
			}
			if r.jobBack >= 0 {
				job = append(job, r.jobBack)
			}
			if r.hadReplica && r.svcBack >= 0 {
				svc = append(svc, r.svcBack)
			}
		}
		if n == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %s |\n", k, n, lost, short, dups, medMax(job), medMax(svc))
	}
	b.WriteString("\nEvery fault:\n\n| # | fault | node | gpid | job back | service back | lost | dups | note |\n|--:|---|---|--:|--:|--:|---|--:|---|\n")
	for i, r := range runs {
		fmt.Fprintf(&b, "| %d | %s | %s | %d | %s | %s | %v | %d | %s |\n", i+1, r.kind, r.node, r.gpid, durOrNone(r.jobBack), durOrNone(r.svcBack), r.jobLost || r.svcLost > 0, r.dups, strings.TrimPrefix(r.note, "; "))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Errorf("write %s: %v", path, err)
		return
	}
	t.Logf("campaign report in %s:\n%s", path, b.String())
}

func medMax(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("%.1f s / %.1f s", med.Seconds(), s[len(s)-1].Seconds())
}

func durOrNone(d time.Duration) string {
	if d < 0 {
		return "not within 30 s"
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// keepAgentLogs copies the agents' logs to FAILOVER_LOGS (default
// /tmp/ssi-failover-campaign-logs), for the evidence of what the report
// counts.
func keepAgentLogs(t *testing.T, c *testCluster) {
	dir := os.Getenv("FAILOVER_LOGS")
	if dir == "" {
		dir = "/tmp/ssi-failover-campaign-logs"
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("keep the agents' logs: %v", err)
		return
	}
	for _, n := range c.Nodes {
		if b, err := os.ReadFile(filepath.Join(n.DataDir, "agent.log")); err == nil {
			_ = os.WriteFile(filepath.Join(dir, n.Name+".log"), b, 0o644)
		}
	}
	t.Logf("agents' logs in %s", dir)
}

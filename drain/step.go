package drain

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/placement"
)

// move is a move a step decided, started once the record says so.
type move struct {
	gpid     uint64
	to       string
	postCopy bool
	// fromCheckpoint: restore its newest checkpoint on to, not a live move.
	fromCheckpoint bool
}

// Step is one pass of the leader over every active drain: reconcile, plan,
// write, act (see the package doc). life owns the moves it starts; guard is
// the leadership's compare (nil: none, in tests).
func (c *Controller) Step(ctx, life context.Context, guard *clientv3.Cmp) error {
	drains, revs, err := c.cfg.Table.Drains(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(drains, func(d pidtable.Drain) bool { return d.State == pidtable.DrainActive }) {
		return nil
	}
	snap, err := c.cfg.Table.Snapshot(ctx)
	if err != nil {
		return err
	}
	bc, _, err := c.cfg.Table.BalancerConfig(ctx)
	if err != nil {
		return err
	}
	policy := placement.BalanceConfig{MaxFreeze: bc.MaxFreeze}
	var errs []error
	for i, d := range drains {
		if d.State != pidtable.DrainActive {
			continue
		}
		if err := c.stepOne(ctx, life, guard, d, revs[i], snap, policy, time.Now()); err != nil {
			errs = append(errs, fmt.Errorf("drain of %s: %w", d.Node, err))
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// stepOne is one pass over the drain d, read at rev.
func (c *Controller) stepOne(ctx, life context.Context, guard *clientv3.Cmp, d pidtable.Drain, rev int64, snap *pidtable.Snapshot, policy placement.BalanceConfig, now time.Time) error {
	before, _ := json.Marshal(d)
	procs := make(map[uint64]pidtable.Proc, len(snap.Procs))
	for _, p := range snap.Procs {
		procs[p.GPID] = p
	}
	var consumed []uint64
	var events []pidtable.Event
	ev := func(e pidtable.Event) { events = append(events, e) }

	// 1. What became of each job the drain knows.
	for i := range d.Jobs {
		j := &d.Jobs[i]
		p, ok := procs[j.GPID]
		live := ok && !p.State.Ended()
		switch j.State {
		case pidtable.JobMoved, pidtable.JobEnded, pidtable.JobLeft, pidtable.JobReplaced:
			continue
		case pidtable.JobKilled:
			continue // killed again below while it still runs there
		case pidtable.JobReplacing:
			switch {
			case !live:
				j.State, j.Reason = pidtable.JobReplaced, "its service's controller started another replica elsewhere, then stopped this one"
				ev(pidtable.Event{Kind: pidtable.EventDrain, GPID: j.GPID, User: j.User, From: d.Node, Reason: "drain of " + d.Node + ": replica " + j.Reason})
			case p.Node != d.Node:
				j.State, j.To, j.Reason = pidtable.JobMoved, p.Node, "moved by someone else (ssi migrate or the balancer)"
			}
		case pidtable.JobMoving:
			inflight, o, has := c.take(j.GPID)
			switch {
			case inflight:
			case has:
				consumed = append(consumed, j.GPID)
				if o.err == nil {
					j.State, j.To, j.Reason = pidtable.JobMoved, o.to, o.stats.Note
					j.Took = time.Duration(o.stats.TotalMS * float64(time.Millisecond))
					j.Frozen = time.Duration(o.stats.FrozenMS * float64(time.Millisecond))
					j.Bytes = o.stats.ImageBytes
					reason := "drain of " + d.Node
					if o.stats.Note != "" {
						reason += ": " + o.stats.Note
					}
					ev(pidtable.Event{Kind: pidtable.EventMoved, GPID: j.GPID, User: j.User, From: d.Node, To: o.to, Took: j.Took, Frozen: j.Frozen, Bytes: j.Bytes, Reason: reason})
				} else {
					c.failed(j, p, o.err.Error(), now)
					ev(pidtable.Event{Kind: pidtable.EventFailed, GPID: j.GPID, User: j.User, From: d.Node, To: o.to, Reason: "drain of " + d.Node + ": " + j.Reason})
				}
			case !live:
				c.ended(j, p, ok)
			case p.Node != d.Node:
				j.State, j.To, j.Reason = pidtable.JobMoved, p.Node, ""
			case p.State == pidtable.Migrating:
				// A previous leader's move, still under way at the source.
			case p.MigrationError != "" && p.MigrationFailed.After(j.MoveStarted):
				c.failed(j, p, p.MigrationError, now)
			default:
				// The move never started (its leader died first): again.
				j.State = pidtable.JobPending
			}
		default: // pending, retry, failed, unmovable
			switch {
			case !live:
				c.ended(j, p, ok)
			case p.Node != d.Node:
				j.State, j.To, j.Reason = pidtable.JobMoved, p.Node, "moved by someone else (ssi migrate or the balancer)"
			}
		}
	}

	// 2. Jobs on the node the drain does not know yet.
	for _, p := range snap.Procs {
		if p.Node != d.Node || p.State.Ended() {
			continue
		}
		if _, ok := d.Job(p.GPID); ok {
			continue
		}
		e := pidtable.DrainJob{GPID: p.GPID, User: p.User, Command: command(p.Argv), State: pidtable.JobPending}
		switch {
		case p.Service != "" && p.Pinned:
			e.State, e.Reason = pidtable.JobReplacing, "a replica of service "+p.Service+" with Migratable=no: its controller starts another elsewhere, then stops this one"
		case p.TTY:
			e.State, e.Reason = pidtable.JobUnmovable, "it has a terminal (ssi run -t), which cannot be moved"
		}
		d.Jobs = append(d.Jobs, e)
	}
	slices.SortFunc(d.Jobs, func(a, b pidtable.DrainJob) int { return cmp.Compare(a.GPID, b.GPID) })

	// 3. Moves, or the deadline's verdict.
	var moves []move
	var kills []uint64
	past := !now.Before(d.Deadline)
	if past {
		for i := range d.Jobs {
			j := &d.Jobs[i]
			p := procs[j.GPID]
			onNode := p.Node == d.Node && !p.State.Ended()
			switch j.State {
			case pidtable.JobPending, pidtable.JobRetry, pidtable.JobFailed, pidtable.JobUnmovable, pidtable.JobReplacing:
				if d.Force {
					if j.State == pidtable.JobPending || j.State == pidtable.JobRetry || j.State == pidtable.JobReplacing {
						j.Reason = strings.TrimPrefix(j.Reason+"; ", "; ") + "not moved by the deadline"
					}
					j.State, j.Reason = pidtable.JobKilled, "killed at the deadline (--force): "+j.Reason
					kills = append(kills, j.GPID)
					ev(pidtable.Event{Kind: pidtable.EventDrain, GPID: j.GPID, User: j.User, From: d.Node, Reason: "drain of " + d.Node + ": " + j.Reason})
				} else if j.State == pidtable.JobPending || j.State == pidtable.JobRetry || j.State == pidtable.JobReplacing {
					j.State, j.Reason = pidtable.JobLeft, strings.TrimPrefix(j.Reason+"; ", "; ")+"the deadline passed before it could be moved or replaced; it runs on "+d.Node
				}
			case pidtable.JobKilled:
				if onNode {
					kills = append(kills, j.GPID)
				}
			}
		}
	} else {
		moves = c.plan(&d, snap, procs, policy, now)
		for _, m := range moves {
			j, _ := d.Job(m.gpid)
			ev(pidtable.Event{Kind: pidtable.EventMove, GPID: m.gpid, User: j.User, From: d.Node, To: m.to, Reason: "drain of " + d.Node + " (by " + d.By + ")"})
		}
	}

	// 4. Done?
	open := 0
	for _, j := range d.Jobs {
		p := procs[j.GPID]
		switch j.State {
		case pidtable.JobPending, pidtable.JobMoving, pidtable.JobRetry, pidtable.JobReplacing:
			open++
		case pidtable.JobKilled:
			if p.Node == d.Node && !p.State.Ended() {
				open++
			}
		case pidtable.JobFailed, pidtable.JobUnmovable:
			if d.Force && !past {
				open++ // killed at the deadline
			}
		}
	}
	if open == 0 {
		d.State, d.Finished, d.Message = pidtable.DrainDone, now.UTC(), summary(d)
		ev(pidtable.Event{Kind: pidtable.EventDrain, From: d.Node, Reason: "drain of " + d.Node + " done: " + d.Message})
	}

	// 5. Write, then act.
	after, _ := json.Marshal(d)
	if string(before) == string(after) {
		return nil
	}
	d.Leader = c.cfg.Name
	if _, err := c.cfg.Table.PutDrain(ctx, d, rev, guard); err != nil {
		return err // nothing started; outcomes kept for the next step
	}
	for _, g := range consumed {
		c.forget(g)
	}
	for _, e := range events {
		c.cfg.Record(ctx, e)
	}
	src, _ := snap.Node(d.Node)
	for _, m := range moves {
		c.cfg.Log.Info("drain: move", "gpid", m.gpid, "from", d.Node, "to", m.to, "post_copy", m.postCopy)
		c.start(life, d.Node, src.Addr, m.gpid, api.MigrateRequest{Node: m.to, PostCopy: m.postCopy, FromCheckpoint: m.fromCheckpoint})
	}
	for _, g := range kills {
		if err := c.cfg.Kill(ctx, d.Node, g); err != nil {
			c.cfg.Log.Warn("drain: kill at the deadline", "gpid", g, "node", d.Node, "err", err)
		}
	}
	return nil
}

// plan picks the moves to start now and marks their jobs moving in d.
func (c *Controller) plan(d *pidtable.Drain, snap *pidtable.Snapshot, procs map[uint64]pidtable.Proc, policy placement.BalanceConfig, now time.Time) []move {
	inflight := 0
	for _, j := range d.Jobs {
		if j.State == pidtable.JobMoving {
			inflight++
		}
	}
	slots := d.Parallel - inflight
	if slots <= 0 {
		return nil
	}
	st := snap.Status[d.Node]
	var jobs []placement.EvacuateJob
	for _, j := range d.Jobs {
		p := procs[j.GPID]
		ready := j.State == pidtable.JobPending || (j.State == pidtable.JobRetry && !now.Before(j.NextTry))
		if !ready || p.Node != d.Node || p.State != pidtable.Running {
			continue
		}
		ps := st.Procs[p.GPID]
		jobs = append(jobs, placement.EvacuateJob{BalanceJob: placement.BalanceJob{
			GPID: p.GPID, Node: p.Node, Demand: ps.Demand, Memory: ps.RSS,
			CPUs: p.CPUs, MemoryRequest: p.Memory, Constraints: p.Constraints,
		}})
	}
	if len(jobs) == 0 {
		return nil
	}
	incoming := map[string]int{}
	for _, p := range snap.Procs {
		if p.State == pidtable.Migrating && p.Migration != nil {
			incoming[p.Migration.Target]++
		}
	}
	nodes := make([]placement.BalanceNode, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		pn := placement.Node{Name: n.Name, CPUs: n.CPUs, Memory: n.Memory, Labels: n.Labels, Cordoned: n.Cordoned, Protocol: n.Protocol}
		if s, ok := snap.Status[n.Name]; ok {
			pn.Ready, pn.Load, pn.Jobs, pn.ReservedCPUs, pn.ReservedMemory = true, s.Demand, s.Jobs, s.ReservedCPUs, s.ReservedMemory
		}
		nodes = append(nodes, placement.BalanceNode{Node: pn, Inflight: incoming[n.Name]})
	}
	plan := placement.Evacuate(nodes, d.Node, jobs, slots, policy)
	for _, r := range plan.Rejected {
		if j, ok := d.Job(r.GPID); ok {
			j.Reason = r.Reason
		}
	}
	out := make([]move, 0, len(plan.Moves))
	for _, m := range plan.Moves {
		j, _ := d.Job(m.GPID)
		postCopy := m.PostCopy && !j.FromCheckpoint
		j.State, j.To, j.MoveStarted, j.PostCopy, j.Reason = pidtable.JobMoving, m.To, now.UTC(), postCopy, ""
		out = append(out, move{gpid: m.GPID, to: m.To, postCopy: postCopy, fromCheckpoint: j.FromCheckpoint})
	}
	return out
}

// failed counts a failed move of j: tried again after a backoff, or failed
// for good after MaxAttempts.
func (c *Controller) failed(j *pidtable.DrainJob, p pidtable.Proc, reason string, now time.Time) {
	j.Attempts++
	j.Reason = reason
	if j.Attempts >= c.cfg.MaxAttempts {
		j.State = pidtable.JobFailed
		j.Reason = fmt.Sprintf("%d moves failed; it stays; last: %s", j.Attempts, reason)
		switch {
		case j.FromCheckpoint:
			j.Reason = fmt.Sprintf("%d live moves and the restore of its newest checkpoint elsewhere failed; last: %s", j.Attempts-1, reason)
		case p.CheckpointEvery > 0 && p.Service == "":
			// Fall back to its newest checkpoint, restored elsewhere: the
			// work since is done again, but the node can go.
			j.FromCheckpoint, j.State, j.NextTry = true, pidtable.JobRetry, now.UTC()
			j.Reason = fmt.Sprintf("%d live moves failed (last: %s): its newest checkpoint is restored elsewhere instead", j.Attempts, reason)
			return
		}
		if p.Service != "" {
			j.State = pidtable.JobReplacing
			j.Reason = fmt.Sprintf("a replica of service %s that could not be moved (%d moves failed; last: %s): its controller starts another elsewhere, then stops this one", p.Service, j.Attempts, reason)
		}
		return
	}
	wait := c.cfg.RetryAfter << (j.Attempts - 1)
	j.State, j.NextTry = pidtable.JobRetry, now.Add(wait).UTC()
}

// ended records that j's job ended by itself (or vanished from the table).
func (c *Controller) ended(j *pidtable.DrainJob, p pidtable.Proc, ok bool) {
	j.State = pidtable.JobEnded
	if ok {
		j.Reason = "it has " + p.DescribeEnd()
	} else {
		j.Reason = "its record is gone"
	}
}

// summary says how a drain ended, in one line.
func summary(d pidtable.Drain) string {
	n := d.Count()
	s := fmt.Sprintf("%d moved", n[pidtable.JobMoved])
	for _, k := range []string{pidtable.JobReplaced, pidtable.JobEnded, pidtable.JobFailed, pidtable.JobUnmovable, pidtable.JobLeft, pidtable.JobKilled} {
		if n[k] > 0 {
			s += fmt.Sprintf(", %d %s", n[k], k)
		}
	}
	if stay := n[pidtable.JobFailed] + n[pidtable.JobUnmovable] + n[pidtable.JobLeft]; stay > 0 {
		s += fmt.Sprintf("; %d still run on %s (ssi node drain %s --force kills them at the deadline)", stay, d.Node, d.Node)
	}
	return s
}

// command is a job's command line, cut for the drain's table.
func command(argv []string) string {
	s := strings.Join(argv, " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

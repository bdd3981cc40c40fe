package hollow

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// job is one fake job of a node: its record's last mod revision (the node
// wrote it; the next write is guarded by it) and its times.
type job struct {
	gpid uint64
	rev  int64
	// user owns the job; code is its exit status when its life is over.
	user string
	code int
	// state is the record's state as the node last wrote it.
	state pidtable.State
	// exitAt is when the job exits (zero: runs until its node stops);
	// endedAt is when it did.
	exitAt, endedAt time.Time
}

func (j *job) running() bool { return j.state == pidtable.Running }
func (j *job) ended() bool   { return j.state.Ended() }

// jobTick is how often a node ends, replaces and archives its fake jobs.
const jobTick = time.Second

// jobLoop records the stale records of an earlier run lost, creates the
// node's fake jobs, then every jobTick ends those whose life is over,
// replaces them and archives the ended ones past the retention.
func (n *Node) jobLoop(ctx context.Context, stale []uint64) {
	for _, g := range stale {
		_, _, err := n.c.store.Transition(ctx, g, pidtable.End, n.name, func(p *pidtable.Proc) error {
			p.State, p.Error = pidtable.Lost, "its hollow node restarted: a fake job does not outlive its node's process"
			return nil
		})
		if err != nil && ctx.Err() == nil && !errors.Is(err, pidtable.ErrNotFound) && !errors.Is(err, pidtable.ErrIllegalTransition) {
			n.log.Warn("record a job of an earlier run lost", "gpid", g, "err", err)
		}
	}
	t := time.NewTicker(jobTick)
	defer t.Stop()
	for {
		n.fill(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for _, j := range n.due(now) {
			n.end(ctx, j, j.code, "")
		}
		n.archive(ctx, now)
	}
}

// fill creates fake jobs until the node has Config.Jobs live ones.
func (n *Node) fill(ctx context.Context) {
	for ctx.Err() == nil && n.live() < n.c.cfg.Jobs {
		select {
		case n.c.spawn <- struct{}{}:
		case <-ctx.Done():
			return
		}
		err := n.startJob(ctx)
		<-n.c.spawn
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("start a fake job", "err", err)
			}
			return // again at the next tick
		}
	}
}

func (n *Node) live() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	live := 0
	for _, j := range n.jobs {
		if !j.ended() {
			live++
		}
	}
	return live
}

// fakeJob is what a fake job is made of: its command and owner (the
// record's), how long it runs (0: Config.JobLife) and its exit code.
type fakeJob struct {
	argv        []string
	user        string
	life        time.Duration
	code        int
	cpus        float64
	memory      int64
	constraints map[string]string
	pin         bool
	// now: a life of 0 means it exits at once, not Config.JobLife's.
	now bool
}

// startJob makes one of the node's own fake jobs (Config.Jobs).
func (n *Node) startJob(ctx context.Context) error {
	_, err := n.startFake(ctx, fakeJob{argv: []string{"sleep", "infinity"}, user: "root", life: n.c.cfg.JobLife})
	return err
}

// startFake makes a fake job as the supervisor's start does: Create (a
// gpid of this node's block, state starting), then the Start transition
// (running, with a PID). Its process is imaginary.
func (n *Node) startFake(ctx context.Context, f fakeJob) (uint64, error) {
	p, err := n.c.store.Create(ctx, pidtable.Proc{
		Node: n.name, User: f.user, Argv: f.argv, Workdir: "/", CPUs: f.cpus, Memory: f.memory,
		Constraints: f.constraints, Pinned: f.pin,
	})
	if err != nil {
		return 0, fmt.Errorf("allocate gpid: %w", err)
	}
	pid := 100_000 + int(p.GPID%400_000) // imaginary, in the range of real PIDs
	_, rev, err := n.c.store.Transition(ctx, p.GPID, pidtable.Start, n.name, func(p *pidtable.Proc) error {
		now := time.Now().UTC()
		p.State, p.PID, p.InitPID, p.Started, p.Arrived = pidtable.Running, pid, pid-1, now, now
		return nil
	})
	if err != nil {
		// As a failed start: no record left behind.
		if derr := n.c.store.Delete(context.WithoutCancel(ctx), p.GPID, n.name); derr != nil {
			n.log.Error("remove record of failed fake job", "gpid", p.GPID, "err", derr)
		}
		return 0, fmt.Errorf("record gpid %d running: %w", p.GPID, err)
	}
	j := &job{gpid: p.GPID, rev: rev, state: pidtable.Running, user: f.user, code: f.code}
	switch {
	case f.now:
		j.exitAt = time.Now().Add(f.life)
	case f.life > 0:
		// Lives spread over [life/2, 3life/2): the jobs a node starts at
		// once do not all end at once.
		j.exitAt = time.Now().Add(f.life/2 + time.Duration(mrand.Int64N(int64(f.life))))
	}
	n.mu.Lock()
	n.jobs[p.GPID] = j
	n.created++
	n.mu.Unlock()
	return p.GPID, nil
}

// jobUser returns the user of the node's job gpid, if it has it.
func (n *Node) jobUser(gpid uint64) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	j := n.jobs[gpid]
	if j == nil {
		return "", false
	}
	return j.user, true
}

// kill ends the node's running job gpid now with code (128+signal); false
// when it has already ended.
func (n *Node) kill(ctx context.Context, gpid uint64, code int) bool {
	n.mu.Lock()
	j := n.jobs[gpid]
	n.mu.Unlock()
	if j == nil || !j.running() {
		return false
	}
	n.end(ctx, j, code, "")
	return true
}

// due returns the running jobs whose life is over at now.
func (n *Node) due(now time.Time) []*job {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*job
	for _, j := range n.jobs {
		if j.running() && !j.exitAt.IsZero() && !now.Before(j.exitAt) {
			out = append(out, j)
		}
	}
	return out
}

// end records j's exit with code, by the End transition guarded by the
// revision the node last wrote (as the supervisor records an exit).
func (n *Node) end(ctx context.Context, j *job, code int, why string) {
	n.mu.Lock()
	done := j.ended()
	n.mu.Unlock()
	if done { // a signal (the API) and its life's end raced
		return
	}
	_, rev, err := n.c.store.Transition(ctx, j.gpid, pidtable.End, n.name, func(p *pidtable.Proc) error {
		c := code
		p.State, p.ExitCode, p.Error, p.Ended = pidtable.Exited, &c, why, time.Now().UTC()
		return nil
	})
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case err == nil:
		j.state, j.rev, j.endedAt = pidtable.Exited, rev, time.Now()
		n.ended++
	case errors.Is(err, pidtable.ErrNotFound) || errors.Is(err, pidtable.ErrIllegalTransition):
		// Gone or ended by someone else (ssi node rm's abandon): forget it.
		delete(n.jobs, j.gpid)
	default:
		if ctx.Err() == nil {
			n.log.Warn("record fake job end", "gpid", j.gpid, "err", err)
		}
	}
}

// archive moves the ended jobs past the retention to the history
// (Store.ArchiveAt, guarded by the revision of the end the node wrote), as
// the supervisor's gc does.
func (n *Node) archive(ctx context.Context, now time.Time) {
	cutoff := now.Add(-n.c.cfg.Retention)
	n.mu.Lock()
	var old []*job
	for _, j := range n.jobs {
		if j.ended() && j.endedAt.Before(cutoff) {
			old = append(old, j)
		}
	}
	n.mu.Unlock()
	for _, j := range old {
		_, err := n.c.store.ArchiveAt(ctx, j.gpid, j.rev)
		if err != nil && !errors.Is(err, pidtable.ErrNotFound) && !errors.Is(err, pidtable.ErrChanged) {
			if ctx.Err() == nil {
				n.log.Warn("archive fake job", "gpid", j.gpid, "err", err)
			}
			continue
		}
		n.mu.Lock()
		delete(n.jobs, j.gpid)
		n.mu.Unlock()
	}
}

// endAll records every live job exited with code (a clean stop).
func (n *Node) endAll(ctx context.Context, code int, why string) {
	n.mu.Lock()
	var live []*job
	for _, j := range n.jobs {
		if j.running() {
			live = append(live, j)
		}
	}
	n.mu.Unlock()
	for _, j := range live {
		if ctx.Err() != nil {
			return
		}
		n.end(ctx, j, code, why)
	}
}

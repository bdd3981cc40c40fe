package hollow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
)

// The fake checkpointer: a fake job moves between two hollow nodes of the
// same process by the transitions a real migration's source makes, guarded
// by the same revisions, with a fake freeze between them and no images:
//
//	MigrationClaim   running → migrating, Migration{ID, Target}   (source)
//	  (the freeze: FakeFreeze, no dump, no transfer)
//	MigrationCommit  migrating → running, node := target, epoch+1  (source)
//
// So `ssi migrate`, the balancer and a drain move hollow jobs as they move
// real ones, through the source node's API address, and the process table,
// its events and its watchers see a migration. A hollow job cannot move to a
// real node (it has no process to restore), nor a real job to a hollow node
// (the hollow server refuses the migration protocol's target calls).

// FakeFreeze is how long a fake job is frozen during its move: about what a
// small real job's stop-and-copy move takes here.
const FakeFreeze = 20 * time.Millisecond

func (c *Cluster) handleMigrate(w http.ResponseWriter, r *http.Request) {
	var req api.MigrateRequest
	n, gpid, e := c.moverOf(r)
	if e == nil {
		e = decodeBody(w, r, "migrate", &req)
	}
	if e != nil {
		apiError(w, e)
		return
	}
	to := c.names[req.Node]
	switch {
	case req.Node == n.name:
		apiError(w, api.Errorf(api.CodeBadRequest, "gpid %d already runs on %s", gpid, n.name))
		return
	case to == nil:
		apiError(w, api.Errorf(api.CodeBadRequest, "gpid %d is a hollow node's fake job: it moves only to another hollow node of the same process, and %q is not one", gpid, req.Node))
		return
	case req.FromCheckpoint:
		apiError(w, api.Errorf(api.CodeBadRequest, "gpid %d is a hollow node's fake job: it has no checkpoints to restore from", gpid))
		return
	}
	st, err := c.move(context.WithoutCancel(r.Context()), n, to, gpid)
	if err != nil {
		apiError(w, api.FromError(err))
		return
	}
	// The agent's answer: an NDJSON stream whose last event is Done with
	// the figures.
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	b, _ := json.Marshal(api.MigrateEvent{Done: true, Stats: &st})
	_, _ = w.Write(append(b, '\n'))
}

// moverOf finds the request's job and checks that the caller may move it:
// its user, an admin, or an agent (the balancer's or a drain's leader; the
// hollow server does not check which) for a job that is not pinned.
func (c *Cluster) moverOf(r *http.Request) (*Node, uint64, *api.Error) {
	id, e := caller(r)
	if e != nil {
		return nil, 0, e
	}
	if !id.Node {
		return c.jobOf(r)
	}
	gpid, n, e := c.find(r)
	if e != nil {
		return nil, 0, e
	}
	p, _, err := c.store.Get(r.Context(), gpid)
	if err != nil {
		return nil, 0, api.FromError(err)
	}
	if p.Pinned {
		return nil, 0, api.Errorf(api.CodeForbidden, "gpid %d is pinned to %s (ssi run --pin): an agent may not move it", gpid, p.Node)
	}
	return n, gpid, nil
}

// move makes the two transitions of a fake migration of from's job gpid
// to the node to, and hands the job over to it.
func (c *Cluster) move(ctx context.Context, from, to *Node, gpid uint64) (api.MigrateStats, error) {
	start := time.Now()
	from.mu.Lock()
	j := from.jobs[gpid]
	if j == nil || !j.running() {
		from.mu.Unlock()
		return api.MigrateStats{}, api.Errorf(api.CodeConflict, "gpid %d is not running on %s", gpid, from.name)
	}
	j.state = pidtable.Migrating // its life's end and signals wait for the move
	rev := j.rev
	from.mu.Unlock()
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	_, rev, err := c.store.TransitionAt(ctx, gpid, rev, pidtable.MigrationClaim, from.name, func(p *pidtable.Proc) error {
		p.State = pidtable.Migrating
		p.Migration = &pidtable.Migration{ID: id, Target: to.name, Phase: "claim", Started: time.Now().UTC()}
		return nil
	})
	if err != nil {
		from.mu.Lock()
		if j.state == pidtable.Migrating { // not ended meanwhile
			j.state = pidtable.Running
		}
		from.mu.Unlock()
		return api.MigrateStats{}, fmt.Errorf("claim gpid %d for its move: %w", gpid, err)
	}
	frozen := time.Now()
	time.Sleep(FakeFreeze)
	_, rev, err = c.store.TransitionAt(ctx, gpid, rev, pidtable.MigrationCommit, from.name, func(p *pidtable.Proc) error {
		p.Node, p.Epoch, p.State = to.name, p.Epoch+1, pidtable.Running
		p.MigrationError, p.MigrationFailed = "", time.Time{}
		p.Arrived = time.Now().UTC()
		return nil
	})
	if err != nil {
		// As a real source: put the job back running here (the release is
		// guarded by the claim's revision; a commit whose answer was lost
		// makes it fail, and the table then says where the job is).
		_, rrev, rerr := c.store.TransitionAt(ctx, gpid, rev, pidtable.MigrationRelease, from.name, func(p *pidtable.Proc) error {
			p.State, p.Migration = pidtable.Running, nil
			p.MigrationError, p.MigrationFailed = "hollow move: "+err.Error(), time.Now().UTC()
			return nil
		})
		from.mu.Lock()
		if rerr == nil && j.state == pidtable.Migrating {
			j.state, j.rev = pidtable.Running, rrev
		}
		from.mu.Unlock()
		if rerr != nil && !errors.Is(rerr, pidtable.ErrChanged) {
			from.log.Warn("release a fake move", "gpid", gpid, "err", rerr)
		}
		return api.MigrateStats{}, fmt.Errorf("commit the move of gpid %d: %w", gpid, err)
	}
	thawed := time.Now()
	from.mu.Lock()
	delete(from.jobs, gpid)
	from.mu.Unlock()
	to.mu.Lock()
	j.state, j.rev = pidtable.Running, rev
	to.jobs[gpid] = j
	to.mu.Unlock()
	return api.MigrateStats{
		GPID: gpid, From: from.name, To: to.name,
		FrozenMS: ms(thawed.Sub(frozen)), TotalMS: ms(thawed.Sub(start)),
		Note: "a hollow node's fake job: the table's transitions only (no CRIU, no images)",
	}, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

package failover

import (
	"context"
	"log/slog"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// Defaults of the Keeper and the Controller.
const (
	// DefaultKeep is how many automatic checkpoints of a job are kept, of
	// the originals and of the copies each.
	DefaultKeep = 2
	// Grace is how long after a node's lease is gone the controller waits
	// before it restores the node's jobs elsewhere (see the package doc).
	Grace = 2 * time.Second
	// Rejoin is how long an agent that fenced jobs stays without a lease.
	Rejoin = Grace + 8*time.Second
)

// KeeperConfig is what a Keeper needs from its agent.
type KeeperConfig struct {
	Node string
	// Own returns this node's records (the agent's watched cache).
	Own func() []pidtable.Proc
	// Take checkpoints p, leave-running, as an automatic checkpoint.
	Take func(ctx context.Context, p pidtable.Proc) (pidtable.Checkpoint, error)
	// Copy has a Ready node other than this one copy c (prefer, if Ready);
	// it returns the node that holds the copy.
	Copy func(ctx context.Context, c pidtable.Checkpoint, prefer string) (string, error)
	// Prune removes the automatic checkpoints of gpid held here beyond keep.
	Prune func(ctx context.Context, gpid uint64, keep int) error
	Log   *slog.Logger
	// Keep is DefaultKeep when 0.
	Keep int
}

// Keeper takes the automatic checkpoints of one node's jobs.
type Keeper struct {
	cfg KeeperConfig
	// last is when each job's last checkpoint was taken (or first seen);
	// copyNode where its last copy went.
	last     map[uint64]time.Time
	copyNode map[uint64]string
}

// NewKeeper returns a Keeper; Run runs it.
func NewKeeper(cfg KeeperConfig) *Keeper {
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	return &Keeper{cfg: cfg, last: map[uint64]time.Time{}, copyNode: map[uint64]string{}}
}

// Run checks every second which jobs are due, until ctx ends. Checkpoints
// are taken one at a time: a node does not freeze several jobs at once.
func (k *Keeper) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range k.Due(time.Now()) {
			k.checkpoint(ctx, p)
		}
	}
}

// Due returns the jobs whose checkpoint is due at now, and forgets the jobs
// no longer running here. A job seen for the first time is due a period
// after.
func (k *Keeper) Due(now time.Time) []pidtable.Proc {
	var due []pidtable.Proc
	seen := map[uint64]bool{}
	for _, p := range k.cfg.Own() {
		if p.CheckpointEvery <= 0 || p.Node != k.cfg.Node || p.State != pidtable.Running {
			continue
		}
		seen[p.GPID] = true
		last, ok := k.last[p.GPID]
		if !ok {
			k.last[p.GPID] = now
			continue
		}
		if now.Sub(last) >= p.CheckpointEvery {
			due = append(due, p)
		}
	}
	for g := range k.last {
		if !seen[g] {
			delete(k.last, g)
			delete(k.copyNode, g)
		}
	}
	return due
}

// checkpoint takes, copies and prunes one job's checkpoint. A failure is
// logged; the next period tries again.
func (k *Keeper) checkpoint(ctx context.Context, p pidtable.Proc) {
	log := k.cfg.Log.With("gpid", p.GPID)
	k.last[p.GPID] = time.Now()
	c, err := k.cfg.Take(ctx, p)
	if err != nil {
		log.Warn("automatic checkpoint failed; trying again next period", "err", err)
		return
	}
	node, err := k.cfg.Copy(ctx, c, k.copyNode[p.GPID])
	if err != nil {
		log.Warn("automatic checkpoint not copied to another node: this node's death would leave the job without a checkpoint", "checkpoint", c.Name, "err", err)
	} else {
		k.copyNode[p.GPID] = node
	}
	if err := k.cfg.Prune(ctx, p.GPID, k.cfg.Keep); err != nil {
		log.Warn("prune automatic checkpoints", "err", err)
	}
}

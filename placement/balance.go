package placement

import "time"

// This file holds the contract between the balancer's policy (a pure function,
// Balance, in this package) and the agent that runs it (reads the load table,
// carries out the moves). The simulator drives the same function.

// BalanceConfig tunes the balancer. Zero values are replaced by the defaults
// in DefaultBalanceConfig.
type BalanceConfig struct {
	// Residency is how long a job that was migrated stays on the node it
	// arrived on before it may be moved again. A job that never moved has no
	// residency: the cost model (its age against the cost of a move) alone
	// keeps young jobs where they are, as in MOSIX.
	Residency time.Duration
	// MaxInflightPerNode caps migrations in flight from or to one node.
	MaxInflightPerNode int
	// MaxMovesPerRound caps the moves one call of Balance returns.
	MaxMovesPerRound int
	// Hysteresis is the least difference in load per core between source and
	// target (after the move) that justifies a move.
	Hysteresis float64
	// TransferRate is the measured image transfer rate in bytes per second,
	// and Freeze the fixed cost of a move (dump, restore, commit) besides it.
	TransferRate float64
	Freeze       time.Duration
	// MaxFreeze is the longest the balancer may freeze a job: a job whose
	// stop-and-copy move is expected to freeze it longer (memory /
	// TransferRate + Freeze) moves post-copy, whose freeze is about Freeze
	// whatever its memory (the memory follows once it runs on the target);
	// a job that would not fit even so stays.
	MaxFreeze time.Duration
}

// BalanceNode is what the balancer knows of one node.
type BalanceNode struct {
	Node
	// Inflight counts migrations in flight from or to this node.
	Inflight int
}

// BalanceJob is what the balancer knows of one job.
type BalanceJob struct {
	GPID uint64
	// Node is where the job runs now.
	Node string
	// Age is how long the job has run in total (its start to now); MOSIX's
	// estimate of the time it will still run.
	Age time.Duration
	// Resident is how long the job has been on Node (since start or since
	// its last migration arrived); Moved whether it arrived by a migration,
	// which makes it subject to the residency period.
	Resident time.Duration
	Moved    bool
	// Demand is the CPU the job wants, in cores (its use, or its runnable
	// threads where it is starved).
	Demand float64
	// Memory is the job's resident memory in bytes: what a move ships.
	Memory int64
	// CPUs and MemoryRequest are the job's resource request, which must fit
	// on a target; Constraints the labels a target must carry.
	CPUs          float64
	MemoryRequest int64
	Constraints   map[string]string
	// Pinned jobs (ssi run --pin) are never moved; Migrating ones are already
	// moving.
	Pinned    bool
	Migrating bool
	// BackedOff is how long the job is still held back after a move of it
	// failed (the caller's backoff, growing per failure): the round moves
	// other jobs meanwhile.
	BackedOff time.Duration
}

// Move is one migration the balancer decided.
type Move struct {
	GPID     uint64
	From, To string
	// Gain is the expected time saved, Cost the expected cost of the move.
	Gain, Cost time.Duration
	Reason     string
	// PostCopy: move the job post-copy (its stop-and-copy freeze would
	// exceed MaxFreeze).
	PostCopy bool
}

// Rejection is a job the balancer considered and did not move, and why.
type Rejection struct {
	GPID   uint64
	Node   string
	Reason string
}

// Plan is the outcome of one balancing round.
type Plan struct {
	Moves    []Move
	Rejected []Rejection
}

// Package migrate is the live-migration protocol: the state machine a source
// agent drives to move a running job to a target node, its rollback rules, and
// the checksummed stream that carries a job's images between agents.
//
// Phases, recorded in the job's etcd record as they happen:
//
//	claim ─► prepare ─► dump ─► transfer ─► restore ─► commit ─► resume ─► cleanup
//	  │         │         │          │           │          │
//	  └─────────┴─────────┴──────────┴───────────┴──────────┴─► rollback (before commit)
//
//	claim     record running -> migrating (CAS): a second migrate is refused
//	prepare   target: CRIU usable, executable and workdir present, cgroup made
//	dump      source: CRIU dump --leave-stopped; the source copy is stopped, not dead
//	transfer  images and the job's output log, streamed and checksummed
//	restore   target: a new shim restores the tree, stopped, stdout/stderr re-plumbed
//	commit    record owner := target, epoch+1 (CAS on the revision the migration
//	          last wrote)
//	resume    target copy continued (SIGCONT); the target also does this by itself
//	          when it sees the commit, should the source die first
//	cleanup   source kills its stopped copy; both sides drop the images
//
// Invariant: at most one copy runs at any instant. The source copy is stopped
// before the target copy exists; the target copy is restored stopped and only
// resumed once the record names the target; the source copy is killed only
// after that commit. A job that was running is running after any failure: before
// commit, rollback discards the target copy (or, if the target is unreachable,
// leaves it stopped, to be removed when its agent reconciles) and resumes the
// source copy.
//
// Run drives the phases through a Steps implementation, so the state machine
// and its rollback are tested with fakes. A Migrator (New) is one node's part
// in migrations over the agent's jobs, which it sees through small interfaces
// (Jobs, Job, CPU; node.go): the source side (Migrate, source.go, with
// rollback.go, peer.go for the calls to the target, commit.go, postcopy.go,
// handover.go for jobs holding file locks) and the target side (the
// *Incoming methods, target.go). files.go checks the files a job uses,
// dump.go runs CRIU dumps and words their failures, timeline.go times the
// steps, stream.go is the image stream. The agent keeps the HTTP edge: its
// handlers decode a request, call a Migrator and encode the answer.
//
// Errors: the protocol's refusals carry an errdefs kind (a conflict, an
// invalid request, ...), which the agent's HTTP edge converts to the API's
// codes; ErrCommitUncertain and *JobEnded are this package's own.
package migrate

// Package failover keeps batch jobs alive across the death of their node,
// from checkpoints, without ever running one twice.
//
// A job started with ssi run --checkpoint-every D (pidtable.Proc's
// CheckpointEvery) is checkpointed every D while it runs, leave-running,
// by its node's Keeper; each checkpoint is copied to one other node (the
// same one while it stays Ready), and the newest Keep of each kind are kept.
//
// The Controller, elected among the agents (/ssi/failover/leader), plans
// on the agent's watched view of the cluster: a job with checkpoints whose
// node has had no status key (no lease) for Grace is restored, under its
// gpid with epoch+1, from its newest checkpoint held by a Ready node, on
// that node (pidtable.Store.FailoverClaim, guarded by the dead node having
// no status key, then the restore). A job with no checkpoint on a Ready
// node is recorded lost, with the reason.
//
// Fencing, the other half: an agent whose etcd lease is lost kills its
// jobs that have checkpoints at once (Fence) and stays away (no new lease)
// for Rejoin. The etcd client gives up a lease TTL after the last renewal
// it heard of, and etcd expires it a TTL after it granted that renewal,
// which is no later; the controller restores only Grace after the expiry
// (the status key's deletion). So the old copy is killed before the new
// one is claimed, unless the renewal's answer took more than Grace to
// arrive (then by at most the excess). Rejoin keeps the node NotReady long
// enough for the controller to act, so a fenced job is not recorded lost
// by its own agent coming back.
package failover

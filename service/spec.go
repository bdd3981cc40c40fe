package service

import (
	"time"

	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/ssi-cluster/ssi/pidtable"
)

// Hash is the hash of a normalized spec: two applies of the same file (or
// of files that differ only in comments, order of sections or spacing) have
// the same hash, and the second changes nothing.
func Hash(s pidtable.ServiceSpec) string { return hashOf(s) }

// RunHash is the hash of what a replica runs (command, environment,
// directory, user, limits, constraints, pinning, checkpoints): a change of it replaces
// the replicas (rolling, or all at once with --now); a change of anything
// else (replicas, restart policy, spread, stop signal) does not.
func RunHash(s pidtable.ServiceSpec) string {
	return hashOf(struct {
		Argv            []string
		Env             []string
		Workdir         string
		WorkdirOptional bool
		User            string
		CPUs            float64
		Memory          int64
		Constraints     map[string]string
		Pinned          bool
		CheckpointEvery time.Duration `json:",omitempty"` // omitted when 0: older hashes stay
	}{s.Argv, s.Env, s.Workdir, s.WorkdirOptional, s.User, s.CPUs, s.Memory, s.Constraints, s.Pinned, s.CheckpointEvery})
}

func hashOf(v any) string {
	b, _ := json.Marshal(v) // maps are encoded sorted by key
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

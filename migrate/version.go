package migrate

import (
	"strconv"

	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Protocol is the version of what two agents must agree on to move a job
// between them: the agent-to-agent calls of a migration (prepare, the image
// stream, restore, commit, resume), the layout of the images and of a job's
// directory that the target's shim restores from (shim.Spec), and the
// checkpoints copied between nodes. Each agent registers it in its node
// record; a migration between agents of different protocols is refused
// before anything is touched (CheckTarget, and the target's prepare again),
// and the balancer and drains plan no move between them. Agents whose
// builds differ only in their version string (a rebuild, a bug fix) move
// jobs between them: a rolling upgrade keeps the cluster balanced. Raise it
// with any change that an agent of the previous protocol would misread.
const Protocol = 1

// CheckProtocol refuses a move from this agent (node from, ssi version
// fromVersion) to target when their protocols differ, saying both versions
// and what to do.
func CheckProtocol(from, fromVersion string, target pidtable.Node) error {
	if target.Protocol == Protocol {
		return nil
	}
	theirs := "an ssi from before migration protocol versions"
	if target.Protocol > 0 {
		theirs = "migration protocol " + strconv.Itoa(target.Protocol)
	}
	return errdefs.Conflictf("versions differ: node %s runs ssi %s (%s), node %s runs ssi %s (migration protocol %d): a job moves only between agents of one protocol; upgrade the older agent (README, \"Upgrading a cluster\"), then move the job",
		target.Name, orUnknown(target.Version), theirs, from, orUnknown(fromVersion), Protocol)
}

func orUnknown(v string) string {
	if v == "" {
		return "(version unknown)"
	}
	return v
}

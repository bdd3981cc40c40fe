// Package nodes is what an admin does to a node's lifecycle (ssi node
// cordon|uncordon|label|drain|rm), without HTTP: the checks, the writes to
// the node's settings in etcd (pidtable.NodeConfig, merged into every
// snapshot, so placement sees them at once), the drain's record, the
// removal of a node that left or died (its jobs recorded lost, its
// certificates revoked), the messages and events that say what changed; and
// the two questions agents ask of a drain: may the drain controller's leader
// move this job (AdmitDrainMover), kill this one (DrainKill).
//
// Why not in package drain: drain is the elected controller that carries a
// drain's record out (plans, moves, deadlines); it reads the record and never
// serves a request. This package writes the record on a request, as it
// writes a cordon or a label: the edits of a node, one concept with one
// home, whoever carries them out afterwards. It uses drain's defaults only.
//
// The agent wires it (agent/nodes.go): New with a Config (the store, the
// node's name, its event log), and thin handlers that decode a request, call
// a Control method with the caller's name, and encode its answer. Errors are
// the API's (api.Errorf, with their codes); nodes does not import the agent.
package nodes

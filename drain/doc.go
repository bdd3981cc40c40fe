// Package drain is the elected controller that empties a node by live
// migration (ssi node drain): every job of the node is moved, while it runs,
// to another node, as the balancer moves jobs.
//
// The drain's whole state is its record in etcd, /ssi/drain/nodes/<node>
// (pidtable.Drain): who started it, the deadline, how many moves may be in
// flight, --force, and what became of each job of the node (pending, moving
// to X, moved with its figures, failed with the reason, unmovable, ended,
// killed, left). An admin's request writes the record and cordons the node
// in one transaction (package nodes, behind the agent's HTTP edge); nothing
// else is done by the request. Every agent runs a Controller, which
// campaigns in an etcd election (/ssi/drain/leader) on its agent's session;
// the leader runs a Step every second while some drain is active:
//
//  1. read the drain records and a snapshot of the process table;
//  2. reconcile each job entry with the table (a job no longer on the node
//     was moved, or ended; a job that was "moving" with no move in flight
//     here either committed, failed (the record's migration error), or is
//     tried again) and with the outcomes of this leader's own moves;
//  3. plan with placement.Evacuate (a pure function: smallest jobs first,
//     each to the least loaded Ready node, not cordoned, that fits it);
//  4. write the record, guarded by the election key and the record's
//     revision, and only then start the moves it names (decisions are in
//     etcd before they are acted on), through a Mover: the migrate API of
//     the node's agent, the path of ssi migrate and of the balancer;
//  5. at the deadline, with --force, kill the jobs still there (through the
//     node's agent); and close the drain once no job is left to deal with.
//
// Resumption: a CLI that is killed leaves the record, which the leader goes
// on with; a leader that dies leaves moves in flight to their source agents
// (a migration completes or rolls back on its own), and the next leader,
// which reads the same record and table, sees them committed (the job is on
// its target), rolled back (it is tried again, counted as a failure when
// the record says why) or still migrating (it waits).
//
// A Controller knows no HTTP: it reads and writes etcd through a Table,
// moves jobs through a Mover, kills through Kill and records events through
// Record; the agent wires them (agent/nodes.go).
package drain

// Package pidtable is ssi's cluster state in etcd: nodes, their liveness and load,
// and the global process table.
//
// Keys (all under /ssi/):
//
//	next-gpid          decimal counter; the first gpid no node has reserved (nodes reserve blocks of 16: gpids.go)
//	procs/<gpid>       Proc record, JSON; gpid zero-padded to 12 digits so a range
//	                   read returns the table sorted by gpid
//	history/<gpid>     an ended job's Proc after the retention, with Archived set,
//	                   on a lease (History, default 24 h): history.go
//	nodes/<name>       Node record, JSON; durable (a dead node stays listed)
//	status/<name>      NodeStatus, JSON; on the agent's lease (TTL 5 s), refreshed
//	                   every second; its absence means the node is NotReady
//	balancer/config    BalancerConfig, JSON: on/off and tuning; absent = on
//	balancer/leader/<lease>  election keys (etcd concurrency), value = node name;
//	                   the oldest is the balancer's leader
//	balancer/status    BalancerStatus, JSON, on the leader's lease, every round
//	events/<id>        Event, JSON; id = <unix ns, 20 digits>-<node>-<seq>, so a
//	                   range read is in time order; on a lease of about an hour,
//	                   trimmed to the newest MaxEvents (20,000); a job's lifecycle
//	                   events are written in its record's transaction (events.go)
//
// Every write that changes who owns a gpid, or that allocates one, is a
// compare-and-swap transaction (If ModRevision == read revision), never a plain
// read-modify-write. A gpid is allocated and its record created in the same
// transaction, guarded by the target node's status key existing, so an allocated
// gpid always has a record and is never handed out twice.
//
// Typical use:
//
//	st := pidtable.New(etcdClient)
//	p, err := st.Create(ctx, pidtable.Proc{Node: "node2", Argv: []string{"sleep", "9"}})
//	err = st.Update(ctx, p.GPID, func(p *pidtable.Proc) error { p.State = pidtable.Running; return nil })
//	snap, err := st.Snapshot(ctx) // procs, nodes and statuses at one revision
//	_, err = st.ListProcs(ctx, pidtable.ListOptions{History: true}, func(p pidtable.Proc, rev int64) error {
//		return nil // every record, live and archived, streamed in gpid order at one revision
//	})
package pidtable

// Package localcluster runs a whole ssi cluster on one machine: N network
// namespaces (one per node) joined by a bridge, one `ssi agent` in each, the first
// running the embedded etcd. The root namespace gets the bridge's address, so the
// CLI reaches the agents from a plain shell. It is what `make up` / `ssi local up`
// and the e2e tests use; nodes run exactly the code path real machines run.
//
// Layout for the cluster named "ssi" with subnet 10.210.0.0/24:
//
//	root ns: bridge ssi-br 10.210.0.1/24
//	  ├─ veth ssi-v1 ── ns ssi-node1: eth0 10.210.0.11  agent :7070, etcd :2379/:2380
//	  ├─ veth ssi-v2 ── ns ssi-node2: eth0 10.210.0.12  agent :7070
//	  └─ veth ssi-v3 ── ns ssi-node3: eth0 10.210.0.13  agent :7070
//
// Its state (names, addresses, agent PIDs) is kept in <state-dir>/<name>.json;
// Down stops agents and jobs and removes namespaces, links, cgroups, data and
// the CLI config it wrote, and works from that file or, without it, by name.
package localcluster

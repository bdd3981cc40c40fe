// Package netns builds network topologies through netlink: the bridge and the
// per-node network namespaces of a local cluster (nodes that share one kernel but
// each have their own network stack and address), and starting a process inside
// a named namespace.
//
// Named namespaces live at /run/netns/NAME, as with `ip netns add`, so the usual
// tools (`ip netns list`, `ip netns exec`) see them.
package netns

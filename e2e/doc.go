// Package e2e holds the end-to-end tests: a real cluster of network-namespace
// nodes on this machine (package localcluster), a real embedded etcd, real agents
// and shims, real processes, driven through the real `ssi` CLI binary. Nothing is
// mocked. The tests need root and skip without it; CI runs them as root.
//
// One cluster, named e2e<pid> on 10.213.<pid%250>.0/24 so that concurrent runs
// do not collide, is shared by the tests of a run; tests that kill agents
// restore them before they end.
package e2e

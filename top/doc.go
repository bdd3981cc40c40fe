// Package top is the view behind `ssi top`: the cluster's nodes as bars and
// its processes as a table sorted by CPU, refreshed from the API, with keys
// to sort, filter, signal and migrate (an interactive bubbletea program), or
// printed as plain text snapshots for scripts (batch mode, like top -b).
//
// Each refresh is one Snapshot: three API reads (GET /v1/nodes, GET
// /v1/procs, GET /v1/balancer), whatever the number of nodes or jobs; the
// package never asks a node for anything itself. A Source supplies snapshots
// and carries out actions; cmd/ssi backs it with an api.Client, tests with a
// fake.
//
//	src := myClusterSource{...}
//	err := top.Batch(ctx, os.Stdout, src, top.Options{Iterations: 1})
package top

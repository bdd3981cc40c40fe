// Package placement decides where a job runs. It is pure: a snapshot of nodes and
// a request go in, a node name (or a typed error saying why none fits) comes out.
// No I/O, no clocks; randomness comes from the caller's *rand.Rand so decisions are
// reproducible in tests and simulations.
//
// Filters run first and in this order: an explicit node (--node), readiness,
// label constraints, then free capacity against the request's CPUs and memory.
// The policy picks among the nodes that remain:
//
//	random        uniformly at random (the default)
//	least-loaded  the node with the lowest load per core, ties by fewest jobs, then name
//	two-choices   two distinct random candidates, the less loaded of them
//
// Example:
//
//	name, err := placement.Place(nodes, placement.Request{CPUs: 1}, rand.New(rand.NewPCG(1, 2)))
package placement

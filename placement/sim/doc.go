// Package sim is a discrete-event simulator of an ssi cluster's CPU
// scheduling. It drives the real placement code (placement.Place at every
// submission, placement.Balance every load-table period) with a synthetic or
// recorded workload, faster than real time, and reports makespan, slowdown and
// migrations per scenario, so that policies can be compared on 1,000 nodes and
// 100,000 jobs in seconds.
//
// The model (docs/SIMULATOR.md discusses it):
//
//   - Nodes have Config.CPUs cores and run their jobs under processor
//     sharing: with n runnable single-threaded jobs on c cores, each job runs
//     at rate min(1, c/n). A job's work is its run time alone on a core.
//   - Jobs arrive as a Poisson process; the rate is chosen so that the
//     offered load (arriving work per second / total cores) is Config.Load.
//     Work is bounded-Pareto (heavy-tailed, as Harchol-Balter & Downey found
//     process lifetimes to be, which MOSIX's age heuristic relies on); memory
//     is log-normal. Each job is submitted from an origin node, one of the
//     first Config.Origins share of the nodes (users submit from their own
//     machines).
//   - The load table is published every Config.Tick, as the agents publish
//     their status: placement sees the table of the last tick, not the
//     instant (unless Config.FreshPlacement); the balancer runs at each tick
//     on a fresh table.
//   - A migration freezes the job for placement.MigrationCost (memory /
//     TransferRate + Freeze); during it the job runs on neither node and
//     counts toward both nodes' in-flight migrations.
//
// Scenarios: none (every job stays on its origin), random, least-loaded and
// two-choices (placement.Place with that policy at submission), balance (the
// origin, then placement.Balance every tick) and random+balance.
//
// Example:
//
//	cfg := sim.DefaultConfig()
//	cfg.Nodes, cfg.Jobs = 100, 10000
//	res, err := sim.Run(cfg, sim.Balance)
package sim

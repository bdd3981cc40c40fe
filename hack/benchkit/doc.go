// Package benchkit is the harness the benchmark programs under hack/ share
// (hack/bench, hack/benchmigrate, hack/benchbalance). A program describes its
// measurements; benchkit does the rest the same way for all of them:
//
//   - Main runs a Benchmark: signals (SIGINT, SIGTERM, SIGHUP are caught, so a
//     second Ctrl-C does not cut the teardown short), the -timeout bound, the
//     markdown report on stdout, the JSON result file (-json), exit codes (0
//     done, 1 failed or partial; 2, for flag errors, is the program's).
//   - Plan repeats the variants of a measurement: warm-up rounds, measured
//     rounds, each running every variant once, in a fixed or rotating order,
//     bounded in time.
//   - Summarize gives n, median, p90 (nearest rank), min and max; Ratio
//     compares the medians of a figure and of its peer measured in the same
//     rounds, against a target.
//   - ProbeMachine records what the figures depend on: CPUs, memory, kernel,
//     CRIU and Go versions, the commit, the load average, other clusters'
//     network namespaces.
//   - ClusterFlags, BuildBinaries, ClaimName and StartCluster set up the
//     benchmark's own local cluster (package localcluster) from the working
//     tree, under a name no other run may use at the same time.
//   - Table writes the markdown tables docs/BENCHMARKS*.md quote; Result and
//     Series are the JSON form of the same figures.
//
// A program's main parses its flags, builds its Benchmark and calls Main:
//
//	func main() {
//		o, err := parseFlags()
//		if err != nil {
//			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
//			os.Exit(2)
//		}
//		os.Exit(benchkit.Main(benchkit.Config{Program: "bench", Timeout: o.timeout, JSON: o.json}, newBench(o)))
//	}
package benchkit

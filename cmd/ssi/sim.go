package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/placement/sim"
)

func simCmd(e *env) *cobra.Command {
	cfg := sim.DefaultConfig()
	var (
		memory, memoryMax      string
		transferRate           float64
		scenarios, output, svg string
		loadList               string
		parallel               int
	)
	memory, memoryMax = "64M", "16G"
	transferRate = cfg.Balance.TransferRate / 1e6
	c := &cobra.Command{
		Use:   "sim [flags]",
		Short: "Simulate placement and balancing policies on a synthetic cluster",
		Long: `Simulate a cluster (processor sharing on each node's cores) and a heavy-tailed
workload, faster than real time, under each scenario, with the real placement
and balancer code, and print makespan, slowdown and migrations per scenario.

Scenarios: none (jobs run where submitted: on one of the first --origins share
of the nodes), random, least-loaded, two-choices (placement at submission, on
the load table of the last --tick), balance (where submitted, then the
balancer every --tick), random+balance. The model is in docs/SIMULATOR.md.

  ssi sim                                   1,000 nodes, 100,000 jobs, all scenarios
  ssi sim --nodes 100 --jobs 10000 --load 0.9 -o json
  ssi sim --loads 0.5,0.7,0.9 --svg sim.svg every scenario at each load, plotted`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.MemoryMedian, err = parseSize(memory); err != nil {
				return usageErr("sim: --memory: %v", err)
			}
			if cfg.MemoryMax, err = parseSize(memoryMax); err != nil {
				return usageErr("sim: --memory-max: %v", err)
			}
			if !(transferRate > 0) {
				return usageErr("sim: --transfer-rate %g: must be above 0 (MB/s)", transferRate)
			}
			cfg.Balance.TransferRate = transferRate * 1e6
			if output != "" && output != "table" && output != "json" && output != "markdown" {
				return usageErr("sim: -o %q: want table, json or markdown", output)
			}
			if parallel < 1 {
				return usageErr("sim: --parallel %d: must be at least 1", parallel)
			}
			var scs []sim.Scenario
			for _, s := range strings.Split(scenarios, ",") {
				sc, err := sim.ParseScenario(strings.TrimSpace(s))
				if err != nil {
					return usageErr("sim: --scenarios: %v", err)
				}
				scs = append(scs, sc)
			}
			loads := []float64{cfg.Load}
			if loadList != "" {
				loads = nil
				for _, f := range strings.Split(loadList, ",") {
					l, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
					if err != nil || !(l > 0) || math.IsInf(l, 0) {
						return usageErr("sim: --loads: %q is not a load above 0", f)
					}
					loads = append(loads, l)
				}
			}
			if err := cfg.Validate(); err != nil {
				return usageErr("%v", err)
			}
			var results []sim.Result
			for _, l := range loads {
				cfg.Load = l
				rs, err := runSims(e, cfg, scs, parallel)
				if err != nil {
					return err
				}
				results = append(results, rs...)
			}
			switch output {
			case "json":
				err = writeJSONOut(e.stdout, results)
			case "markdown":
				err = sim.WriteMarkdown(e.stdout, results)
			default:
				err = sim.WriteTable(e.stdout, results)
			}
			if err != nil || svg == "" {
				return err
			}
			return writeSimSVG(e, cfg, results, svg)
		},
	}
	f := c.Flags()
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "number of nodes")
	f.IntVar(&cfg.NotReady, "not-ready", cfg.NotReady, "how many of the nodes are NotReady for the whole run")
	f.IntVar(&cfg.CPUs, "cpus", cfg.CPUs, "cores per node")
	f.IntVar(&cfg.Jobs, "jobs", cfg.Jobs, "number of jobs")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the workload and of every random choice")
	f.Float64Var(&cfg.Load, "load", cfg.Load, "offered load: arriving work per second / Ready cores")
	f.Float64Var(&cfg.Origins, "origins", cfg.Origins, "share of the nodes jobs are submitted from, in (0, 1]")
	f.Float64Var(&cfg.Alpha, "alpha", cfg.Alpha, "tail index of the bounded-Pareto work")
	f.DurationVar(&cfg.MinWork, "min-work", cfg.MinWork, "shortest job (run time alone on a core)")
	f.DurationVar(&cfg.MaxWork, "max-work", cfg.MaxWork, "longest job")
	f.StringVar(&memory, "memory", memory, "median resident memory of a job (log-normal)")
	f.Float64Var(&cfg.MemorySigma, "memory-sigma", cfg.MemorySigma, "sigma of the log-normal memory")
	f.StringVar(&memoryMax, "memory-max", memoryMax, "largest resident memory of a job")
	f.Float64Var(&cfg.Pinned, "pinned", cfg.Pinned, "share of jobs submitted with --pin")
	f.DurationVar(&cfg.Tick, "tick", cfg.Tick, "period of the load table and of the balancer")
	f.BoolVar(&cfg.FreshPlacement, "fresh-placement", cfg.FreshPlacement, "placement sees current loads, not the last table")
	f.IntVar(&cfg.MaxJobsPerNode, "max-jobs-per-node", cfg.MaxJobsPerNode, "oldest jobs per overloaded node given to the balancer each round (0: all)")
	f.DurationVar(&cfg.Balance.Residency, "residency", cfg.Balance.Residency, "balancer: least time on a node before a job may move again")
	f.IntVar(&cfg.Balance.MaxInflightPerNode, "max-inflight", cfg.Balance.MaxInflightPerNode, "balancer: migrations in flight per node")
	f.IntVar(&cfg.Balance.MaxMovesPerRound, "max-moves", cfg.Balance.MaxMovesPerRound, "balancer: moves per round")
	f.Float64Var(&cfg.Balance.Hysteresis, "hysteresis", cfg.Balance.Hysteresis, "balancer: least load-per-core difference worth a move")
	f.Float64Var(&transferRate, "transfer-rate", transferRate, "balancer: migration rate in MB/s (10^6 bytes)")
	f.DurationVar(&cfg.Balance.Freeze, "freeze", cfg.Balance.Freeze, "balancer: fixed cost of a migration")
	f.IntVar(&cfg.Failures, "failures", cfg.Failures, "nodes that die during the run (at random times over the arrivals; they stay dead)")
	f.DurationVar(&cfg.CheckpointEvery, "checkpoint-every", cfg.CheckpointEvery, "period of every job's checkpoints: a dead node's jobs restart elsewhere from the last one (0: they are lost)")
	f.DurationVar(&cfg.Detect, "detect", cfg.Detect, "time from a node's death to the restore of its jobs (lease TTL + failover grace)")
	f.StringVar(&scenarios, "scenarios", joinScenarios(sim.Scenarios), "comma-separated scenarios")
	f.StringVarP(&output, "output", "o", "", "output format: table (default), json or markdown")
	f.StringVar(&loadList, "loads", "", "comma-separated loads to run in turn (instead of --load)")
	f.StringVar(&svg, "svg", "", "also plot mean slowdown per scenario against load to this SVG file")
	f.IntVar(&parallel, "parallel", 1, "scenarios simulated at once")
	return c
}

func joinScenarios(s []sim.Scenario) string {
	names := make([]string, len(s))
	for i, sc := range s {
		names[i] = string(sc)
	}
	return strings.Join(names, ",")
}

// runSims runs every scenario on cfg's workload, parallel at a time, and
// returns the results in the order of scs.
func runSims(e *env, cfg sim.Config, scs []sim.Scenario, parallel int) ([]sim.Result, error) {
	jobs, err := sim.Synthetic(cfg)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	results := make([]sim.Result, len(scs))
	errs := make([]error, len(scs))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, sc := range scs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i], errs[i] = sim.RunWorkload(cfg, jobs, sc)
			mu.Lock()
			fmt.Fprintf(e.stderr, "sim: %s at load %g: %.1fs\n", sc, cfg.Load, results[i].Wall)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("sim %s: %w", scs[i], err)
		}
	}
	return results, nil
}

func writeSimSVG(e *env, cfg sim.Config, results []sim.Result, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("sim: --svg: %w", err)
	}
	title := fmt.Sprintf("ssi sim: %d nodes × %d cores, %d jobs, origins %g, seed %d", cfg.Nodes, cfg.CPUs, cfg.Jobs, cfg.Origins, cfg.Seed)
	if err := sim.WriteSVG(f, results, title); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sim: --svg: %w", err)
	}
	fmt.Fprintf(e.stderr, "sim: wrote %s\n", path)
	return nil
}

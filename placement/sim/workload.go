package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/ssi-cluster/ssi/placement"
)

// ErrBadConfig is wrapped by every error of Config.Validate.
var ErrBadConfig = errors.New("sim: invalid config")

// Limits of Config.Validate.
const (
	MaxNodes = 10_000
	MaxJobs  = 1_000_000
)

// Config describes a simulated cluster and its workload. The names in
// Validate's errors are those of the `ssi sim` flags.
type Config struct {
	// Nodes is the number of nodes, NotReady how many of them (the last ones)
	// are NotReady for the whole run: they never get a job.
	Nodes    int
	NotReady int
	// CPUs is each node's number of cores.
	CPUs int
	// Jobs is the number of jobs; Seed fixes the workload and every random choice.
	Jobs int
	Seed uint64
	// Load is the offered load: arriving work per second over the Ready
	// cores. Above 1 the cluster cannot keep up and queues grow for the whole
	// arrival period.
	Load float64
	// Origins is the share of the Ready nodes jobs are submitted from, in (0, 1].
	Origins float64
	// Alpha, MinWork and MaxWork shape the bounded-Pareto work (run time on
	// an idle core); Alpha 1 is the lifetime distribution Harchol-Balter and
	// Downey measured (P(work > t) ∝ 1/t).
	Alpha            float64
	MinWork, MaxWork time.Duration
	// MemoryMedian and MemorySigma shape the log-normal resident memory,
	// clamped to [1 MiB, MemoryMax].
	MemoryMedian int64
	MemorySigma  float64
	MemoryMax    int64
	// Pinned is the share of jobs submitted with --pin (never moved).
	Pinned float64
	// Tick is the period of the load table and of the balancer's rounds.
	Tick time.Duration
	// FreshPlacement makes placement see the current loads instead of the
	// table of the last tick.
	FreshPlacement bool
	// Balance configures the balancer (zero fields take its defaults).
	Balance placement.BalanceConfig
	// MaxJobsPerNode caps the jobs of one overloaded node handed to Balance
	// each round: its oldest ones (0: all). See Run.
	MaxJobsPerNode int
	// Failures is the number of Ready nodes that die during the run, at
	// times drawn uniformly over the arrival period (failures.go); they do
	// not come back. CheckpointEvery is the period of every job's automatic
	// checkpoints (0: none, and a dead node's jobs are lost); Detect is the
	// time from a death to the restore of its jobs elsewhere (the lease TTL
	// plus the failover controller's grace).
	Failures        int
	CheckpointEvery time.Duration
	Detect          time.Duration
}

// DefaultConfig is the configuration of `ssi sim` without flags.
func DefaultConfig() Config {
	return Config{
		Nodes:          1000,
		CPUs:           4,
		Jobs:           100_000,
		Seed:           1,
		Load:           0.7,
		Origins:        0.2,
		Alpha:          1,
		MinWork:        time.Second,
		MaxWork:        time.Hour,
		MemoryMedian:   64 << 20,
		MemorySigma:    1.5,
		MemoryMax:      16 << 30,
		Tick:           time.Second,
		Balance:        placement.DefaultBalanceConfig(),
		MaxJobsPerNode: 32,
		Detect:         7 * time.Second,
	}
}

// Validate reports the first invalid field, named as its `ssi sim` flag.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, args...)...)
	}
	switch {
	case c.Nodes < 1 || c.Nodes > MaxNodes:
		return bad("--nodes %d: must be between 1 and %d", c.Nodes, MaxNodes)
	case c.NotReady < 0 || c.NotReady >= c.Nodes:
		return bad("--not-ready %d: must be ≥ 0 and less than --nodes (%d)", c.NotReady, c.Nodes)
	case c.CPUs < 1:
		return bad("--cpus %d: must be at least 1", c.CPUs)
	case c.Jobs < 1 || c.Jobs > MaxJobs:
		return bad("--jobs %d: must be between 1 and %d", c.Jobs, MaxJobs)
	case !(c.Load > 0) || math.IsInf(c.Load, 0):
		return bad("--load %g: must be a number above 0 (1 = arriving work equals the cluster's cores)", c.Load)
	case !(c.Origins > 0 && c.Origins <= 1):
		return bad("--origins %g: must be in (0, 1] (the share of nodes jobs are submitted from)", c.Origins)
	case !(c.Alpha > 0) || math.IsInf(c.Alpha, 0):
		return bad("--alpha %g: must be above 0", c.Alpha)
	case c.MinWork <= 0:
		return bad("--min-work %s: must be above 0", c.MinWork)
	case c.MaxWork < c.MinWork:
		return bad("--max-work %s: must be at least --min-work (%s)", c.MaxWork, c.MinWork)
	case c.MemoryMedian < 1<<20:
		return bad("--memory %d: must be at least 1MiB", c.MemoryMedian)
	case !(c.MemorySigma >= 0) || math.IsInf(c.MemorySigma, 0):
		return bad("--memory-sigma %g: must be ≥ 0", c.MemorySigma)
	case c.MemoryMax < c.MemoryMedian:
		return bad("--memory-max %d: must be at least --memory (%d)", c.MemoryMax, c.MemoryMedian)
	case !(c.Pinned >= 0 && c.Pinned <= 1):
		return bad("--pinned %g: must be in [0, 1]", c.Pinned)
	case c.Tick <= 0:
		return bad("--tick %s: must be above 0", c.Tick)
	case c.Failures < 0 || c.Failures >= c.ready():
		return bad("--failures %d: must be ≥ 0 and less than the Ready nodes (%d)", c.Failures, c.ready())
	case c.CheckpointEvery < 0:
		return bad("--checkpoint-every %s: must be ≥ 0 (0: no checkpoints, a dead node's jobs are lost)", c.CheckpointEvery)
	case c.Detect < 0:
		return bad("--detect %s: must be ≥ 0", c.Detect)
	case c.MaxJobsPerNode < 0:
		return bad("--max-jobs-per-node %d: must be ≥ 0 (0: all)", c.MaxJobsPerNode)
	case c.Balance.Residency < 0:
		return bad("--residency %s: must be ≥ 0 (0: the default)", c.Balance.Residency)
	case c.Balance.MaxInflightPerNode < 0:
		return bad("--max-inflight %d: must be ≥ 0 (0: the default)", c.Balance.MaxInflightPerNode)
	case c.Balance.MaxMovesPerRound < 0:
		return bad("--max-moves %d: must be ≥ 0 (0: the default)", c.Balance.MaxMovesPerRound)
	case !(c.Balance.Hysteresis >= 0):
		return bad("--hysteresis %g: must be ≥ 0 (0: the default)", c.Balance.Hysteresis)
	case c.Balance.Freeze < 0:
		return bad("--freeze %s: must be ≥ 0 (0: the default)", c.Balance.Freeze)
	}
	if err := c.Balance.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	return nil
}

// ready is the number of Ready nodes; origins the number of origin nodes.
func (c Config) ready() int   { return c.Nodes - c.NotReady }
func (c Config) origins() int { return max(1, int(math.Round(c.Origins*float64(c.ready())))) }

// JobSpec is one job of a workload.
type JobSpec struct {
	// Arrival is when the job is submitted, from the start of the run.
	Arrival time.Duration
	// Work is its run time alone on an idle core.
	Work time.Duration
	// Memory is its resident memory in bytes (what a migration ships).
	Memory int64
	// Origin is the index of the node it is submitted from (a Ready node).
	Origin int
	Pinned bool
}

// Synthetic generates cfg's workload, sorted by arrival. The arrival rate is
// set from the generated work so that the offered load is exactly cfg.Load.
func Synthetic(cfg Config) ([]JobSpec, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rnd := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	jobs := make([]JobSpec, cfg.Jobs)
	lo, hi := cfg.MinWork.Seconds(), cfg.MaxWork.Seconds()
	var total float64
	origins := cfg.origins()
	for i := range jobs {
		w := boundedPareto(rnd.Float64(), cfg.Alpha, lo, hi)
		total += w
		m := float64(cfg.MemoryMedian) * math.Exp(cfg.MemorySigma*rnd.NormFloat64())
		jobs[i] = JobSpec{
			Work:   time.Duration(w * float64(time.Second)),
			Memory: int64(min(max(m, 1<<20), float64(cfg.MemoryMax))),
			Origin: rnd.IntN(origins),
			Pinned: rnd.Float64() < cfg.Pinned,
		}
	}
	rate := cfg.Load * float64(cfg.ready()*cfg.CPUs) / (total / float64(len(jobs))) // jobs per second
	var t float64
	for i := range jobs {
		if i > 0 {
			t += rnd.ExpFloat64() / rate
		}
		jobs[i].Arrival = time.Duration(t * float64(time.Second))
	}
	return jobs, nil
}

// boundedPareto is the inverse of the bounded-Pareto CDF on [lo, hi] at u ∈ [0, 1).
func boundedPareto(u, alpha, lo, hi float64) float64 {
	if lo == hi {
		return lo
	}
	r := math.Pow(lo/hi, alpha)
	return min(hi, lo/math.Pow(1-u*(1-r), 1/alpha))
}

package sim

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func small() Config {
	c := DefaultConfig()
	c.Nodes, c.Jobs, c.MaxWork = 20, 2000, 10*time.Minute
	return c
}

// TestProcessorSharing checks the CPU model against a hand computation: two
// jobs of 1 s and 2 s start together on one core; each runs at rate 1/2 until
// the first is done at t=2, the second then runs alone and ends at t=3.
func TestProcessorSharing(t *testing.T) {
	cfg := small()
	cfg.Nodes, cfg.CPUs = 1, 1
	jobs := []JobSpec{{Work: time.Second, Memory: 1 << 20}, {Work: 2 * time.Second, Memory: 1 << 20}}
	r, err := RunWorkload(cfg, jobs, None)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.Makespan-3) > 1e-9 || math.Abs(r.MeanSlowdown-(2.0+1.5)/2) > 1e-9 {
		t.Fatalf("makespan %g (want 3), mean slowdown %g (want 1.75)", r.Makespan, r.MeanSlowdown)
	}
	// Two cores: both run alone.
	cfg.CPUs = 2
	if r, _ = RunWorkload(cfg, jobs, None); math.Abs(r.Makespan-2) > 1e-9 || math.Abs(r.MeanSlowdown-1) > 1e-9 {
		t.Fatalf("2 cores: makespan %g (want 2), mean slowdown %g (want 1)", r.Makespan, r.MeanSlowdown)
	}
}

// TestMigrationCost: one node runs two long jobs on one core, an idle node
// waits; the balancer moves the older one once it is resident, and the
// moved job pays exactly placement.MigrationCost in frozen time.
func TestMigrationCost(t *testing.T) {
	cfg := small()
	cfg.Nodes, cfg.CPUs, cfg.Origins = 2, 1, 0.5
	jobs := []JobSpec{{Work: 100 * time.Second, Memory: 250e6}, {Arrival: time.Second, Work: 100 * time.Second, Memory: 250e6}}
	r, err := RunWorkload(cfg, jobs, Balance)
	if err != nil {
		t.Fatal(err)
	}
	if r.Migrations != 1 || math.Abs(r.Frozen-1.2) > 1e-9 {
		t.Fatalf("migrations %d, frozen %gs; want 1 move frozen 1.2s (250 MB at 250 MB/s + 200ms)", r.Migrations, r.Frozen)
	}
	// The one move is of a job that had never moved: no residency applies
	// (only the cost model), so no moved job was moved again.
	if r.MinResidentAtMove >= 0 {
		t.Fatalf("a moved job moved again after %gs", r.MinResidentAtMove)
	}
}

func TestDeterministic(t *testing.T) {
	cfg := small()
	for _, s := range Scenarios {
		a, err := Run(cfg, s)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Run(cfg, s)
		a.Wall, b.Wall = 0, 0
		if a != b {
			t.Fatalf("%s: two runs differ:\n%+v\n%+v", s, a, b)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Nodes = 0 }, "--nodes 0"},
		{func(c *Config) { c.Load = -0.5 }, "--load -0.5"},
		{func(c *Config) { c.Load = math.NaN() }, "--load NaN"},
		{func(c *Config) { c.NotReady = c.Nodes }, "--not-ready"},
		{func(c *Config) { c.Tick = 0 }, "--tick 0s"},
		{func(c *Config) { c.Balance.Hysteresis = -1 }, "--hysteresis -1"},
	} {
		cfg := DefaultConfig()
		c.mut(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err %v, want %q", err, c.want)
		}
	}
	if _, err := ParseScenario("best"); !errors.Is(err, ErrUnknownScenario) {
		t.Fatalf("ParseScenario(best): %v", err)
	}
}

// TestSimProperties runs random small clusters and workloads under every
// scenario with the real Place and Balance: the run completes every job
// (RunWorkload fails with ErrInvariant if a job was placed on or moved to a
// NotReady node, moved from a node it was not on, or moved while pinned), no
// job runs faster than alone, only the balancing scenarios migrate, and no
// job is moved within its residency period, in particular not back.
func TestSimProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := DefaultConfig()
		cfg.Nodes = rapid.IntRange(1, 12).Draw(t, "nodes")
		cfg.NotReady = rapid.IntRange(0, cfg.Nodes-1).Draw(t, "notReady")
		cfg.CPUs = rapid.IntRange(1, 4).Draw(t, "cpus")
		cfg.Jobs = rapid.IntRange(1, 200).Draw(t, "jobs")
		cfg.Seed = rapid.Uint64().Draw(t, "seed")
		cfg.Load = rapid.SampledFrom([]float64{0.3, 0.7, 1, 1.5}).Draw(t, "load")
		cfg.Origins = rapid.SampledFrom([]float64{0.1, 0.5, 1}).Draw(t, "origins")
		cfg.MaxWork = time.Duration(rapid.IntRange(1, 300).Draw(t, "maxWorkS")) * time.Second
		cfg.Pinned = rapid.SampledFrom([]float64{0, 0.3}).Draw(t, "pinned")
		cfg.FreshPlacement = rapid.Bool().Draw(t, "fresh")
		cfg.Balance.Residency = time.Duration(rapid.IntRange(1, 30).Draw(t, "residencyS")) * time.Second
		cfg.Balance.MaxInflightPerNode = rapid.IntRange(1, 3).Draw(t, "k")
		cfg.Balance.Hysteresis = rapid.SampledFrom([]float64{0.1, 0.25, 1}).Draw(t, "hysteresis")
		cfg.Balance.Freeze = time.Duration(rapid.IntRange(1, 2000).Draw(t, "freezeMs")) * time.Millisecond
		s := rapid.SampledFrom(Scenarios).Draw(t, "scenario")
		r, err := Run(cfg, s)
		if err != nil {
			t.Fatal(err)
		}
		if r.Jobs != cfg.Jobs || r.MeanSlowdown < 1-1e-9 || r.P50Slowdown < 1-1e-9 {
			t.Fatalf("result %+v", r)
		}
		if !s.balances() && (r.Migrations != 0 || r.Rounds != 0) {
			t.Fatalf("%s migrated: %+v", s, r)
		}
		res := cfg.Balance.Residency.Seconds()
		if r.MinResidentAtMove >= 0 && r.MinResidentAtMove < res-1e-9 {
			t.Fatalf("a job moved %gs after it arrived on its node (residency %gs)", r.MinResidentAtMove, res)
		}
		if r.MovedBack > 0 && r.MinReturn < res-1e-9 {
			t.Fatalf("a job moved back %gs after it left (residency %gs)", r.MinReturn, res)
		}
		if cfg.Pinned == 0 && r.MovedJobs > r.Migrations {
			t.Fatalf("moved jobs %d > migrations %d", r.MovedJobs, r.Migrations)
		}
	})
}

func TestWriteSVG(t *testing.T) {
	cfg := small()
	cfg.Jobs = 300
	var rs []Result
	for _, l := range []float64{0.5, 0.9} {
		cfg.Load = l
		for _, s := range []Scenario{None, Random, Balance} {
			r, err := Run(cfg, s)
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
	}
	var b bytes.Buffer
	if err := WriteSVG(&b, rs, "test <&>"); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b.String())
		}
	}
	for _, s := range []string{"none", "random", "balance", "polyline"} {
		if !strings.Contains(b.String(), s) {
			t.Fatalf("SVG lacks %q", s)
		}
	}
	var md bytes.Buffer
	if err := WriteMarkdown(&md, rs); err != nil || strings.Count(md.String(), "\n") != len(rs)+2 {
		t.Fatalf("markdown: %v\n%s", err, md.String())
	}
}

// TestFailures: with checkpoints, every job of a dead node is restored on a
// Ready node (never a dead one: the engine fails with ErrInvariant) and the
// run finishes every job, with some work redone; without checkpoints, the
// dead nodes' jobs are lost and counted, and the rest finish; no failure,
// nothing of either.
func TestFailures(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Nodes, cfg.Jobs, cfg.Load, cfg.Failures = 50, 5000, 0.7, 10
	cfg.CheckpointEvery = 30 * time.Second
	for _, sc := range []Scenario{LeastLoaded, Balance} {
		r, err := Run(cfg, sc)
		if err != nil {
			t.Fatalf("%s with checkpoints: %v", sc, err)
		}
		if r.Failures != 10 || r.FailedOver == 0 || r.Lost != 0 || r.Redone <= 0 {
			t.Fatalf("%s with checkpoints: %+v", sc, r)
		}
		t.Logf("%s, checkpoints every 30s: %d failures, %d jobs restored, %.0f s of work redone, mean slowdown %.2f", sc, r.Failures, r.FailedOver, r.Redone, r.MeanSlowdown)
	}
	cfg.CheckpointEvery = 0
	r, err := Run(cfg, LeastLoaded)
	if err != nil || r.Lost == 0 || r.FailedOver != 0 || r.Redone != 0 {
		t.Fatalf("without checkpoints: %+v, %v", r, err)
	}
	t.Logf("no checkpoints: %d failures, %d jobs lost", r.Failures, r.Lost)
	cfg.Failures = 0
	if r, err := Run(cfg, LeastLoaded); err != nil || r.Failures+r.Lost+r.FailedOver != 0 {
		t.Fatalf("no failures: %+v, %v", r, err)
	}
	cfg.Failures = cfg.Nodes
	if _, err := Run(cfg, LeastLoaded); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("every node failing: %v, want ErrBadConfig", err)
	}
}

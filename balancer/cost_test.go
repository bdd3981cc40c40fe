package balancer

import (
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
)

// TestMeasure: small moves teach the freeze only; big ones the rate.
func TestMeasure(t *testing.T) {
	var c costModel
	// 1 MiB frozen 300 ms: nearly all fixed cost.
	c.measure(api.MigrateStats{ImageBytes: 1 << 20, FrozenMS: 300})
	if c.rate != 0 || c.freeze < 290*time.Millisecond || c.freeze > 300*time.Millisecond {
		t.Fatalf("after a small move: rate %g, freeze %s; want no rate, freeze ~300ms", c.rate, c.freeze)
	}
	// 512 MiB frozen 2.3 s: about 2 s of it is the size.
	c.measure(api.MigrateStats{ImageBytes: 512 << 20, FrozenMS: 2300})
	if c.rate < 200e6 || c.rate > 320e6 {
		t.Errorf("after a 512 MiB move: rate %g B/s, want about 512 MiB / 2 s", c.rate)
	}
	if c.measured != 2 {
		t.Errorf("measured %d moves, want 2", c.measured)
	}
	// A lost stream, a post-copy move, a move without figures: not measured.
	for _, st := range []api.MigrateStats{{StreamLost: true}, {PostCopy: true, ImageBytes: 1 << 30, FrozenMS: 200}, {ImageBytes: 1 << 20}} {
		before := c
		c.measure(st)
		if c != before {
			t.Errorf("%+v was measured: %+v -> %+v", st, before, c)
		}
	}
}

// TestMeasureWeights: the newest move weighs rateWeight in the freeze.
func TestMeasureWeights(t *testing.T) {
	c := costModel{}
	c.measure(api.MigrateStats{ImageBytes: 1, FrozenMS: 100})
	c.measure(api.MigrateStats{ImageBytes: 1, FrozenMS: 200})
	want := time.Duration((1-rateWeight)*float64(100*time.Millisecond) + rateWeight*float64(200*time.Millisecond))
	if d := c.freeze - want; d < -time.Microsecond || d > time.Microsecond {
		t.Errorf("freeze %s, want %s", c.freeze, want)
	}
}

package balancer

import (
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/placement"
)

const (
	// rateWeight is the weight of the newest move in the measured transfer
	// rate and freeze (an exponentially weighted average).
	rateWeight = 0.3
	// minRateSample is the least image size of a move that says something
	// about the transfer rate (see measure).
	minRateSample = 32 << 20
)

// costModel is what the moves made so far measured of a move's cost, in the
// policy's sense (placement.DefaultBalanceConfig): rate is the rate of the
// whole stop-and-copy (dump, transfer, restore) per image byte, freeze the
// fixed part of a move. Both are zero until measured (the policy then uses
// its defaults). Callers hold Balancer.mu.
type costModel struct {
	rate     float64       // bytes/s, 0 until a big enough move was measured
	freeze   time.Duration // 0 until a move was measured
	measured int
}

// measure folds a finished move into the two figures. One move of a small job
// says nothing about the rate (its frozen time is nearly all fixed costs), so:
// every move updates freeze with its frozen time minus what the current rate
// explains; only moves of at least minRateSample image bytes update the rate
// with what the current freeze leaves unexplained. Both are exponentially
// weighted averages.
func (c *costModel) measure(st api.MigrateStats) {
	if st.StreamLost || st.PostCopy || st.ImageBytes <= 0 || st.FrozenMS <= 0 {
		return // a post-copy move's freeze says nothing of the transfer rate
	}
	def := placement.DefaultBalanceConfig()
	rate, freeze := c.rate, c.freeze
	if rate == 0 {
		rate = def.TransferRate
	}
	if freeze == 0 {
		freeze = def.Freeze
	}
	frozen := time.Duration(st.FrozenMS * float64(time.Millisecond))
	byRate := time.Duration(float64(st.ImageBytes) / rate * float64(time.Second))
	fold := func(old, sample float64) float64 {
		if c.measured == 0 {
			return sample
		}
		return (1-rateWeight)*old + rateWeight*sample
	}
	c.freeze = time.Duration(fold(float64(c.freeze), float64(max(frozen-byRate, 0))))
	if st.ImageBytes >= minRateSample && frozen > freeze {
		sample := float64(st.ImageBytes) / (frozen - freeze).Seconds()
		if c.rate == 0 {
			c.rate = sample
		} else {
			c.rate = (1-rateWeight)*c.rate + rateWeight*sample
		}
	}
	c.measured++
}

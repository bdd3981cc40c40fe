package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
)

// Bounds of single operations.
const (
	cliTimeout     = 60 * time.Second // one ssi CLI process (migrate excepted)
	migrateTimeout = 6 * time.Minute  // one ssi migrate (the agent's own bound is 5 min)
	criuTimeout    = 5 * time.Minute  // one criu dump or restore
	readyLimit     = 60 * time.Second // nodes Ready after up
	goneLimit      = 60 * time.Second // a killed job gone
	aliveCheck     = 1200 * time.Millisecond
	memWaitLimit   = 2 * time.Minute // waiting for memory before a round
	pollEvery      = 50 * time.Millisecond
	maxRetries     = 2 // repeated attempts of one failed run
)

// jobProgram is the job, for every method. argv: N_MIB [quiet].
const jobProgram = `import os, sys, time
n = int(sys.argv[1]) * 1048576
b = bytearray(range(256)) * (n // 256)
print("ready", flush=True)
if len(sys.argv) > 2:
    fd = os.open("/dev/null", os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
i = 0
while True:
    time.sleep(1)
    i += 1
    if b[n - 1] != 255 or b[n // 2] != (n // 2) % 256:
        sys.exit(3)
    print(i, flush=True)
`

// method is one way of moving the job.
type method string

const (
	mRaw     method = "raw"
	mRawKeep method = "raw-keep"
	mSSI     method = "ssi"
	mSSIPost method = "ssi-postcopy"
)

var allMethods = []method{mRaw, mSSI, mSSIPost, mRawKeep}

// isSSI: a move through `ssi migrate` (stats in sample.stats).
func (m method) isSSI() bool { return m == mSSI || m == mSSIPost }

// sample is one measured run of one method.
type sample struct {
	round  int
	method method
	ready  time.Duration // job start to "ready" seen (first touch of its memory)
	image  int64         // image bytes

	// raw and raw-keep
	dump, stream, restore time.Duration // wall clock of criu dump / the in-process stream (raw-keep) / criu restore
	criuFrozen            time.Duration // CRIU's own "Frozen time" (dump --display-stats)
	criuMemWrite          time.Duration // CRIU's "Memory write time"
	criuRestore           time.Duration // CRIU's "Restore time" (restore --display-stats)
	encode                time.Duration // raw-keep: ssi's image stream written to io.Discard

	// ssi and ssi-postcopy
	stats api.MigrateStats
	cli   time.Duration // wall clock of `ssi migrate`
}

type sizeResult struct {
	size    int
	skipped string
	samples []sample
	warm    []sample
	noise   noise
	notes   []string
}

// errStopSize ends the rounds of a size whose memory did not come back.
var errStopSize = errors.New("not enough memory for another round")

// measureSize runs the warm-up and measured rounds of one size; each round
// runs every method once, in an order rotating from round to round.
func (b *bench) measureSize(ctx context.Context, size int) error {
	res := &sizeResult{size: size}
	b.rep.sizes = append(b.rep.sizes, res)
	need := 4*int64(size) + b.o.headroomMiB
	if avail := memAvailableMiB(); avail < need {
		res.skipped = fmt.Sprintf("skipped: MemAvailable %d MiB < 4 x %d MiB + %d MiB headroom", avail, size, b.o.headroomMiB)
		b.log.Warn(res.skipped)
		return nil
	}
	n0 := sampleNoise()
	defer func() { res.noise = n0.since() }()
	ms := b.o.methods
	plan := benchkit.Plan{Warmup: b.o.warmup, Runs: b.o.runs, Rotate: true,
		Before: func(ctx context.Context, r benchkit.Round) error {
			err := b.waitMemory(ctx, need)
			if err != nil && ctx.Err() == nil {
				res.notes = append(res.notes, fmt.Sprintf("stopped after %d measured rounds: %v", max(r.N-1, 0), err))
				return errStopSize
			}
			return err
		}}
	err := plan.Do(ctx, len(ms), func(ctx context.Context, r benchkit.Round, v int) error {
		m := ms[v]
		b.log.Info("run", "size_mib", size, "round", r.N, "warmup", r.Warm(), "method", m)
		var s sample
		var err error
		for attempt := 1; ; attempt++ {
			if m.isSSI() {
				s, err = b.ssiRun(ctx, size, m == mSSIPost)
			} else {
				s, err = b.rawRun(ctx, size, m == mRawKeep)
			}
			if err == nil || ctx.Err() != nil || attempt > maxRetries {
				break
			}
			// Others may be using CRIU on this machine at the same time; a failed
			// attempt is reported, not measured, and tried again with a fresh job.
			res.notes = append(res.notes, fmt.Sprintf("round %d, %s: attempt %d failed and was repeated: %v", r.N, m, attempt, err))
			b.log.Warn("attempt failed; repeating", "size_mib", size, "method", m, "err", err)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		s.round, s.method = r.N, m
		b.log.Info("done", "size_mib", size, "method", m, "sample", s.String())
		if r.Warm() {
			res.warm = append(res.warm, s)
		} else {
			res.samples = append(res.samples, s)
		}
		return nil
	})
	if errors.Is(err, errStopSize) {
		return nil
	}
	return err
}

// waitMemory waits until MemAvailable is at least need MiB.
func (b *bench) waitMemory(ctx context.Context, need int64) error {
	deadline := time.Now().Add(memWaitLimit)
	for {
		avail := memAvailableMiB()
		if avail >= need {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MemAvailable %d MiB < %d MiB for %s", avail, need, memWaitLimit)
		}
		if err := benchkit.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

func (s sample) String() string {
	if s.method.isSSI() {
		pc := ""
		if s.stats.PostCopy {
			pc = fmt.Sprintf(" pages %.3fs lazy %d MiB", s.stats.PagesMS/1000, s.stats.LazyBytes>>20)
		}
		return fmt.Sprintf("frozen %.3fs total %.3fs (dump %.3f transfer %.3f restore %.3f)%s cli %.3fs image %d MiB ready %.2fs",
			s.stats.FrozenMS/1000, s.stats.TotalMS/1000, s.stats.DumpMS/1000, s.stats.TransferMS/1000, s.stats.RestoreMS/1000, pc, s.cli.Seconds(), s.image>>20, s.ready.Seconds())
	}
	c := ""
	if s.method == mRawKeep {
		c = fmt.Sprintf(" stream %.3fs (encode %.3fs)", s.stream.Seconds(), s.encode.Seconds())
	}
	return fmt.Sprintf("dump %.3fs%s restore %.3fs image %d MiB ready %.2fs (criu frozen %.3f memwrite %.3f restore %.3f)",
		s.dump.Seconds(), c, s.restore.Seconds(), s.image>>20, s.ready.Seconds(), s.criuFrozen.Seconds(), s.criuMemWrite.Seconds(), s.criuRestore.Seconds())
}

func readyTimeout(size int) time.Duration {
	return 60*time.Second + time.Duration(size)*50*time.Millisecond
}

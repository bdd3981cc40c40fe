package sim

import (
	"fmt"
	"math"

	"github.com/ssi-cluster/ssi/placement"
)

// Node failures (Config.Failures): a node dies at a time drawn uniformly
// over the arrival period and never comes back. Its jobs stop at once. With
// Config.CheckpointEvery, each is restored Config.Detect later (the lease
// TTL and the failover controller's grace) on the node placement's
// least-loaded policy picks among the Ready ones (the controller restores
// on the node holding the checkpoint's copy, which the agent chose by free
// memory: least-loaded is the model of that choice), from its last
// checkpoint: the work done since is done again. Checkpoints fall every
// CheckpointEvery from the job's arrival; the work lost is the time since
// the last one at the node's rate at the death (the model does not keep a
// job's rate history). Without checkpoints a dead node's jobs are lost. A
// restore on a NotReady node is an invariant violation (ErrInvariant).

// scheduleFailures draws the failures and queues them.
func (e *engine) scheduleFailures(specs []simJob) {
	if e.cfg.Failures == 0 || len(specs) == 0 {
		return
	}
	span := specs[len(specs)-1].arrival - specs[0].arrival
	nodes := e.rnd.Perm(e.cfg.ready())[:e.cfg.Failures]
	for _, n := range nodes {
		e.push(event{t: specs[0].arrival + e.rnd.Float64()*span, kind: evFail, id: int32(n)})
	}
}

// fail kills node ni: its jobs stop, and are restored or lost.
func (e *engine) fail(ni int32) {
	e.advance(ni)
	nd := &e.nodes[ni]
	rate := 0.0
	if len(nd.heap) > 0 {
		rate = e.rate(ni)
	}
	jobs := append([]int32(nil), nd.heap...)
	for _, ji := range jobs {
		j := &e.jobs[ji]
		j.rem = max(0, j.finishV-nd.v)
		j.node = -1
	}
	nd.heap = nd.heap[:0]
	e.live[ni].Ready = false
	e.view[ni].Ready = false
	e.changed(ni) // no job left: no completion event; the old ones are stale
	e.failed++
	for _, ji := range jobs {
		e.failOver(ji, rate)
	}
}

// failOver handles a job stopped by its node's death, running at rate
// there: restored later from its last checkpoint, or lost.
func (e *engine) failOver(ji int32, rate float64) {
	j := &e.jobs[ji]
	if e.cfg.CheckpointEvery <= 0 {
		j.lost, j.end = true, e.now
		e.lost++
		e.done++
		return
	}
	c := e.cfg.CheckpointEvery.Seconds()
	since := e.now - j.arrival
	sinceCkpt := since - math.Floor(since/c)*c
	redo := min(j.work-j.rem, sinceCkpt*rate)
	j.rem += redo
	e.redone += redo
	e.push(event{t: e.now + e.cfg.Detect.Seconds(), kind: evRecover, id: ji})
}

// restore puts a failed-over job on a Ready node.
func (e *engine) restore(ji int32) {
	name, err := placement.Place(e.live, placement.Request{Policy: placement.LeastLoaded}, e.rnd)
	if err != nil {
		e.err = fmt.Errorf("restore job %d: %w", ji, err)
		return
	}
	ni := e.index[name]
	if !e.live[ni].Ready {
		e.err = fmt.Errorf("%w: job %d restored on NotReady node %s", ErrInvariant, ji, name)
		return
	}
	j := &e.jobs[ji]
	j.since = e.now
	e.failedOver++
	e.add(ji, int32(ni))
}

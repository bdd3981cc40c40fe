package agent

import (
	"context"
	"fmt"
	"net/http"
	"syscall"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	drainctl "github.com/ssi-cluster/ssi/drain"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/nodes"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// Node lifecycle, the HTTP edge (admin): ssi node cordon|uncordon|label|
// drain|rm. Package nodes checks and writes (the node's settings, a drain's
// record, a removal); the elected controller of package drain carries a
// drain out (newDrainController wires it); this file wires both, and its
// handlers decode, call and encode.

// newNodes is this node's nodes.Control, wired to the agent; the store must
// be set up.
func (a *Agent) newNodes() *nodes.Control {
	return nodes.New(nodes.Config{Name: a.cfg.Name, Store: a.store, Events: a.events.add, Log: a.log, Certificates: a.node != nil})
}

// newDrainController returns this agent's candidate for the drain
// controller's leadership: it moves jobs as the balancer's leader does
// (jobMover, the source's migrate API under the node's certificate).
func (a *Agent) newDrainController() *drainctl.Controller {
	return drainctl.New(drainctl.Config{
		Name:        a.cfg.Name,
		Table:       balancerTable{a.store, a.balancerView}, // plans on the watched view, as the balancer
		Mover:       &jobMover{node: a.node, clients: map[string]*api.Client{}},
		Kill:        a.killDrained,
		Session:     a.session.Load,
		Record:      a.events.add,
		Log:         a.log,
		MoveTimeout: migrate.Timeout + time.Minute,
	})
}

// nodeLoops are the node lifecycle's loops of the agent: lifting the marks
// of the last graceful stop (leave.go), the drain on stop, the drain
// controller's candidate (not with --balancer=false, which keeps an agent
// out of both elections of the agents that move jobs for the cluster), and
// the record of this node's certificate (which ssi node rm revokes).
func (a *Agent) nodeLoops() []func(context.Context) {
	loops := []func(context.Context){a.comeBack}
	if a.cfg.Stopping != nil {
		loops = append(loops, a.leaveOnStop)
	}
	if !a.cfg.NoBalancer {
		loops = append(loops, a.newDrainController().Run)
	}
	if a.node != nil {
		loops = append(loops, a.recordCertLoop)
	}
	return loops
}

// recordCertLoop records the node's current certificate in etcd, at start
// and every minute (a renewal changes it).
func (a *Agent) recordCertLoop(ctx context.Context) {
	last := ""
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		leaf := a.node.Current()
		if s := pki.Serial(leaf); s != last {
			if err := a.store.RecordNodeCert(ctx, a.cfg.Name, pidtable.NodeCert{Serial: s, Expires: leaf.NotAfter.UTC()}); err != nil {
				if ctx.Err() == nil {
					a.log.Warn("record the node certificate", "err", err)
				}
			} else {
				last = s
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// handleCordon is POST /v1/nodes/{name}/cordon.
func (a *Agent) handleCordon(w http.ResponseWriter, r *http.Request) {
	var req api.CordonRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	res, err := a.nodeCtl.Cordon(r.Context(), r.PathValue("name"), access.CallerOf(r).User, true, req.Reason)
	a.writeResult(w, r, http.StatusOK, res, err)
}

// handleUncordon is POST /v1/nodes/{name}/uncordon.
func (a *Agent) handleUncordon(w http.ResponseWriter, r *http.Request) {
	res, err := a.nodeCtl.Cordon(r.Context(), r.PathValue("name"), access.CallerOf(r).User, false, "")
	a.writeResult(w, r, http.StatusOK, res, err)
}

// handleLabel is PUT /v1/nodes/{name}/labels.
func (a *Agent) handleLabel(w http.ResponseWriter, r *http.Request) {
	var req api.LabelRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	res, err := a.nodeCtl.Label(r.Context(), r.PathValue("name"), access.CallerOf(r).User, req)
	a.writeResult(w, r, http.StatusOK, res, err)
}

// handleDrain is POST /v1/nodes/{name}/drain: 201 for a drain started, 200
// for the one under way.
func (a *Agent) handleDrain(w http.ResponseWriter, r *http.Request) {
	var req api.DrainRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	d, created, err := a.nodeCtl.Drain(r.Context(), r.PathValue("name"), access.CallerOf(r).User, req)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	a.writeResult(w, r, status, d, err)
}

// handleDrainStatus is GET /v1/nodes/{name}/drain.
func (a *Agent) handleDrainStatus(w http.ResponseWriter, r *http.Request) {
	d, err := a.nodeCtl.DrainStatus(r.Context(), r.PathValue("name"))
	a.writeResult(w, r, http.StatusOK, d, err)
}

// handleCancelDrain is DELETE /v1/nodes/{name}/drain.
func (a *Agent) handleCancelDrain(w http.ResponseWriter, r *http.Request) {
	d, err := a.nodeCtl.CancelDrain(r.Context(), r.PathValue("name"), access.CallerOf(r).User)
	a.writeResult(w, r, http.StatusOK, d, err)
}

// killDrained is the drain controller's Kill: at a forced drain's deadline,
// the job's node kills it (this agent directly, another through its route).
func (a *Agent) killDrained(ctx context.Context, node string, gpid uint64) error {
	if node == a.cfg.Name {
		return a.sup.Signal(gpid, syscall.SIGKILL)
	}
	return a.peerCall(ctx, node, fmt.Sprintf("/v1/drains/%s/kill/%d", node, gpid), nil)
}

// handleDrainKill is POST /v1/drains/{name}/kill/{gpid} (a node): the drain
// controller's leader asks the drained node to kill a job its forced drain
// marked killed at the deadline.
func (a *Agent) handleDrainKill(w http.ResponseWriter, r *http.Request) {
	g, err := a.nodeCtl.DrainKill(r.Context(), r.PathValue("name"), r.PathValue("gpid"), access.CallerOf(r).Node)
	if err == nil {
		err = a.sup.Signal(g, syscall.SIGKILL)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleRemoveNode is DELETE /v1/nodes/{name}: a node that left or died is
// removed (nodes.Control.Remove); a Ready node only with ?force=true and no
// job.
func (a *Agent) handleRemoveNode(w http.ResponseWriter, r *http.Request) {
	res, err := a.nodeCtl.Remove(r.Context(), r.PathValue("name"), access.CallerOf(r).User, r.URL.Query().Get("force") == "true")
	a.writeResult(w, r, http.StatusOK, res, err)
}

package agent

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/balancer"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
)

// The automatic balancer's elected loop is package balancer; the agent wires
// it (newBalancer), moves jobs for it (jobMover) and serves its routes: GET
// and PUT /v1/balancer.

// balancerUser is the identity the leader presents to source agents with
// --insecure.
const balancerUser = "ssi-balancer"

// newBalancer returns this agent's candidate for the balancer's leadership,
// over its store, session, event log and API clients.
func (a *Agent) newBalancer() *balancer.Balancer {
	return balancer.New(balancer.Config{
		Name:        a.cfg.Name,
		Table:       balancerTable{a.store, a.balancerView},
		Mover:       &jobMover{node: a.node, clients: map[string]*api.Client{}},
		Session:     a.session.Load,
		Record:      a.recordDecision,
		Log:         a.log,
		MoveTimeout: migrate.Timeout + time.Minute,
	})
}

// jobMover is the balancer's Mover: the migrate API of the source agent, the
// ssi migrate path, with one client per agent kept for the agent's life.
type jobMover struct {
	// node is this node's certificate; nil with --insecure.
	node *pki.Node

	mu      sync.Mutex
	clients map[string]*api.Client
}

// Move asks the agent at addr to migrate gpid as req says.
func (m *jobMover) Move(ctx context.Context, addr string, gpid uint64, req api.MigrateRequest) (api.MigrateStats, error) {
	cl, err := m.client(addr)
	if err != nil {
		return api.MigrateStats{}, err
	}
	return cl.Migrate(ctx, gpid, req, nil)
}

// client returns an API client for the agent at addr.
func (m *jobMover) client(addr string) (*api.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.clients[addr]; c != nil {
		return c, nil
	}
	var c *api.Client
	var err error
	if m.node != nil {
		// The leader moves jobs as itself (its node certificate); the source
		// checks that it is the elected leader (the job-mover role, admitMover).
		c, err = api.NewTLSClient(addr, m.node.ClientTLS())
	} else {
		c, err = api.NewClient(addr, balancerUser, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("balancer: agent address %q: %w", addr, err)
	}
	m.clients[addr] = c
	return c, nil
}

// handleBalance is GET /v1/balancer.
func (a *Agent) handleBalance(w http.ResponseWriter, r *http.Request) {
	st, err := a.balanceStatus(r.Context(), access.CallerOf(r))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// balanceStatus is the balancer's state as who may see it: a user sees the
// recent moves of their own jobs only.
func (a *Agent) balanceStatus(ctx context.Context, who access.Caller) (api.BalanceStatus, error) {
	cfg, st, ok, leader, err := a.store.BalancerState(ctx)
	if err != nil {
		return api.BalanceStatus{}, err
	}
	out := api.BalanceStatus{Config: cfg, Leader: leader}
	if ok {
		var seen []pidtable.InflightMove
		for _, m := range st.Inflight {
			if access.Visible(who, m.User) {
				seen = append(seen, m)
			}
		}
		st.Inflight = seen
		out.Status = &st
	}
	evs, _, err := a.store.EventsMatching(ctx, 0, pidtable.EventFilter{Kinds: []string{pidtable.EventMove, pidtable.EventMoved, pidtable.EventFailed}}, 500)
	if err != nil {
		return api.BalanceStatus{}, err
	}
	for i := len(evs) - 1; i >= 0 && len(out.Recent) < 10; i-- {
		if !access.Visible(who, evs[i].User) {
			continue
		}
		switch evs[i].Kind {
		case pidtable.EventMove, pidtable.EventMoved, pidtable.EventFailed:
			out.Recent = append(out.Recent, evs[i])
		}
	}
	return out, nil
}

// handleSetBalance is PUT /v1/balancer: on/off and tuning, cluster-wide.
func (a *Agent) handleSetBalance(w http.ResponseWriter, r *http.Request) {
	var req api.BalanceRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	switch {
	case req.Residency != nil && *req.Residency < 0:
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--residency %s: must not be negative", *req.Residency))
		return
	case req.Hysteresis != nil && *req.Hysteresis < 0:
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--hysteresis %g: must not be negative", *req.Hysteresis))
		return
	case req.MaxInflightPerNode != nil && *req.MaxInflightPerNode < 0:
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--max-inflight %d: must not be negative", *req.MaxInflightPerNode))
		return
	case req.MaxMovesPerRound != nil && *req.MaxMovesPerRound < 0:
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--max-moves %d: must not be negative", *req.MaxMovesPerRound))
		return
	case req.MaxFreeze != nil && *req.MaxFreeze < 0:
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "--max-freeze %s: must not be negative", *req.MaxFreeze))
		return
	}
	cfg, err := a.store.UpdateBalancerConfig(r.Context(), func(c *pidtable.BalancerConfig) error {
		c.Enabled = req.Enabled
		if req.Residency != nil {
			c.Residency = *req.Residency
		}
		if req.Hysteresis != nil {
			c.Hysteresis = *req.Hysteresis
		}
		if req.MaxInflightPerNode != nil {
			c.MaxInflightPerNode = *req.MaxInflightPerNode
		}
		if req.MaxMovesPerRound != nil {
			c.MaxMovesPerRound = *req.MaxMovesPerRound
		}
		if req.MaxFreeze != nil {
			c.MaxFreeze = *req.MaxFreeze
		}
		return nil
	})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	state := "off"
	if cfg.Enabled {
		state = "on"
	}
	who := access.CallerOf(r).User
	a.events.add(r.Context(), pidtable.Event{Kind: pidtable.EventConfig, Reason: fmt.Sprintf("balancer switched %s by %s (residency %s, hysteresis %g, max in flight per node %d, max moves per round %d, max freeze %s; 0: default)", state, who, cfg.Residency, cfg.Hysteresis, cfg.MaxInflightPerNode, cfg.MaxMovesPerRound, cfg.MaxFreeze)})
	st, err := a.balanceStatus(r.Context(), access.CallerOf(r))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// balancerTable is the store, with the balancer's snapshot of the cluster
// from the watched view instead of a read of the whole table every round.
type balancerTable struct {
	*pidtable.Store
	view *pidtable.ClusterCache
}

func (t balancerTable) Snapshot(ctx context.Context) (*pidtable.Snapshot, error) {
	return t.view.Snapshot(ctx)
}

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// The agent's metrics (package metrics): what the scrape-time gauges read,
// and the plain-HTTP server of --metrics-listen. GET /v1/metrics on the API
// port serves the same registry to admins and nodes (routes.go).

// jobStates counts the jobs whose records name this node, by state, from
// the agent's watched copy of them.
func (a *Agent) jobStates() map[string]int {
	if a.own == nil {
		return nil
	}
	procs, _ := a.own.Procs()
	n := map[string]int{}
	for _, p := range procs {
		n[string(p.State)]++
	}
	return n
}

// supervised is how many jobs the supervisor runs here.
func (a *Agent) supervised() int {
	if a.sup == nil {
		return 0
	}
	return a.sup.Count()
}

// metricsServer listens on --metrics-listen, if set, and returns the server
// that serves /metrics there (plain HTTP: bind it to localhost or a
// management network); Run starts it with the API's.
func (a *Agent) metricsServer() (*http.Server, net.Listener, error) {
	if a.cfg.MetricsListen == "" {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", a.cfg.MetricsListen)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: --metrics-listen %s: %w", a.cfg.MetricsListen, err)
	}
	a.log.Info("serving metrics (plain HTTP)", "addr", ln.Addr().String(), "path", "/metrics")
	return &http.Server{
		Handler: a.metrics.Endpoint(), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: maxHeaderBytes,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}, ln, nil
}

// handleMetrics is GET /v1/metrics: this agent's metrics, for admins and
// nodes, over the API's mutual TLS.
func (a *Agent) handleMetrics(w http.ResponseWriter, r *http.Request) {
	a.metrics.Handler().ServeHTTP(w, r)
}

// recordDecision records an event of the balancer's and counts it among its
// decisions.
func (a *Agent) recordDecision(ctx context.Context, ev pidtable.Event) {
	a.metrics.Balanced(ev.Kind)
	a.events.add(ctx, ev)
}

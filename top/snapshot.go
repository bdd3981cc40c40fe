package top

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/display"
	"github.com/ssi-cluster/ssi/pidtable"
)

// Source supplies the view's data and carries out its actions.
type Source interface {
	// Snapshot reads the cluster's state once.
	Snapshot(ctx context.Context) (Snapshot, error)
	// Signal sends sig (a name or number, as ssi kill -s) to gpid.
	Signal(ctx context.Context, gpid uint64, sig string) error
	// Migrate moves gpid to node and returns a one-line summary.
	Migrate(ctx context.Context, gpid uint64, node string) (string, error)
}

// Snapshot is the cluster as one refresh saw it.
type Snapshot struct {
	Time  time.Time
	Nodes []api.NodeInfo
	// Procs are the live jobs the caller may see.
	Procs []api.ProcInfo
	// Balance is the balancer's state; nil when it could not be read.
	Balance *api.BalanceStatus
}

// SortKey orders the process table.
type SortKey string

// Sort keys.
const (
	SortCPU  SortKey = "cpu"  // most CPU first
	SortRSS  SortKey = "rss"  // most resident memory first
	SortNode SortKey = "node" // by node name, then most CPU first
	SortGPID SortKey = "gpid" // by gpid
)

// ParseSortKey checks a --sort value.
func ParseSortKey(s string) (SortKey, error) {
	switch k := SortKey(strings.ToLower(s)); k {
	case SortCPU, SortRSS, SortNode, SortGPID:
		return k, nil
	}
	return "", fmt.Errorf("top: sort key %q: want cpu, rss, node or gpid", s)
}

func cpuOf(p *api.ProcInfo) float64 {
	if p.Stats == nil {
		return -1
	}
	return p.Stats.CPU
}

func rssOf(p *api.ProcInfo) int64 {
	if p.Stats == nil {
		return -1
	}
	return p.Stats.RSS
}

// sortProcs orders procs in place by key; ties go by gpid (a total order).
func sortProcs(procs []*api.ProcInfo, key SortKey) {
	slices.SortFunc(procs, func(a, b *api.ProcInfo) int {
		var c int
		switch key {
		case SortCPU:
			c = cmp.Compare(cpuOf(b), cpuOf(a))
		case SortRSS:
			c = cmp.Compare(rssOf(b), rssOf(a))
		case SortNode:
			c = cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(cpuOf(b), cpuOf(a)))
		}
		return cmp.Or(c, cmp.Compare(a.GPID, b.GPID))
	})
}

// matches reports whether p passes filter: space-separated terms, all of
// which must match. "user:NAME" and "node:NAME" match those fields exactly,
// "cmd:TEXT" a part of the command line; a bare term matches a part of the
// user, node, command or gpid.
func matches(p api.ProcInfo, filter string) bool {
	command := display.CommandLine(p.Argv)
	for _, term := range strings.Fields(filter) {
		key, val, ok := strings.Cut(term, ":")
		switch {
		case ok && key == "user":
			if p.User != val {
				return false
			}
		case ok && key == "node":
			if p.Node != val {
				return false
			}
		case ok && key == "cmd":
			if !strings.Contains(command, val) {
				return false
			}
		default:
			if !strings.Contains(p.User, term) && !strings.Contains(p.Node, term) &&
				!strings.Contains(command, term) && strconv.FormatUint(p.GPID, 10) != term {
				return false
			}
		}
	}
	return true
}

// view returns the procs to show, filtered and sorted (pointers into procs).
func view(procs []api.ProcInfo, key SortKey, filter string) []*api.ProcInfo {
	out := make([]*api.ProcInfo, 0, len(procs))
	for i := range procs {
		if filter == "" || matches(procs[i], filter) {
			out = append(out, &procs[i])
		}
	}
	sortProcs(out, key)
	return out
}

// move is a migration in flight.
type move struct {
	gpid     uint64
	from, to string
	phase    string // "" when only the balancer's status knows of it
	started  time.Time
}

// moves lists the migrations in flight, by gpid: the jobs in state migrating
// (with their phase) and the balancer's in-flight moves.
func moves(s Snapshot) []move {
	seen := map[uint64]bool{}
	var out []move
	for _, p := range s.Procs {
		if p.State == pidtable.Migrating && p.Migration != nil {
			out = append(out, move{gpid: p.GPID, from: p.Node, to: p.Migration.Target, phase: p.Migration.Phase, started: p.Migration.Started})
			seen[p.GPID] = true
		}
	}
	if s.Balance != nil && s.Balance.Status != nil {
		for _, m := range s.Balance.Status.Inflight {
			if !seen[m.GPID] {
				out = append(out, move{gpid: m.GPID, from: m.From, to: m.To, started: m.Started})
			}
		}
	}
	slices.SortFunc(out, func(a, b move) int { return cmp.Compare(a.gpid, b.gpid) })
	return out
}

// nodeRSS sums the resident memory of the visible jobs on each node.
func nodeRSS(procs []api.ProcInfo) map[string]int64 {
	m := map[string]int64{}
	for _, p := range procs {
		if p.Stats != nil {
			m[p.Node] += p.Stats.RSS
		}
	}
	return m
}

func stat(p api.ProcInfo) string {
	switch {
	case p.State == pidtable.Migrating:
		return "mig"
	case p.State == pidtable.Checkpointing:
		return "ckpt"
	case !p.NodeReady:
		return "?"
	case p.State == pidtable.Starting:
		return "start"
	case p.Stats != nil:
		return p.Stats.Stat
	}
	return "-"
}

func runTime(p api.ProcInfo, now time.Time) string {
	start := p.Started
	if start.IsZero() {
		start = p.Created
	}
	if start.IsZero() {
		return "-"
	}
	return display.Elapsed(now.Sub(start))
}

func summary(s Snapshot, shown int) string {
	ready := 0
	for _, n := range s.Nodes {
		if n.Ready {
			ready++
		}
	}
	line := fmt.Sprintf("ssi top - %s  nodes: %d (%d Ready)  jobs: %d", s.Time.Local().Format(time.TimeOnly), len(s.Nodes), ready, len(s.Procs))
	if shown != len(s.Procs) {
		line += fmt.Sprintf(" (%d shown)", shown)
	}
	if s.Balance != nil {
		if s.Balance.Config.Enabled {
			line += "  balancer: on"
		} else {
			line += "  balancer: off"
		}
	}
	return line
}

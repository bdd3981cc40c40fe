package placement

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// Policy names a placement policy.
type Policy string

// Policies.
const (
	Random      Policy = "random"
	LeastLoaded Policy = "least-loaded"
	TwoChoices  Policy = "two-choices"
)

// Policies lists the known policies.
var Policies = []Policy{Random, LeastLoaded, TwoChoices}

// ParsePolicy validates a policy name; "" means Random.
func ParsePolicy(s string) (Policy, error) {
	if s == "" {
		return Random, nil
	}
	for _, p := range Policies {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w %q (choose one of %s)", ErrUnknownPolicy, s, policyList())
}

func policyList() string {
	names := make([]string, len(Policies))
	for i, p := range Policies {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

// Errors. Place wraps them with the details of the failed request.
var (
	ErrUnknownPolicy = errors.New("placement: unknown policy")
	ErrUnknownNode   = errors.New("unknown node")
	ErrNotReady      = errors.New("node is NotReady")
	ErrNoNode        = errors.New("no node fits")
	ErrCordoned      = errors.New("node is cordoned")
)

// Node is what placement knows of one node.
type Node struct {
	Name  string
	Ready bool
	// CPUs and Memory are the node's capacity; ReservedCPUs and ReservedMemory
	// the sums of its live jobs' requests.
	CPUs           float64
	Memory         int64
	ReservedCPUs   float64
	ReservedMemory int64
	// Load is the CPU demand of the node's jobs, in cores.
	Load   float64
	Jobs   int
	Labels map[string]string
	// Cordoned nodes take no new job (ssi node cordon): Place never picks
	// one, and the balancer moves no job onto one.
	Cordoned bool
	// Protocol is the node's migration protocol (migrate.Protocol): the
	// balancer and drains move a job only to a node of its node's protocol
	// (during a rolling upgrade that changes it, say).
	Protocol int
}

// Request is what a job asks for.
type Request struct {
	// Node, when set, is the only node considered (ssi run --node).
	Node string
	// CPUs and Memory must fit into the node's unreserved capacity.
	CPUs   float64
	Memory int64
	// Constraints are labels the node must carry with these exact values.
	Constraints map[string]string
	Policy      Policy
}

// Fits reports whether req's resources fit into n's unreserved capacity.
func Fits(n Node, req Request) bool {
	if req.CPUs > 0 && n.ReservedCPUs+req.CPUs > n.CPUs+1e-9 {
		return false
	}
	if req.Memory > 0 && n.ReservedMemory+req.Memory > n.Memory {
		return false
	}
	return true
}

// Matches reports whether n carries every label in constraints.
func Matches(n Node, constraints map[string]string) bool {
	for k, v := range constraints {
		if n.Labels[k] != v {
			return false
		}
	}
	return true
}

// Place returns the name of the node req should run on.
func Place(nodes []Node, req Request, rnd *rand.Rand) (string, error) {
	policy, err := ParsePolicy(string(req.Policy))
	if err != nil {
		return "", err
	}
	if req.Node != "" {
		i := slices.IndexFunc(nodes, func(n Node) bool { return n.Name == req.Node })
		if i < 0 {
			return "", fmt.Errorf("%w %q (known nodes: %s)", ErrUnknownNode, req.Node, names(nodes))
		}
		nodes = nodes[i : i+1]
	}
	// Count and index rather than copy: the simulator calls Place 100,000
	// times on 1,000 nodes.
	var ready, cordoned, matching int
	var fitting []int
	for i := range nodes {
		n := &nodes[i]
		if !n.Ready {
			continue
		}
		if n.Cordoned {
			cordoned++
			continue
		}
		ready++
		if !Matches(*n, req.Constraints) {
			continue
		}
		matching++
		if Fits(*n, req) {
			fitting = append(fitting, i)
		}
	}
	switch {
	case req.Node != "" && cordoned > 0:
		return "", fmt.Errorf("%w: %s takes no new job (ssi node uncordon %s to allow it again)", ErrCordoned, req.Node, req.Node)
	case req.Node != "" && ready == 0:
		return "", fmt.Errorf("%w: %s (its agent is not running; see ssi nodes)", ErrNotReady, req.Node)
	case ready == 0 && cordoned > 0:
		return "", fmt.Errorf("%w: every Ready node is cordoned (%d; see ssi nodes, and ssi node uncordon NAME)", ErrNoNode, cordoned)
	case ready == 0:
		return "", fmt.Errorf("%w: no node is Ready (see ssi nodes)", ErrNoNode)
	case matching == 0:
		return "", fmt.Errorf("%w: no Ready node has labels %s", ErrNoNode, formatLabels(req.Constraints))
	case len(fitting) == 0:
		return "", fmt.Errorf("%w: no Ready node has %s free", ErrNoNode, formatRequest(req))
	}
	switch policy {
	case LeastLoaded:
		best := fitting[0]
		for _, i := range fitting[1:] {
			if compareLoad(nodes[i], nodes[best]) < 0 {
				best = i
			}
		}
		return nodes[best].Name, nil
	case TwoChoices:
		if len(fitting) == 1 {
			return nodes[fitting[0]].Name, nil
		}
		i := rnd.IntN(len(fitting))
		j := rnd.IntN(len(fitting) - 1)
		if j >= i {
			j++
		}
		if compareLoad(nodes[fitting[j]], nodes[fitting[i]]) < 0 {
			i = j
		}
		return nodes[fitting[i]].Name, nil
	default:
		return nodes[fitting[rnd.IntN(len(fitting))]].Name, nil
	}
}

// compareLoad orders nodes by load per core, then job count, then name.
func compareLoad(a, b Node) int {
	la, lb := a.Load/max(a.CPUs, 1), b.Load/max(b.CPUs, 1)
	switch {
	case la < lb:
		return -1
	case la > lb:
		return 1
	case a.Jobs != b.Jobs:
		return a.Jobs - b.Jobs
	}
	return strings.Compare(a.Name, b.Name)
}

func names(nodes []Node) string {
	if len(nodes) == 0 {
		return "none"
	}
	s := make([]string, len(nodes))
	for i, n := range nodes {
		s[i] = n.Name
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

func formatLabels(l map[string]string) string {
	parts := make([]string, 0, len(l))
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func formatRequest(r Request) string {
	var parts []string
	if r.CPUs > 0 {
		parts = append(parts, fmt.Sprintf("%g CPUs", r.CPUs))
	}
	if r.Memory > 0 {
		parts = append(parts, fmt.Sprintf("%d MiB of memory", r.Memory>>20))
	}
	return strings.Join(parts, " and ")
}

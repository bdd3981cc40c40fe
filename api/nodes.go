package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// Node lifecycle (admin): cordon, labels, drain, removal.

// CordonRequest (POST /v1/nodes/{name}/cordon) gives the cordon's reason.
type CordonRequest struct {
	Reason string `json:"reason,omitempty"`
}

// NodeResult answers a cordon, uncordon or label request: the node's
// settings after it, and whether anything changed (a second cordon changes
// nothing, and says so in Message).
type NodeResult struct {
	Node    string              `json:"node"`
	Changed bool                `json:"changed"`
	Message string              `json:"message"`
	Config  pidtable.NodeConfig `json:"config"`
	// Labels are the node's effective labels after the change.
	Labels map[string]string `json:"labels,omitempty"`
}

// LabelRequest (PUT /v1/nodes/{name}/labels) sets and removes labels.
type LabelRequest struct {
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// DrainRequest (POST /v1/nodes/{name}/drain) starts a drain.
type DrainRequest struct {
	// Deadline is how long the drain may take (0: ten minutes).
	Deadline time.Duration `json:"deadline,omitempty"`
	// Parallel is how many moves may be in flight at once (0: 2).
	Parallel int `json:"parallel,omitempty"`
	// Force kills the jobs still on the node at the deadline.
	Force bool `json:"force,omitempty"`
}

// DrainResponse is a drain's record; Already says the node was being drained
// before this request (which then changed nothing).
type DrainResponse struct {
	pidtable.Drain
	Already bool `json:"already,omitempty"`
}

// NodeRemoveResult answers DELETE /v1/nodes/{name}.
type NodeRemoveResult struct {
	Node string `json:"node"`
	// Lost are the jobs recorded lost (they ran nowhere else).
	Lost []uint64 `json:"lost,omitempty"`
	// Skipped says which jobs were left alone, and why.
	Skipped []string `json:"skipped,omitempty"`
	// Revoked are the serials of the node's certificates now revoked.
	Revoked []string `json:"revoked,omitempty"`
	Message string   `json:"message,omitempty"`
}

func nodePath(name string, tail string) string { return "/v1/nodes/" + url.PathEscape(name) + tail }

// Cordon stops new jobs from being placed on node.
func (c *Client) Cordon(ctx context.Context, node, reason string) (NodeResult, error) {
	var out NodeResult
	return out, c.do(ctx, http.MethodPost, nodePath(node, "/cordon"), CordonRequest{Reason: reason}, &out)
}

// Uncordon lets node receive new jobs again.
func (c *Client) Uncordon(ctx context.Context, node string) (NodeResult, error) {
	var out NodeResult
	return out, c.do(ctx, http.MethodPost, nodePath(node, "/uncordon"), struct{}{}, &out)
}

// Label sets and removes labels of node.
func (c *Client) Label(ctx context.Context, node string, r LabelRequest) (NodeResult, error) {
	var out NodeResult
	return out, c.do(ctx, http.MethodPut, nodePath(node, "/labels"), r, &out)
}

// Drain starts a drain of node (or returns the one under way).
func (c *Client) Drain(ctx context.Context, node string, r DrainRequest) (DrainResponse, error) {
	var out DrainResponse
	return out, c.do(ctx, http.MethodPost, nodePath(node, "/drain"), r, &out)
}

// DrainStatus returns node's drain record.
func (c *Client) DrainStatus(ctx context.Context, node string) (DrainResponse, error) {
	var out DrainResponse
	return out, c.do(ctx, http.MethodGet, nodePath(node, "/drain"), nil, &out)
}

// CancelDrain cancels the drain of node.
func (c *Client) CancelDrain(ctx context.Context, node string) (DrainResponse, error) {
	var out DrainResponse
	return out, c.do(ctx, http.MethodDelete, nodePath(node, "/drain"), nil, &out)
}

// RemoveNode removes a node that left or died (force: also a Ready one that
// runs no job).
func (c *Client) RemoveNode(ctx context.Context, node string, force bool) (NodeRemoveResult, error) {
	var out NodeRemoveResult
	return out, c.do(ctx, http.MethodDelete, nodePath(node, fmt.Sprintf("?force=%t", force)), nil, &out)
}

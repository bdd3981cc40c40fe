package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/ssi-cluster/ssi/pidtable"
)

// CheckpointRequest asks the owner of a job to save a checkpoint of it.
type CheckpointRequest struct {
	// Name names the checkpoint; empty means "<gpid>-<UTC time>".
	Name string `json:"name,omitempty"`
	// LeaveRunning keeps the job running after the dump; otherwise the job is
	// stopped (its record becomes Checkpointed) once the checkpoint is saved.
	LeaveRunning bool `json:"leave_running,omitempty"`
	// Auto marks a checkpoint of the job's --checkpoint-every, taken by its
	// agent (never sent by a client).
	Auto bool `json:"-"`
}

// CheckpointResult is the outcome of `ssi checkpoint`.
type CheckpointResult struct {
	pidtable.Checkpoint
	// FrozenMS is how long the job was stopped; DumpMS the part CRIU took.
	FrozenMS float64 `json:"frozen_ms"`
	DumpMS   float64 `json:"dump_ms"`
	TotalMS  float64 `json:"total_ms"`
}

// CheckpointInfo is one row of `ssi checkpoints`.
type CheckpointInfo struct {
	pidtable.Checkpoint
	// NodeReady tells whether the node holding the images is Ready: a
	// checkpoint can only be restored while it is.
	NodeReady bool `json:"node_ready"`
}

// CheckpointRestoreRequest asks for a checkpoint to be brought back.
type CheckpointRestoreRequest struct {
	// Node is where to restore; empty lets placement choose.
	Node      string `json:"node,omitempty"`
	Placement string `json:"placement,omitempty"`
	// AsNew restores under a new gpid, as a second job; otherwise the job
	// comes back under its own gpid, which must not be running.
	AsNew bool `json:"as_new,omitempty"`
}

// CheckpointRestoreResult is the outcome of `ssi restore`.
type CheckpointRestoreResult struct {
	Checkpoint string `json:"checkpoint"`
	GPID       uint64 `json:"gpid"`
	Node       string `json:"node"`
	// From is the node that held the images; ImageBytes what was shipped
	// from it (0 when restored where it was held).
	From       string  `json:"from"`
	ImageBytes int64   `json:"image_bytes"`
	TransferMS float64 `json:"transfer_ms"`
	RestoreMS  float64 `json:"restore_ms"`
	TotalMS    float64 `json:"total_ms"`
}

// Checkpoint saves a checkpoint of gpid.
func (c *Client) Checkpoint(ctx context.Context, gpid uint64, r CheckpointRequest) (CheckpointResult, error) {
	var out CheckpointResult
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/procs/%d/checkpoint", gpid), r, &out)
	return out, err
}

// Checkpoints lists the cluster's checkpoints.
func (c *Client) Checkpoints(ctx context.Context) ([]CheckpointInfo, error) {
	var out []CheckpointInfo
	err := c.do(ctx, http.MethodGet, "/v1/checkpoints", nil, &out)
	return out, err
}

// RestoreCheckpoint brings a checkpoint back as a running job.
func (c *Client) RestoreCheckpoint(ctx context.Context, name string, r CheckpointRestoreRequest) (CheckpointRestoreResult, error) {
	var out CheckpointRestoreResult
	err := c.do(ctx, http.MethodPost, "/v1/checkpoints/"+url.PathEscape(name)+"/restore", r, &out)
	return out, err
}

// DeleteCheckpoint removes a checkpoint and its images.
func (c *Client) DeleteCheckpoint(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/checkpoints/"+url.PathEscape(name), nil, nil)
}

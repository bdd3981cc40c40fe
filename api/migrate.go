package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// MigrateRequest asks for a job to be moved to Node.
type MigrateRequest struct {
	Node string `json:"node"`
	// PostCopy moves the job's memory after it runs on the target (CRIU lazy
	// pages): a short freeze whatever the job's size, but the job depends on
	// its source node until all its memory has arrived (see docs/ARCHITECTURE.md, "Post-copy").
	PostCopy bool `json:"post_copy,omitempty"`
	// FromCheckpoint does not move the job live: its agent kills it and the
	// target restores its newest checkpoint under the same gpid, so the work
	// since that checkpoint is done again (a drain's fallback for a job that
	// cannot be moved live; ssi migrate --from-checkpoint).
	FromCheckpoint bool `json:"from_checkpoint,omitempty"`
}

// MigrateEvent is one line of the NDJSON stream answering a MigrateRequest:
// progress events (Phase, Bytes), then one final event with Done and Stats, or
// with Error.
type MigrateEvent struct {
	Phase string `json:"phase,omitempty"`
	// Bytes of images shipped so far, of Total, during the transfer phase.
	Bytes int64         `json:"bytes,omitempty"`
	Total int64         `json:"total,omitempty"`
	Done  bool          `json:"done,omitempty"`
	Stats *MigrateStats `json:"stats,omitempty"`
	Error string        `json:"error,omitempty"`
	Code  Code          `json:"code,omitempty"`
}

// MigrateStats are the figures of a finished migration, in milliseconds.
type MigrateStats struct {
	GPID       uint64  `json:"gpid"`
	From       string  `json:"from"`
	To         string  `json:"to"`
	FrozenMS   float64 `json:"frozen_ms"`
	ImageBytes int64   `json:"image_bytes"`
	DumpMS     float64 `json:"dump_ms"`
	TransferMS float64 `json:"transfer_ms"`
	RestoreMS  float64 `json:"restore_ms"`
	TotalMS    float64 `json:"total_ms"`
	// PostCopy: the memory moved after the job resumed on the target, in
	// PagesMS (part of TotalMS, not of FrozenMS); LazyBytes is what was left
	// to page over then: the job's resident memory at the dump less the
	// pages the images carried (CRIU serves only private anonymous memory
	// lazily; shared and file-backed pages go into the images, before the
	// job resumes).
	PostCopy  bool    `json:"post_copy,omitempty"`
	PagesMS   float64 `json:"pages_ms,omitempty"`
	LazyBytes int64   `json:"lazy_bytes,omitempty"`
	// Note says what the migration did differently from what was asked, and
	// why (e.g. post-copy fell back to a full copy).
	Note string `json:"note,omitempty"`
	// Checkpoint is the checkpoint a FromCheckpoint move restored (Note
	// says when it was taken); FrozenMS is then the time the job ran
	// nowhere, from its kill to its restore.
	Checkpoint string `json:"checkpoint,omitempty"`
	// StreamLost is set (and the figures are zero) when the progress stream
	// broke and the outcome was read from the process table instead.
	StreamLost bool `json:"stream_lost,omitempty"`
	// LogAheadBytes is how much of the job's output log went to the target
	// before the freeze, while the job still ran (logs of 1 MiB and more):
	// only what it wrote since travelled in the freeze.
	LogAheadBytes int64 `json:"log_ahead_bytes,omitempty"`
	// Steps is the migration's timeline from the freeze to the resume: each
	// step with the node that took it and its wall-clock time, in order (the
	// target's restore steps nested in the source's "restore call").
	Steps []Step `json:"steps,omitempty"`
}

// Step is one timed step of a migration.
type Step struct {
	Node string  `json:"node"`
	Name string  `json:"name"`
	MS   float64 `json:"ms"`
}

// ErrStreamLost: the progress stream of a migration broke; the migration itself
// goes on in the agent, and the process table tells how it ended.
var ErrStreamLost = errors.New("migration progress stream lost")

// Migrate moves gpid to r.Node, calling progress for each event, and returns
// the final stats.
func (c *Client) Migrate(ctx context.Context, gpid uint64, r MigrateRequest, progress func(MigrateEvent)) (MigrateStats, error) {
	resp, err := c.send(ctx, http.MethodPost, fmt.Sprintf("/v1/procs/%d/migrate", gpid), r)
	if err != nil {
		return MigrateStats{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev MigrateEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return MigrateStats{}, fmt.Errorf("bad migration event %q: %w", sc.Bytes(), err)
		}
		switch {
		case ev.Error != "":
			return MigrateStats{}, &Error{Code: ev.Code, Message: ev.Error}
		case ev.Done && ev.Stats != nil:
			return *ev.Stats, nil
		}
		if progress != nil {
			progress(ev)
		}
	}
	if err := sc.Err(); err != nil {
		return MigrateStats{}, fmt.Errorf("%w: %w", ErrStreamLost, err)
	}
	return MigrateStats{}, fmt.Errorf("%w: ended without a result", ErrStreamLost)
}

// FileCheck is a file the job needs on the target, with the size it has on the
// source.
type FileCheck struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// PrepareRequest (agent to agent) asks a target to get ready for a job.
type PrepareRequest struct {
	ID    string        `json:"id"`
	Proc  pidtable.Proc `json:"proc"`
	Spec  shim.Spec     `json:"spec"`
	Files []FileCheck   `json:"files"`
	// CPUFlags are the source CPU's feature flags: the target must have each.
	CPUFlags []string `json:"cpu_flags,omitempty"`
	// Protocol and Version are the source agent's migration protocol and
	// ssi version: the target refuses another protocol.
	Protocol int    `json:"protocol,omitempty"`
	Version  string `json:"version,omitempty"`
}

// RestoreRequest (agent to agent) asks a target to restore the shipped images.
type RestoreRequest struct {
	ID        string `json:"id"`
	StdoutKey string `json:"stdout_key"`
	StderrKey string `json:"stderr_key"`
	// StdinKey is the job's stdin pipe (empty: none of the shim's), re-plumbed
	// like stdout and stderr; what it held at the dump travels in the stream.
	StdinKey string `json:"stdin_key,omitempty"`
	// LazyPages is host:port of the source's page server in a post-copy
	// migration.
	LazyPages string `json:"lazy_pages,omitempty"`
	// LazyPagesCA, LazyPagesCert and LazyPagesKey (PEM) are the target's
	// credentials for that page server, which speaks TLS: a CA made for this
	// migration alone, and the one client certificate it signed, with its key
	// (pki.PageServerCreds). Required with LazyPages.
	LazyPagesCA   string `json:"lazy_pages_ca,omitempty"`
	LazyPagesCert string `json:"lazy_pages_cert,omitempty"`
	LazyPagesKey  string `json:"lazy_pages_key,omitempty"`
	// Files are the files the job maps or holds open, with their sizes when
	// it was frozen for the dump: the target checks them before it restores.
	Files []FileCheck `json:"files,omitempty"`
	// BoundMS is how long the source waits for the restore step (ms): the
	// target gives up a little before, saying why its restore is stuck.
	BoundMS int64 `json:"bound_ms,omitempty"`
}

// RestoreResponse says what the target started.
type RestoreResponse struct {
	State shim.State `json:"state"`
	// Steps are the target's steps of the restore, timed.
	Steps []Step `json:"steps,omitempty"`
}

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint/store"
	"github.com/ssi-cluster/ssi/pidtable"
)

// The HTTP edge of checkpoints: package checkpoint/store takes, keeps and
// restores them; these handlers decode, place, forward and encode.

// newCheckpoints returns this node's checkpoint store; the store, the
// supervisor, the migrator and CRIU's probe must be set up.
func (a *Agent) newCheckpoints() *store.Store {
	return store.New(store.Config{
		Node: a.cfg.Name, Dir: filepath.Join(a.cfg.DataDir, "checkpoints"),
		CgroupParent: a.cfg.CgroupParent, ShimExe: a.cfg.ShimExe,
		CRIUPath: a.criuPath, CRIUErr: a.criuErr,
		Table: a.store, Jobs: a.sup, Dumper: a.mig, CPU: migrationHost{a},
		Fetch: a.fetchCheckpoint, Log: a.log,
	})
}

// handleCheckpoint is POST /v1/procs/{gpid}/checkpoint, served by the owner.
func (a *Agent) handleCheckpoint(w http.ResponseWriter, r *http.Request) {
	p, ok := a.owned(w, r)
	if !ok {
		return
	}
	var req api.CheckpointRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	// A checkpoint must not stop half-way because the client went away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), store.Timeout)
	defer cancel()
	res, err := a.ckpts.Take(ctx, p, req)
	a.metrics.Checkpointed(req.Auto, res.Size, err)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

// handleCheckpoints is GET /v1/checkpoints.
func (a *Agent) handleCheckpoints(w http.ResponseWriter, r *http.Request) {
	cs, err := a.store.Checkpoints(r.Context(), "")
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	snap, err := a.nodes(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	who := access.CallerOf(r)
	out := make([]api.CheckpointInfo, 0, len(cs))
	for _, c := range cs {
		if !access.Visible(who, c.Proc.User) {
			continue
		}
		out = append(out, api.CheckpointInfo{Checkpoint: c, NodeReady: snap.Ready(c.Node)})
	}
	writeJSON(w, http.StatusOK, out)
}

// readCheckpoint reads the record of the checkpoint a request names.
func (a *Agent) readCheckpoint(r *http.Request) (pidtable.Checkpoint, int64, error) {
	name := r.PathValue("name")
	if err := pidtable.ValidCheckpointName(name); err != nil {
		return pidtable.Checkpoint{}, 0, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	c, rev, err := a.store.GetCheckpoint(r.Context(), name)
	if errors.Is(err, pidtable.ErrNotFound) {
		return c, 0, api.Errorf(api.CodeNotFound, "no checkpoint named %q (see ssi checkpoints)", name)
	}
	return c, rev, err
}

// usableCheckpoint is the request's checkpoint, which guard read and
// admitted the caller to, if it is completely saved.
func usableCheckpoint(r *http.Request) (pidtable.Checkpoint, int64, error) {
	c, rev, err := access.CheckpointOf(r)
	if err == nil && c.State != pidtable.Ready {
		err = api.Errorf(api.CodeConflict, "checkpoint %s is still being saved; retry when it is done", c.Name)
	}
	return c, rev, err
}

// handleDeleteCheckpoint is DELETE /v1/checkpoints/{name}, served by the node
// holding it (or anywhere, for the record, when that node is gone).
func (a *Agent) handleDeleteCheckpoint(w http.ResponseWriter, r *http.Request) {
	c, rev, err := usableCheckpoint(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if c.Node != a.cfg.Name {
		snap, err := a.nodes(r.Context())
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		if snap.Ready(c.Node) && !access.Forwarded(r) {
			a.forward(w, r, c.Node)
			return
		}
		// The holder is down: forget the record; its agent removes the images
		// when it starts again (a checkpoint dir without a record is garbage).
	}
	if err := a.store.DeleteCheckpoint(r.Context(), c.Name, rev); err != nil {
		a.writeError(w, r, err)
		return
	}
	if c.Node == a.cfg.Name {
		if err := a.ckpts.Remove(c.Name); err != nil {
			a.log.Warn("remove checkpoint", "checkpoint", c.Name, "err", err)
		}
	}
	a.log.Info("checkpoint removed", "checkpoint", c.Name)
	w.WriteHeader(http.StatusNoContent)
}

// handleCheckpointImages is GET /v1/checkpoints/{name}/images, agent to agent:
// the holder streams the checkpoint to the node restoring it.
func (a *Agent) handleCheckpointImages(w http.ResponseWriter, r *http.Request) {
	c, _, err := a.readCheckpoint(r)
	if err == nil && (c.Node != a.cfg.Name || c.State != pidtable.Ready) {
		err = api.Errorf(api.CodeConflict, "checkpoint %s is not held here ready (%s on %s)", c.Name, c.State, c.Node)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	if _, err := a.ckpts.Stream(w, c.Name); err != nil {
		// Too late for a status: the reader's checksum check fails on the cut stream.
		a.log.Warn("stream checkpoint", "checkpoint", c.Name, "err", err)
	}
}

// handleCheckpointRestore is POST /v1/checkpoints/{name}/restore: placed at the
// agent the client reached, carried out by the target node.
func (a *Agent) handleCheckpointRestore(w http.ResponseWriter, r *http.Request) {
	var req api.CheckpointRestoreRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	c, _, err := usableCheckpoint(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	pr := api.RunRequest{Node: req.Node, Placement: req.Placement, CPUs: c.Proc.CPUs, Memory: c.Proc.Memory}
	token, ok := a.servesHere(w, r, pr)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), store.Timeout)
	defer cancel()
	res, err := a.ckpts.Restore(ctx, c, req.AsNew, token)
	a.served.add(placedJob{token: token, at: time.Now()}) // the job is counted here now, or gone
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

// fetchCheckpoint opens the stream of checkpoint name from holder, agent to
// agent under this node's certificate (store.Config.Fetch).
func (a *Agent) fetchCheckpoint(ctx context.Context, holder pidtable.Node, name string) (io.ReadCloser, error) {
	u := fmt.Sprintf("%s://%s/v1/checkpoints/%s/images", a.scheme(), holder.Addr, url.PathEscape(name))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(api.HeaderForwarded, a.cfg.Name)
	resp, err := (&http.Client{Transport: a.peer}).Do(req)
	if err != nil {
		return nil, api.Errorf(api.CodeNotReady, "fetch checkpoint %s from %s: %v", name, holder.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e api.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return nil, &e
		}
		return nil, fmt.Errorf("fetch checkpoint %s from %s: HTTP %d", name, holder.Name, resp.StatusCode)
	}
	return resp.Body, nil
}

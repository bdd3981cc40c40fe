package agent

// The HTTP edge of migrations (package migrate holds the protocol): the
// source's POST /v1/procs/{gpid}/migrate, which streams the progress as
// NDJSON, and the target's steps under /v1/migrations/{gpid}/. Each handler
// decodes the request, calls the agent's migrate.Migrator, and encodes the
// answer or the error.

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/metrics"
	"github.com/ssi-cluster/ssi/migrate"
)

// ms is a duration of milliseconds, as api.MigrateStats counts them.
func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

// handleMigrate is POST /v1/procs/{gpid}/migrate at the owner: it runs the
// migration and streams its progress as NDJSON events.
func (a *Agent) handleMigrate(w http.ResponseWriter, r *http.Request) {
	p, ok := a.owned(w, r)
	if !ok {
		return
	}
	var req api.MigrateRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	check := a.mig.CheckTarget
	if req.FromCheckpoint {
		check = a.mig.CheckDestination // this node's CRIU is not used
	}
	target, err := check(r.Context(), p, req.Node)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	var mu sync.Mutex
	send := func(ev api.MigrateEvent) {
		mu.Lock()
		defer mu.Unlock()
		b, _ := json.Marshal(ev)
		_, _ = w.Write(append(b, '\n'))
		if flusher != nil {
			flusher.Flush()
		}
	}
	// The migration must not stop half-way because the client went away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), migrate.Timeout)
	defer cancel()
	var stats *api.MigrateStats
	if req.FromCheckpoint {
		stats, err = a.ckpts.Handover(ctx, p, target.Name, a.askTakeOver)
	} else {
		stats, err = a.mig.Migrate(ctx, p, target, req.PostCopy, send)
	}
	m := metrics.Migration{PostCopy: req.PostCopy, Err: err}
	if stats != nil { // nil when the migration failed
		m.PostCopy, m.Frozen, m.Total, m.ImageBytes = stats.PostCopy || req.PostCopy, ms(stats.FrozenMS), ms(stats.TotalMS), stats.ImageBytes
	}
	a.metrics.Migrated(m)
	// The caller's answer first, then the event (which etcd, if away,
	// may hold up to its bound).
	defer a.events.migrated(ctx, p, target.Name, stats, err)
	if err != nil {
		ev := api.MigrateEvent{Error: err.Error(), Code: api.CodeInternal}
		if ae := api.FromError(err); ae != nil {
			ev.Code = ae.Code
		}
		a.log.Warn("migration failed", "gpid", p.GPID, "target", target.Name, "err", err)
		send(ev)
		return
	}
	a.log.Info("migrated", "gpid", p.GPID, "target", target.Name, "frozen_ms", stats.FrozenMS, "image_bytes", stats.ImageBytes, "total_ms", stats.TotalMS)
	send(api.MigrateEvent{Done: true, Stats: stats})
}

// handlePrepare is the first step of a migration to this node, from the
// node the job's record names as owner (guard read the record).
func (a *Agent) handlePrepare(w http.ResponseWriter, r *http.Request) {
	p, ok := a.admittedJob(w, r)
	if !ok {
		return
	}
	var req api.PrepareRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := access.CheckPrepare(p, &req, a.cfg.Name); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := a.mig.PrepareIncoming(p.GPID, req); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleImages is PUT /v1/migrations/{gpid}/images: the image stream.
func (a *Agent) handleImages(w http.ResponseWriter, r *http.Request) {
	from := access.CallerOf(r).Node // the migration's source: guard admitted it
	gpid, err := pathGPID(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := a.mig.ReceiveImages(gpid, r.Header.Get("X-Ssi-Migration"), from, r.Body); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleCheck checks the files of a job before its locks are handed over.
func (a *Agent) handleCheck(w http.ResponseWriter, r *http.Request) {
	gpid, req, from, ok := a.stepRequest(w, r)
	if !ok {
		return
	}
	if err := a.mig.CheckIncoming(gpid, req, from); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) handleRestore(w http.ResponseWriter, r *http.Request) {
	gpid, req, from, ok := a.stepRequest(w, r)
	if !ok {
		return
	}
	resp, err := a.mig.RestoreIncoming(r.Context(), gpid, req, from)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *Agent) handleAbort(w http.ResponseWriter, r *http.Request) {
	gpid, req, from, ok := a.stepRequest(w, r)
	if !ok {
		return
	}
	if err := a.mig.AbortIncoming(gpid, req.ID, from); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) handleResume(w http.ResponseWriter, r *http.Request) {
	gpid, req, from, ok := a.stepRequest(w, r)
	if !ok {
		return
	}
	if err := a.mig.ResumeIncoming(r.Context(), gpid, req.ID, from); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// stepRequest decodes the gpid and body of a restore, resume or abort request,
// answering the error itself when ok is false.
func (a *Agent) stepRequest(w http.ResponseWriter, r *http.Request) (gpid uint64, req api.RestoreRequest, from string, ok bool) {
	from = access.CallerOf(r).Node // the migration's source: guard admitted it
	gpid, err := pathGPID(r)
	if err == nil {
		err = decode(r, &req)
	}
	if err != nil {
		a.writeError(w, r, err)
		return 0, req, "", false
	}
	return gpid, req, from, true
}

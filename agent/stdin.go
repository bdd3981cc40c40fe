package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/shim"
)

// A job's stdin: the owner agent passes the bytes an attached ssi run sends
// (POST /v1/procs/{gpid}/stdin) to the job's shim, which writes them into
// the job's stdin pipe (see shim/stdin.go for the offsets that make a resend
// safe). A migration holds the shim's stream once the job is frozen and
// ships what the pipe held with the job's log (StdinFile); a rollback
// releases it.

// handleStdin is POST /v1/procs/{gpid}/stdin?offset=N[&eof=1] with the bytes
// of the job's input stream from offset N as the body.
func (a *Agent) handleStdin(w http.ResponseWriter, r *http.Request) {
	p, ok := a.owned(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	offset, err := strconv.ParseInt(q.Get("offset"), 10, 64)
	if err != nil || offset < 0 {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "invalid offset %q", q.Get("offset")))
		return
	}
	if r.ContentLength < 0 || r.ContentLength > api.MaxStdinChunk {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "stdin: a body with a Content-Length of at most %d bytes is required", api.MaxStdinChunk))
		return
	}
	// The whole chunk first: the shim then takes it at the job's pace, and
	// a client that stops half-way writes nothing.
	data := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, data); err != nil {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "stdin: short body: %v", err))
		return
	}
	dir := a.sup.Dir(p.GPID)
	if p.State.Ended() {
		writeJSON(w, http.StatusOK, api.StdinStatus{Offset: offset, Closed: true})
		return
	}
	var spec shim.Spec
	if err := shim.ReadJSON(dir, shim.SpecFile, &spec); err == nil && !spec.Stdin {
		a.writeError(w, r, api.Errorf(api.CodeConflict, "gpid %d was started without stdin (ssi run -d or --no-stdin): it reads /dev/null", p.GPID))
		return
	}
	st, err := shim.StdinCall(r.Context(), dir, shim.StdinRequest{Op: shim.StdinWrite, Offset: offset, EOF: q.Get("eof") != ""}, data)
	if err != nil {
		if ended, _ := a.ended(r.Context(), p.GPID, dir); ended {
			writeJSON(w, http.StatusOK, api.StdinStatus{Offset: offset, Closed: true})
			return
		}
		if errors.Is(err, fs.ErrNotExist) {
			a.writeError(w, r, api.Errorf(api.CodeConflict, "gpid %d has no stdin on node %s (a job restored from a checkpoint reads end of file)", p.GPID, a.cfg.Name))
			return
		}
		if r.Context().Err() != nil {
			return // the client went away
		}
		a.writeError(w, r, api.Errorf(api.CodeNotReady, "stdin of gpid %d on node %s: %v; retry", p.GPID, a.cfg.Name, err))
		return
	}
	switch {
	case st.Held:
		a.writeError(w, r, api.Errorf(api.CodeNotReady, "gpid %d is being moved to another node; send its stdin again shortly", p.GPID))
	case st.Gap:
		a.writeError(w, r, api.Errorf(api.CodeConflict, "stdin of gpid %d: %s", p.GPID, st.Error))
	case st.Error != "":
		a.writeError(w, r, fmt.Errorf("stdin of gpid %d: %s", p.GPID, st.Error))
	default:
		writeJSON(w, http.StatusOK, api.StdinStatus{Offset: st.Offset, EOF: st.EOF, Closed: st.Closed})
	}
}

// handleResize is POST /v1/procs/{gpid}/resize: the new size of the job's
// terminal.
func (a *Agent) handleResize(w http.ResponseWriter, r *http.Request) {
	p, ok := a.owned(w, r)
	if !ok {
		return
	}
	var req api.ResizeRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	switch {
	case !p.TTY:
		a.writeError(w, r, api.Errorf(api.CodeConflict, "gpid %d has no terminal (ssi run -t)", p.GPID))
		return
	case p.State.Ended():
		w.WriteHeader(http.StatusNoContent)
		return
	}
	st, err := shim.StdinCall(r.Context(), a.sup.Dir(p.GPID), shim.StdinRequest{Op: shim.StdinResize, Rows: req.Rows, Cols: req.Cols}, nil)
	if err == nil && st.Error != "" {
		err = errors.New(st.Error)
	}
	if err != nil {
		a.writeError(w, r, fmt.Errorf("resize the terminal of gpid %d: %w", p.GPID, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/joblog"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
)

// handleLogs streams a job's output as joblog records from byte offset on.
// With follow=1 it keeps streaming until the job has ended and then sends an Exit
// record; readers resume after a broken connection at the offset they reached.
func (a *Agent) handleLogs(w http.ResponseWriter, r *http.Request) {
	if p, ok := access.ProcOf(r); ok && !p.Archived.IsZero() {
		a.writeError(w, r, api.Errorf(api.CodeNotFound, "gpid %d has %s; its output was dropped with its record's retention (agent flag --retention), and the record archived %s (ssi wait %d still gives its exit status)",
			p.GPID, p.DescribeEnd(), p.Archived.Local().Format(time.DateTime), p.GPID))
		return
	}
	p, ok := a.owned(w, r)
	if !ok {
		return
	}
	offset, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if r.URL.Query().Get("offset") == "" {
		offset, err = 0, nil
	}
	if err != nil || offset < 0 {
		a.writeError(w, r, api.Errorf(api.CodeBadRequest, "invalid offset %q", r.URL.Query().Get("offset")))
		return
	}
	follow := r.URL.Query().Get("follow") != ""
	dir := a.sup.Dir(p.GPID)
	var watch *dirWatch
	if follow {
		// Watch before the first read so no write between read and wait is missed.
		if watch, err = watchDir(dir); err != nil {
			a.writeError(w, r, err)
			return
		}
		defer watch.Close()
	}
	w.Header().Set("Content-Type", "application/x-ssi-joblog")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	var buf []byte
	emit := func(rec joblog.Record) error {
		buf = joblog.Append(buf, rec)
		if len(buf) >= 256<<10 {
			return flush(w, flusher, &buf)
		}
		return nil
	}
	var logf *os.File
	defer func() {
		if logf != nil {
			logf.Close()
		}
	}()
	for {
		ended, status := a.ended(r.Context(), p.GPID, dir)
		_, mErr := os.Stat(filepath.Join(dir, shim.MovedFile))
		moved := mErr == nil
		if logf == nil {
			logf, err = os.Open(filepath.Join(dir, shim.LogFile))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				a.log.Warn("open job log", "gpid", p.GPID, "err", err)
			}
		}
		if logf != nil {
			if offset, err = joblog.ReadComplete(logf, offset, emit); err != nil {
				_ = emit(joblog.Record{Kind: joblog.Error, Data: []byte(err.Error())})
				_ = flush(w, flusher, &buf)
				return
			}
		}
		if ended && follow {
			b, _ := json.Marshal(status)
			_ = emit(joblog.Record{Kind: joblog.Exit, Data: b})
		}
		// A moved job's stream ends without an Exit record: the follower
		// reconnects at its offset and is sent to the new owner.
		if err := flush(w, flusher, &buf); err != nil || ended || moved || !follow {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-watch.C:
		case <-time.After(time.Second):
		}
	}
}

func flush(w http.ResponseWriter, f http.Flusher, buf *[]byte) error {
	if len(*buf) > 0 {
		if _, err := w.Write(*buf); err != nil {
			return err
		}
		*buf = (*buf)[:0]
	}
	if f != nil {
		f.Flush()
	}
	return nil
}

// ended reports whether gpid has ended and how. The shim writes exit.json only
// after the job's output is complete, so output read after a true answer is all
// there is.
func (a *Agent) ended(ctx context.Context, gpid uint64, dir string) (bool, api.ExitStatus) {
	var ex shim.Exit
	if err := shim.ReadJSON(dir, shim.ExitFile, &ex); err == nil {
		return true, api.ExitStatus{GPID: gpid, State: pidtable.Exited, Code: ex.Code, Error: ex.Error}
	}
	if a.sup.Job(gpid) != nil {
		return false, api.ExitStatus{}
	}
	// Not supervised here and no exit file: the record tells (Lost, or not yet
	// started).
	p, _, err := a.store.Get(ctx, gpid)
	if err != nil || !p.State.Ended() {
		return false, api.ExitStatus{}
	}
	return true, api.ExitStatusOf(p)
}

// dirWatch wakes a follower when files in a job directory change.
type dirWatch struct {
	f *os.File
	C chan struct{}
}

func watchDir(dir string) (*dirWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MODIFY|unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	w := &dirWatch{f: os.NewFile(uintptr(fd), "inotify"), C: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := w.f.Read(buf); err != nil {
				return // closed
			}
			select {
			case w.C <- struct{}{}:
			default:
			}
		}
	}()
	return w, nil
}

func (w *dirWatch) Close() { w.f.Close() }

package clusterfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/joblog"
)

// Source is the API the tree is read from (an *api.Client).
type Source interface {
	// PS lists jobs: all the caller may see when user is "", ended ones
	// too when exited.
	PS(ctx context.Context, user string, exited bool) ([]api.ProcInfo, error)
	Nodes(ctx context.Context) ([]api.NodeInfo, error)
	// Logs returns a job's output log from offset, without following.
	Logs(ctx context.Context, gpid uint64, follow bool, offset int64) (io.ReadCloser, error)
}

// tables caches the process and node tables for ttl.
type tables struct {
	src Source
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex // held while fetching: one fetch serves concurrent readers
	fetched time.Time
	procs   map[uint64]api.ProcInfo
	gpids   []uint64 // in the API's order (by gpid)
	nodes   []api.NodeInfo
}

func (t *tables) get(ctx context.Context) (map[uint64]api.ProcInfo, []uint64, []api.NodeInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.fetched.IsZero() && t.now().Sub(t.fetched) < t.ttl {
		return t.procs, t.gpids, t.nodes, nil
	}
	procs, err := t.src.PS(ctx, "", true)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("clusterfs: list jobs: %w", err)
	}
	nodes, err := t.src.Nodes(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("clusterfs: list nodes: %w", err)
	}
	t.procs, t.gpids = make(map[uint64]api.ProcInfo, len(procs)), make([]uint64, 0, len(procs))
	for _, p := range procs {
		t.procs[p.GPID] = p
		t.gpids = append(t.gpids, p.GPID)
	}
	t.nodes, t.fetched = nodes, t.now()
	return t.procs, t.gpids, t.nodes, nil
}

// output is what a job wrote, read incrementally from its log.
type output struct {
	mu      sync.Mutex
	offset  int64 // log bytes consumed (complete output records)
	stdout  []byte
	stderr  []byte
	fetched time.Time
	ended   bool // the log carried the exit record: nothing more will come
}

// logs caches the jobs' outputs.
type logs struct {
	src Source
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	jobs map[uint64]*output
}

// get returns gpid's stdout or stderr (a copy-free view: callers only read).
func (l *logs) get(ctx context.Context, gpid uint64, stderr bool) ([]byte, error) {
	l.mu.Lock()
	o := l.jobs[gpid]
	if o == nil {
		o = &output{}
		l.jobs[gpid] = o
	}
	l.mu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.ended && (o.fetched.IsZero() || l.now().Sub(o.fetched) >= l.ttl) {
		if err := l.refresh(ctx, gpid, o); err != nil {
			return nil, err
		}
	}
	if stderr {
		return o.stderr, nil
	}
	return o.stdout, nil
}

// refresh reads the records written after o.offset.
func (l *logs) refresh(ctx context.Context, gpid uint64, o *output) error {
	body, err := l.src.Logs(ctx, gpid, false, o.offset)
	if err != nil {
		return fmt.Errorf("clusterfs: output of gpid %d: %w", gpid, err)
	}
	defer body.Close()
	jr := joblog.NewReader(body)
	for {
		rec, err := jr.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break // what is there so far; a partial record is read again next time
		}
		if err != nil {
			return fmt.Errorf("clusterfs: output of gpid %d: %w", gpid, err)
		}
		switch rec.Kind {
		case joblog.Stdout:
			o.stdout = append(o.stdout, rec.Data...)
		case joblog.Stderr:
			o.stderr = append(o.stderr, rec.Data...)
		case joblog.Exit:
			o.ended = true
		case joblog.Error:
			return fmt.Errorf("clusterfs: output of gpid %d: agent: %s", gpid, rec.Data)
		}
		if rec.Kind == joblog.Stdout || rec.Kind == joblog.Stderr {
			o.offset += joblog.HeaderSize + int64(len(rec.Data))
		}
	}
	o.fetched = l.now()
	return nil
}

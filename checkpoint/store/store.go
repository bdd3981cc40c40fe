// Package store keeps the checkpoints of one node: it takes them (a CRIU
// dump of a running job, through package migrate's dumper, with the job's
// output up to the dump and what a restore needs to know), restores them as
// a running job under the same gpid or a new one, fetching them from the
// node that holds them, and removes what an agent's stop left half-done.
//
// A checkpoint is kept by the node that took it, on disk (it outlives a
// reboot), in <data dir>/checkpoints/<name>/:
//
//	images/    CRIU's images of the job's process tree
//	log        the job's output up to the dump (the restored job goes on from it)
//	spec.json  the job's shim spec (command, environment, user, limits)
//	meta.json  Meta
//
// Its record in etcd (pidtable.Checkpoint) names the node; a restore on
// another node fetches the directory from it as a checksummed stream
// (migrate.WriteStream, Stream here; the agent carries it).
//
// The record of the job is the fence: a checkpoint claims it (Checkpointing)
// before the dump, a restore claims the gpid (Starting, owned by the
// restoring node) before anything runs, so a job never runs twice.
//
// Errors carry an errdefs kind; the agent's HTTP edge turns them into codes.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/migrate"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/shim"
	"github.com/ssi-cluster/ssi/supervisor"
)

// Timeout bounds taking or restoring one checkpoint.
const Timeout = 5 * time.Minute

// Meta is what a restore needs besides the images.
type Meta struct {
	// StdoutKey and StderrKey identify the job's output pipes in the images,
	// for CRIU's --inherit-fd.
	StdoutKey string `json:"stdout_key"`
	StderrKey string `json:"stderr_key"`
	// Files the job mapped or held open: a node restoring it must have them.
	Files []api.FileCheck `json:"files"`
	// CPUFlags are the feature flags of the CPU it was dumped on.
	CPUFlags []string `json:"cpu_flags,omitempty"`
}

// MetaFile is Meta's file in a checkpoint's directory.
const MetaFile = "meta.json"

// Dumper dumps jobs with CRIU and keeps image directories; *migrate.Migrator
// is one.
type Dumper interface {
	Dump(ctx context.Context, opts checkpoint.DumpOpts, j migrate.Job) error
	ImagesDir(kind string, gpid uint64) string
}

// Config is what a Store needs from its agent.
type Config struct {
	// Node is this node's name; Dir the directory that holds its checkpoints.
	Node string
	Dir  string
	// CgroupParent is the parent of jobs' cgroups; ShimExe the ssi-shim.
	CgroupParent string
	ShimExe      string
	// CRIUPath is the CRIU this node restores with; CRIUErr says why it
	// cannot checkpoint (nil when it can).
	CRIUPath string
	CRIUErr  error
	Table    *pidtable.Store
	Jobs     *supervisor.Supervisor
	Dumper   Dumper
	CPU      migrate.CPU
	// Fetch opens the stream of checkpoint name from the node holding it.
	Fetch func(ctx context.Context, holder pidtable.Node, name string) (io.ReadCloser, error)
	Log   *slog.Logger
}

// Store is one node's checkpoints.
type Store struct {
	cfg Config
	log *slog.Logger
}

// New returns the store cfg describes.
func New(cfg Config) *Store { return &Store{cfg: cfg, log: cfg.Log} }

// Dir is the directory of checkpoint name on this node.
func (s *Store) Dir(name string) string { return filepath.Join(s.cfg.Dir, name) }

// Remove removes checkpoint name's directory on this node.
func (s *Store) Remove(name string) error { return os.RemoveAll(s.Dir(name)) }

// Stream writes checkpoint name, held here, as a checksummed stream (for
// the node that restores it).
func (s *Store) Stream(w io.Writer, name string) (int64, error) {
	dir := s.Dir(name)
	return migrate.WriteStream(w,
		migrate.Source{Prefix: "images", Dir: filepath.Join(dir, "images")},
		migrate.Source{Prefix: "job", Dir: dir, Files: []string{shim.LogFile, shim.SpecFile, MetaFile}})
}

// fetch streams checkpoint c from its holder: images into images, the job
// files into jobFiles. It returns the bytes received.
func (s *Store) fetch(ctx context.Context, holder pidtable.Node, c pidtable.Checkpoint, images, jobFiles string) (int64, error) {
	for _, d := range []string{images, jobFiles} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return 0, err
		}
	}
	body, err := s.cfg.Fetch(ctx, holder, c.Name)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	// No more than the job's memory limit allows (its pages cannot exceed it).
	n, err := migrate.ReadStream(body, map[string]string{"images": images, "job": jobFiles}, migrate.ImageBytesFor(c.Proc.Memory))
	if err != nil {
		return n, errdefs.Conflictf("checkpoint %s from %s: %v", c.Name, holder.Name, err)
	}
	return n, nil
}

// Reconcile runs at agent start: it removes checkpoints this node
// was still saving when its agent stopped, and directories that no record
// names (removed while this node was down).
func (s *Store) Reconcile(ctx context.Context) error {
	cs, err := s.cfg.Table.Checkpoints(ctx, s.cfg.Node)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, c := range cs {
		if c.State == pidtable.Ready {
			keep[c.Name] = true
			continue
		}
		_, rev, err := s.cfg.Table.GetCheckpoint(ctx, c.Name)
		if err == nil {
			err = s.cfg.Table.DeleteCheckpoint(ctx, c.Name, rev)
		}
		s.log.Warn("removed a checkpoint interrupted by an agent restart", "checkpoint", c.Name, "gpid", c.GPID, "err", err)
	}
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("checkpoint store: list checkpoints: %w", err)
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			if err := os.RemoveAll(filepath.Join(s.cfg.Dir, e.Name())); err != nil {
				s.log.Warn("remove stale checkpoint dir", "dir", e.Name(), "err", err)
			}
		}
	}
	return nil
}

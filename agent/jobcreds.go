package agent

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ssi-cluster/ssi/access"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/supervisor"
)

// Jobs' credentials (package access, jobcred.go): every job of this node
// gets, in JobCreds/<gpid>/config.json (its SSI_CONFIG), a config for ssi
// with a certificate of its user naming the job and a key, readable by the
// job's user alone, pointing at this agent. jobCredsLoop writes it for each
// job that runs here and has none (a new job, one that just arrived by a
// migration, a restore or a failover), renews it at half its life, and
// removes it when the job no longer runs here.

// jobCredsEvery is the loop's period: a new job has its credential within it.
const jobCredsEvery = time.Second

// jobCredsDir is the directory of jobs' credentials: the same path on every
// node of the cluster (a moved job keeps its SSI_CONFIG) and another for
// each cluster (two local clusters on one machine number their jobs alike).
// "" with --insecure: no credentials.
func (a *Agent) jobCredsDir() string {
	if a.node == nil {
		return ""
	}
	return filepath.Join("/run/ssi", a.node.CA.Hash()[:16], "jobs")
}

// handleJobCred is POST /v1/jobcreds: a node asks the CA node for the
// credential of a job it runs.
func (a *Agent) handleJobCred(w http.ResponseWriter, r *http.Request) {
	who := access.CallerOf(r) // a node: the route's role (routes.go)
	if a.forwardToCA(w, r) {
		return
	}
	var req api.JobCredRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	resp, err := a.access.IssueJobCred(r.Context(), who.Node, req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *Agent) jobCredsLoop(ctx context.Context) {
	dir := a.jobCredsDir()
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		a.log.Warn("jobs' credentials: no directory; jobs get none", "dir", dir, "err", err)
		return
	}
	select {
	case <-a.own.Synced():
	case <-ctx.Done():
		return
	}
	renewAt := map[uint64]time.Time{} // gpid -> when its credential is renewed
	foreign := map[uint64]bool{}      // credentials another agent wrote (a local cluster)
	t := time.NewTicker(jobCredsEvery)
	defer t.Stop()
	for {
		a.refreshJobCreds(ctx, dir, renewAt, foreign)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refreshJobCreds writes the credentials due of the jobs running here, and
// removes those of jobs no longer here that this agent wrote. foreign holds
// the gpids whose files another agent wrote (agents of a local cluster share
// the directory), so that they are read once, not every second.
func (a *Agent) refreshJobCreds(ctx context.Context, dir string, renewAt map[uint64]time.Time, foreign map[uint64]bool) {
	procs, _ := a.own.Procs()
	here := map[uint64]bool{}
	for _, p := range procs {
		if p.Node != a.cfg.Name || p.State != pidtable.Running || a.sup.Job(p.GPID) == nil {
			continue
		}
		here[p.GPID] = true
		delete(foreign, p.GPID) // moved here: its file is ours now
		if time.Now().Before(renewAt[p.GPID]) {
			continue
		}
		notAfter, err := a.writeJobCred(ctx, dir, p)
		if err != nil {
			a.log.Warn("job credential", "gpid", p.GPID, "err", err)
			renewAt[p.GPID] = time.Now().Add(10 * time.Second) // try again then
			continue
		}
		renewAt[p.GPID] = time.Now().Add(time.Until(notAfter) / 2)
	}
	for g := range renewAt {
		if !here[g] {
			delete(renewAt, g)
		}
	}
	entries, _ := os.ReadDir(dir)
	listed := make(map[uint64]bool, len(entries))
	for _, e := range entries {
		g, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil {
			continue
		}
		listed[g] = true
		if here[g] || foreign[g] {
			continue
		}
		// Only what this agent wrote: on one machine (a local cluster) the
		// agent a job moved to writes the same path.
		c, err := pki.LoadClientConfig(supervisor.JobCredFile(dir, g))
		switch {
		case (err == nil && c.Server == a.cfg.Advertise) || errors.Is(err, os.ErrNotExist):
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		case err == nil:
			foreign[g] = true
		}
	}
	for g := range foreign {
		if !listed[g] {
			delete(foreign, g)
		}
	}
}

// writeJobCred has p's credential issued and writes it, readable by p's user
// alone; it returns the certificate's expiry.
func (a *Agent) writeJobCred(ctx context.Context, dir string, p pidtable.Proc) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	certPEM, keyPEM, caPEM, err := a.access.JobCred(ctx, p)
	if err != nil {
		return time.Time{}, err
	}
	cert, err := pki.ParseCert(certPEM)
	if err != nil {
		return time.Time{}, err
	}
	jd := filepath.Join(dir, strconv.FormatUint(p.GPID, 10))
	if err := os.MkdirAll(jd, 0o700); err != nil {
		return time.Time{}, err
	}
	if err := os.Chown(jd, p.UID, p.GID); err != nil {
		return time.Time{}, err
	}
	cfg := pki.ClientConfig{Server: a.cfg.Advertise, User: p.User, CA: string(caPEM), Cert: string(certPEM), Key: string(keyPEM)}
	path := supervisor.JobCredFile(dir, p.GPID)
	tmp := path + ".new"
	if err := cfg.Write(tmp); err != nil {
		return time.Time{}, err
	}
	if err := os.Chown(tmp, p.UID, p.GID); err != nil {
		_ = os.Remove(tmp)
		return time.Time{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}

package migrate

// Post-copy (ssi migrate --postcopy), the source's part: a lazy dump whose
// CRIU stays up as a TLS page server for the target (docs/ARCHITECTURE.md,
// "Post-copy").

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/checkpoint/criutls"
	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/failpoint"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/shim"
	"golang.org/x/sys/unix"
)

// lazyDump starts a post-copy dump: images without the memory, and a page
// server on this node's address serving it.
func (m *migration) lazyDump(ctx context.Context) error {
	if err := failpoint.Hit("migrate/source/before-lazy-dump"); err != nil {
		return err
	}
	if was, err := checkpoint.EnsurePipeMaxSize(); err != nil {
		return errdefs.Conflictf("node %s cannot migrate post-copy: %v", m.mg.cfg.Name, err)
	} else if was < checkpoint.LazyPipeMaxSize {
		m.mg.log.Info("raised fs.pipe-max-size for post-copy migration", "was", was, "now", checkpoint.LazyPipeMaxSize)
	}
	host, _, err := net.SplitHostPort(m.mg.cfg.Advertise)
	if err != nil {
		return err
	}
	if pids, err := m.j.Cgroup().Pids(); err == nil {
		for _, pid := range pids {
			m.lazyBytes += rss(pid)
		}
	}
	// The page server admits only the target (pki.PageServerCreds).
	if m.lazyTLS, err = pki.NewPageServerCreds(host, Timeout+time.Hour); err != nil {
		return err
	}
	tlsFiles, err := writeTLS(m.images, "page-server", m.lazyTLS.CACert, m.lazyTLS.ServerCert, m.lazyTLS.ServerKey)
	if err != nil {
		return err
	}
	m.lazy, err = checkpoint.StartLazyDump(ctx, checkpoint.LazyDumpOpts{
		CRIUPath: m.mg.cfg.CRIUPath, PID: m.j.State().Init.PID, ImagesDir: m.images, Address: host,
		TLS: &tlsFiles, Flags: m.flags,
	})
	if err != nil {
		m.mg.keepCRIULog(err, m.gpid)
		return explainDumpError(err, m.j)
	}
	// Noted in the job dir: should this agent die before the commit, its
	// successor kills this CRIU (which holds the tree) before resuming the job.
	if id, err := shim.Identify(m.lazy.PID()); err == nil {
		_ = shim.WriteJSON(m.j.Dir(), lazyDumpFile, id)
	}
	// What is left to page over: CRIU serves only private anonymous memory
	// lazily; the rest (shared, file-backed) is in the images already.
	rss := m.lazyBytes
	eager := pagesBytes(m.images)
	m.lazyBytes = max(rss-eager, 0)
	if rss > 0 && eager > rss/2 {
		m.note = fmt.Sprintf("post-copy moved only part of the memory lazily: the images carry %s of the job's %s resident (shared or file-backed memory, which CRIU does not serve lazily), shipped before the job resumed", mib(eager), mib(rss))
	}
	return nil
}

// pagesBytes is the size of the memory pages in a dump's images.
func pagesBytes(images string) int64 {
	var n int64
	entries, _ := os.ReadDir(images)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "pages-") {
			n += fi.Size()
		}
	}
	return n
}

// rss returns the resident set size of pid in bytes (0 if it is gone).
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n * int64(os.Getpagesize())
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// lazyPagesTLS checks the page-server credentials of a post-copy restore
// request and writes them into a subdirectory of the images (removed with
// them) for the shim's lazy-pages daemon.
func lazyPagesTLS(req api.RestoreRequest, images string) (criutls.Files, error) {
	if err := pki.CheckPageServerClient([]byte(req.LazyPagesCA), []byte(req.LazyPagesCert), []byte(req.LazyPagesKey)); err != nil {
		return criutls.Files{}, errdefs.Invalidf("post-copy restore: the source's page server speaks TLS and the request must carry its credentials: %v", err)
	}
	return writeTLS(images, "lazy-pages", []byte(req.LazyPagesCA), []byte(req.LazyPagesCert), []byte(req.LazyPagesKey))
}

// writeTLS writes one end's page-server credentials into images/tls: a
// subdirectory, which the image stream skips and which goes with the images.
func writeTLS(images, prefix string, caCert, cert, key []byte) (criutls.Files, error) {
	dir := filepath.Join(images, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return criutls.Files{}, fmt.Errorf("page server credentials: %w", err)
	}
	return criutls.Write(dir, prefix, caCert, cert, key)
}

// lazyDumpFile, in a job dir, identifies the CRIU process of a post-copy dump.
const lazyDumpFile = "lazy-dump.json"

// killOrphanLazyDump kills the CRIU of a post-copy dump started by an earlier
// run of this agent, if it is still there.
func killOrphanLazyDump(dir string) {
	var id shim.ProcID
	if shim.ReadJSON(dir, lazyDumpFile, &id) == nil && id.Alive() {
		_ = unix.Kill(id.PID, unix.SIGKILL)
		for i := 0; i < 100 && id.Alive(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	_ = os.Remove(filepath.Join(dir, lazyDumpFile))
}

// errLockedDuringLazyDump: the job took a file lock while it was being
// dumped for post-copy (dumpOnce).
var errLockedDuringLazyDump = errors.New("the job took a file lock during its post-copy dump")

// fallBackToFullCopy turns a post-copy migration into a full copy because
// the job holds locks, and says so in the summary.
func (m *migration) fallBackToFullCopy(locks []string) {
	m.postcopy = false
	m.note = fmt.Sprintf("post-copy fell back to a full copy: the job holds file locks (%s), which its source copy can give up only once all its memory is on the target", strings.Join(locks, "; "))
}

// Command benchmigrate measures live migration (`ssi migrate`) against raw CRIU
// on the same machine. It is a benchmark harness, not a timed test: it brings up
// a private two-node local cluster (network namespaces named smig-node*, see
// package localcluster), measures, prints a markdown report on stdout and tears
// the cluster down again, also on error and on Ctrl-C (SIGINT, SIGTERM and SIGHUP
// are caught; a second Ctrl-C does not cut the teardown short). Progress goes to
// stderr. Run it as root from the repository:
//
//	go run ./hack/benchmigrate                          (64, 512 and 2048 MiB, 5 runs each)
//	go run ./hack/benchmigrate -sizes 64 -runs 3 -warmup 0   (a quick pass)
//	go run ./hack/benchmigrate -methods raw,ssi-postcopy      (some methods only)
//
// # Method
//
// The job is the same Python program for every method: it builds a bytearray of
// N MiB (the bytes 0..255 repeated, so every page is written and none is zero),
// prints "ready", then once a second checks two bytes of the array (exit 3 if
// they changed) and prints a counter. Its working directory WD is a private
// temporary directory (CRIU mounts a proc in the dumped task's working directory,
// see run: a shared one would make dumps by others on the machine collide with
// ours). Once "ready" is seen the harness waits -settle (1 s), then measures one
// of:
//
//   - raw: the issue's baseline, "criu dump to tmpfs, then criu restore from it,
//     no network". The job is started by this harness directly, as PID 1 of new
//     PID, IPC and UTS namespaces and session leader (what `setsid unshare -p -f
//     -i -u setsid PROG` gives, and what ssi's init is), stdin /dev/null and
//     stdout/stderr to a file in /dev/shm; after "ready" it points fds 1 and 2 at
//     /dev/null, so no open file changes size before the restore. Timed: the
//     wall clock of `criu dump -t PID -D DIR -o dump.log -v4 --file-locks
//     --display-stats` (CRIU kills the job once dumped), then, once the job is
//     gone, of `criu restore -D DIR -o restore.log -v4 --file-locks
//     --display-stats -d --restore-sibling --pidfile F`. Same log level and flags
//     as ssi's own CRIU calls; no --shell-job. The restored job must still be
//     alive 1.2 s later, else the run fails.
//   - raw-keep (-raw-keep, on by default): raw CRIU under the memory conditions
//     of a migration between two nodes of one machine, to tell their cost from
//     the cost of ssi. Dump as above but with --leave-stopped (the original
//     stays, stopped, as ssi's source copy does); copy the images to a second
//     /dev/shm directory through ssi's own image stream (package migrate: tar
//     and a SHA-256 per file, checked by the reader), written and read by two
//     goroutines over an in-process pipe (timed: ssi's transfer without the
//     network); restore from the copy while the stopped original and the first
//     images still exist; then kill both copies. Also timed: the stream written
//     to io.Discard (the sending side alone).
//   - ssi: `ssi run -d --node node1 -w WD -- python3 -c PROG N` (through the CLI,
//     as a user would), wait for "ready" with `ssi logs`, then `ssi migrate -o
//     json GPID node2`; its frozen_ms, image_bytes, dump_ms, transfer_ms,
//     restore_ms and total_ms are recorded, and the wall clock of the CLI
//     process. A fresh job is started for every run (no back-and-forth moves),
//     so every method dumps a job that has never been dumped before. After the
//     move the harness checks that the record names node2 and that the job's
//     log grows (the job runs and its output is re-plumbed), that no image
//     directory is left in /dev/shm, and kills the job (`ssi kill -s KILL`).
//   - ssi-postcopy: the same job and checks as ssi, moved with `ssi migrate
//     --postcopy -o json GPID node2`: the dump writes everything but the
//     memory and its CRIU process stays up as a page server; the target
//     restores at once with --lazy-pages and resumes the job, and CRIU's
//     lazy-pages daemon there pulls the memory (on faults and in the
//     background). Recorded as for ssi, plus pages_ms (after the resume, until
//     all memory arrived; part of total_ms, not of frozen_ms) and lazy_bytes
//     (the job's RSS at the dump). The stats must say post_copy; `ssi migrate`
//     returns only once the pages are all on the target, so the log check then
//     runs against a job whose memory is entirely there. It also checks that
//     no CRIU process (page server, lazy-pages daemon) still uses the job's
//     image directories shortly after the move (a note if one does).
//
// -methods chooses the methods and their order in the first round (default
// raw,ssi,ssi-postcopy,raw-keep; -raw-keep=false drops raw-keep). The ratios
// need raw.
//
// For each size, -warmup rounds are run and discarded, then -runs rounds; each
// round runs every method once, one after the other (never two jobs at once),
// in an order that rotates from round to round, so that background noise and
// the VM's memory state hit all methods alike. The report gives the median (and
// min-max) of each figure and the ratios of the medians, for ssi and
// ssi-postcopy: frozen / raw dump and total / (raw dump + raw restore), against
// the targets of 1.1 and 1.3. Load average, the machine's busy and steal CPU share while each size
// ran, the free memory the guest handed back to the hypervisor meanwhile
// (virtio-balloon free page reporting: such memory is slow to touch again), and
// the network namespaces of other local clusters are reported, so that noise
// from other users of the machine shows. A run that fails (others may be using
// CRIU on the machine at the same time) is reported in the notes and repeated
// with a fresh job, at most twice; it is not measured.
//
// Memory: a size is run only if MemAvailable is at least 4 x N (ssi's peak on
// one machine: the stopped source copy, the source images, the target images
// and the restored copy) plus -headroom-mib; before every round the harness
// waits (bounded) for that much to be free again, else it skips the rest of the
// size with a note. Every directory it makes in /dev/shm is named smig-* and
// removed.
//
// Every loop is bounded by a count and a time limit, every command by a
// timeout, the whole run by -timeout.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/agent"
	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/localcluster"
	"github.com/ssi-cluster/ssi/migrate"
)

// Bounds of single operations.
const (
	cliTimeout     = 60 * time.Second // one ssi CLI process (migrate excepted)
	migrateTimeout = 6 * time.Minute  // one ssi migrate (the agent's own bound is 5 min)
	criuTimeout    = 5 * time.Minute  // one criu dump or restore
	readyLimit     = 60 * time.Second // nodes Ready after up
	goneLimit      = 60 * time.Second // a killed job gone
	aliveCheck     = 1200 * time.Millisecond
	memWaitLimit   = 2 * time.Minute // waiting for memory before a round
	pollEvery      = 50 * time.Millisecond
	maxRetries     = 2 // repeated attempts of one failed run
)

// jobProgram is the job, for every method. argv: N_MIB [quiet].
const jobProgram = `import os, sys, time
n = int(sys.argv[1]) * 1048576
b = bytearray(range(256)) * (n // 256)
print("ready", flush=True)
if len(sys.argv) > 2:
    fd = os.open("/dev/null", os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
i = 0
while True:
    time.sleep(1)
    i += 1
    if b[n - 1] != 255 or b[n // 2] != (n // 2) % 256:
        sys.exit(3)
    print(i, flush=True)
`

type options struct {
	sizes        []int
	runs, warmup int
	rawKeep      bool
	methods      []method
	settle       time.Duration
	name, subnet string
	stateDir     string
	dataDir      string
	bin, repo    string
	criu, python string
	headroomMiB  int64
	timeout      time.Duration
}

func parseFlags() (options, error) {
	var o options
	var sizes, methods string
	flag.StringVar(&sizes, "sizes", "64,512,2048", "job sizes in MiB, comma-separated")
	flag.StringVar(&methods, "methods", "raw,ssi,ssi-postcopy,raw-keep", "methods to measure, comma-separated, in the order of the first round (raw, ssi, ssi-postcopy, raw-keep); the ratios need raw")
	flag.IntVar(&o.runs, "runs", 5, "measured rounds per size (>= 5 for the report)")
	flag.IntVar(&o.warmup, "warmup", 1, "discarded rounds per size before the measured ones")
	flag.BoolVar(&o.rawKeep, "raw-keep", true, "also measure raw CRIU with the original kept stopped and the images copied through ssi's stream codec in-process (ssi's memory conditions, no network)")
	flag.DurationVar(&o.settle, "settle", time.Second, "wait between the job's \"ready\" and the dump")
	flag.StringVar(&o.name, "name", "smig", "cluster name; must start with smig (never another cluster's)")
	flag.StringVar(&o.subnet, "subnet", "10.214.0.0/24", "cluster subnet")
	flag.StringVar(&o.stateDir, "state-dir", "/run/ssi-local", "state dir of local clusters")
	flag.StringVar(&o.dataDir, "data-dir", "", "data dir of the cluster (default /var/lib/ssi-local/NAME)")
	flag.StringVar(&o.bin, "bin", "", "directory holding prebuilt ssi and ssi-shim (default: build them into a temporary directory)")
	flag.StringVar(&o.repo, "repo", "", "repository root (default: found from the working directory)")
	flag.StringVar(&o.criu, "criu", "/usr/local/sbin/criu", "CRIU binary for the raw baseline (the agents use their own default)")
	flag.StringVar(&o.python, "python", "python3", "Python interpreter of the job")
	flag.Int64Var(&o.headroomMiB, "headroom-mib", 2048, "MemAvailable to keep on top of 4 x size")
	flag.DurationVar(&o.timeout, "timeout", 90*time.Minute, "bound on the whole benchmark (teardown comes after it)")
	flag.Parse()
	if o.dataDir == "" {
		o.dataDir = filepath.Join("/var/lib/ssi-local", o.name)
	}
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 64<<10 {
			return o, fmt.Errorf("-sizes %q: want MiB counts from 1 to 65536, comma-separated", sizes)
		}
		o.sizes = append(o.sizes, n)
	}
	for _, f := range strings.Split(methods, ",") {
		m := method(strings.TrimSpace(f))
		if !slices.Contains(allMethods, m) {
			return o, fmt.Errorf("-methods %q: unknown method %q (want some of %v)", methods, m, allMethods)
		}
		if slices.Contains(o.methods, m) {
			return o, fmt.Errorf("-methods %q: %s twice", methods, m)
		}
		if m == mRawKeep && !o.rawKeep {
			continue
		}
		o.methods = append(o.methods, m)
	}
	if len(o.methods) == 0 {
		return o, fmt.Errorf("-methods %q: no method left", methods)
	}
	switch {
	case os.Geteuid() != 0:
		return o, errors.New("needs root (network namespaces, cgroups, CRIU): run it with sudo")
	case !strings.HasPrefix(o.name, "smig"):
		return o, fmt.Errorf("-name %q: must start with smig, so that no other cluster is touched", o.name)
	case o.runs < 1 || o.warmup < 0:
		return o, errors.New("-runs must be >= 1, -warmup >= 0")
	case o.settle < 0 || o.settle > time.Minute:
		return o, errors.New("-settle: want 0 to 1m")
	}
	if _, err := exec.LookPath(o.criu); err != nil {
		return o, fmt.Errorf("-criu: %w", err)
	}
	p, err := exec.LookPath(o.python)
	if err != nil {
		return o, fmt.Errorf("-python: %w", err)
	}
	o.python = p
	return o, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchmigrate: %v\n", err)
		os.Exit(2)
	}
	os.Exit(run(o))
}

func run(o options) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Caught until the process exits: a second Ctrl-C must not interrupt teardown.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	b := &bench{o: o, log: log}
	b.rep.machine = machineInfo(o.name)
	b.rep.command = "go run ./hack/benchmigrate " + strings.Join(os.Args[1:], " ")
	b.versions()
	err := b.run(ctx) // tears the cluster down before returning
	switch {
	case err == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("%w (-timeout %s reached)", err, o.timeout)
	case ctx.Err() != nil:
		err = fmt.Errorf("%w (interrupted by a signal)", err)
	}
	b.rep.print(os.Stdout, o, err)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchmigrate: %v\n", err)
		return 1
	}
	return 0
}

// bench is one benchmark run.
type bench struct {
	o   options
	log *slog.Logger
	rep report

	binDir string
	ssi    string
	st     *localcluster.State
	env    []string
	api    *api.Client
	wd     string // working directory of every job (private, see run)
	seq    int    // numbers /dev/shm dirs
}

func (b *bench) run(ctx context.Context) error {
	if err := b.build(ctx); err != nil {
		return err
	}
	defer b.teardown()
	// CRIU's parasite mounts a proc at "proc.crtools" in the dumped task's
	// working directory when the task's /proc is not of its PID namespace (a
	// job's never is): two dumps at once of tasks with the same working
	// directory fail ("Can't create a directory (-17)"). A private one keeps
	// others' dumps on this machine out of ours.
	var err error
	if b.wd, err = os.MkdirTemp("", b.o.name+"-wd-"); err != nil {
		return err
	}
	if err := b.up(ctx); err != nil {
		return err
	}
	for _, size := range b.o.sizes {
		if err := b.measureSize(ctx, size); err != nil {
			return fmt.Errorf("%d MiB: %w", size, err)
		}
	}
	return nil
}

// build finds the repository and builds ssi and ssi-shim (unless -bin).
func (b *bench) build(ctx context.Context) error {
	repo, err := benchkit.FindRepo(b.o.repo)
	if err != nil {
		return err
	}
	b.rep.machine.commit = benchkit.GitDescribe(repo)
	if b.o.bin != "" {
		b.binDir = b.o.bin
	} else {
		if b.binDir, err = os.MkdirTemp("", b.o.name+"-bin-"); err != nil {
			return err
		}
		for _, t := range [][2]string{{"ssi", "./cmd/ssi"}, {"ssi-shim", "./cmd/ssi-shim"}} {
			b.log.Info("building", "binary", t[0], "dir", b.binDir)
			cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			cmd := exec.CommandContext(cctx, "go", "build", "-o", filepath.Join(b.binDir, t[0]), t[1])
			cmd.Dir, cmd.Stdout, cmd.Stderr = repo, os.Stderr, os.Stderr
			err := cmd.Run()
			cancel()
			if err != nil {
				return fmt.Errorf("go build %s: %w", t[1], err)
			}
		}
	}
	b.ssi = filepath.Join(b.binDir, "ssi")
	for _, p := range []string{b.ssi, filepath.Join(b.binDir, "ssi-shim")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("binary: %w", err)
		}
	}
	return nil
}

func (b *bench) up(ctx context.Context) error {
	t0 := time.Now()
	// A fresh cluster, even if one of this name is up (ours: the name starts with smig).
	if err := localcluster.Down(ctx, b.o.stateDir, b.o.name, b.log); err != nil {
		return fmt.Errorf("remove the previous %s cluster: %w", b.o.name, err)
	}
	b.log.Info("starting cluster", "name", b.o.name, "subnet", b.o.subnet)
	st, _, err := localcluster.Up(ctx, localcluster.Config{
		Name: b.o.name, Nodes: 2, Subnet: b.o.subnet, Binary: b.ssi,
		DataDir: b.o.dataDir, StateDir: b.o.stateDir, Log: b.log,
	})
	b.st = st
	if err != nil {
		return fmt.Errorf("cluster up: %w", err)
	}
	b.env = append(os.Environ(), "SSI_CONFIG="+st.AdminConfig(), "SSI_ENDPOINT="+st.Endpoint())
	if b.api, err = st.Client(); err != nil {
		return err
	}
	deadline := time.Now().Add(readyLimit)
	for {
		nodes, err := b.api.Nodes(ctx)
		ready := 0
		for _, n := range nodes {
			if n.Ready {
				ready++
			}
		}
		if err == nil && ready == 2 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of 2 nodes Ready after %s (last error: %v)", ready, readyLimit, err)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	b.log.Info("cluster up", "took", time.Since(t0).Round(time.Millisecond), "endpoint", st.Endpoint())
	return nil
}

func (b *bench) teardown() {
	// What shmDir made (named after this process, so nobody else's).
	m, _ := filepath.Glob(filepath.Join("/dev/shm", fmt.Sprintf("%s-%d-*", b.o.name, os.Getpid())))
	for _, d := range m {
		_ = os.RemoveAll(d)
	}
	b.log.Info("tearing the cluster down", "name", b.o.name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := localcluster.Down(ctx, b.o.stateDir, b.o.name, b.log); err != nil {
		b.log.Error("teardown", "err", err)
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("teardown error: %v; run `ssi local down --name %s`", err, b.o.name))
	}
	if b.o.bin == "" && b.binDir != "" {
		_ = os.RemoveAll(b.binDir)
	}
	if b.wd != "" {
		_ = os.RemoveAll(b.wd)
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), b.o.name+"-") {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("namespace %s left behind after teardown", e.Name()))
		}
	}
}

// ---- one size ----

// method is one way of moving the job.
type method string

const (
	mRaw     method = "raw"
	mRawKeep method = "raw-keep"
	mSSI     method = "ssi"
	mSSIPost method = "ssi-postcopy"
)

var allMethods = []method{mRaw, mSSI, mSSIPost, mRawKeep}

// isSSI: a move through `ssi migrate` (stats in sample.stats).
func (m method) isSSI() bool { return m == mSSI || m == mSSIPost }

// sample is one measured run of one method.
type sample struct {
	round  int
	method method
	ready  time.Duration // job start to "ready" seen (first touch of its memory)
	image  int64         // image bytes

	// raw and raw-keep
	dump, stream, restore time.Duration // wall clock of criu dump / the in-process stream (raw-keep) / criu restore
	criuFrozen            time.Duration // CRIU's own "Frozen time" (dump --display-stats)
	criuMemWrite          time.Duration // CRIU's "Memory write time"
	criuRestore           time.Duration // CRIU's "Restore time" (restore --display-stats)
	encode                time.Duration // raw-keep: ssi's image stream written to io.Discard

	// ssi and ssi-postcopy
	stats api.MigrateStats
	cli   time.Duration // wall clock of `ssi migrate`
}

type sizeResult struct {
	size    int
	skipped string
	samples []sample
	warm    []sample
	noise   noise
	notes   []string
}

func (b *bench) methods() []method { return b.o.methods }

func (b *bench) measureSize(ctx context.Context, size int) error {
	res := &sizeResult{size: size}
	b.rep.sizes = append(b.rep.sizes, res)
	need := 4*int64(size) + b.o.headroomMiB
	if avail := memAvailableMiB(); avail < need {
		res.skipped = fmt.Sprintf("skipped: MemAvailable %d MiB < 4 x %d MiB + %d MiB headroom", avail, size, b.o.headroomMiB)
		b.log.Warn(res.skipped)
		return nil
	}
	n0 := sampleNoise()
	defer func() { res.noise = n0.since() }()
	ms := b.methods()
	total := b.o.warmup + b.o.runs
	for r := range total {
		if err := b.waitMemory(ctx, need); err != nil {
			if ctx.Err() != nil {
				return err
			}
			res.notes = append(res.notes, fmt.Sprintf("stopped after %d measured rounds: %v", max(r-b.o.warmup, 0), err))
			return nil
		}
		for k := range ms {
			m := ms[(r+k)%len(ms)] // rotate the order from round to round
			b.log.Info("run", "size_mib", size, "round", r+1-b.o.warmup, "warmup", r < b.o.warmup, "method", m)
			var s sample
			var err error
			for attempt := 1; ; attempt++ {
				if m.isSSI() {
					s, err = b.ssiRun(ctx, size, m == mSSIPost)
				} else {
					s, err = b.rawRun(ctx, size, m == mRawKeep)
				}
				if err == nil || ctx.Err() != nil || attempt > maxRetries {
					break
				}
				// Others may be using CRIU on this machine at the same time; a failed
				// attempt is reported, not measured, and tried again with a fresh job.
				res.notes = append(res.notes, fmt.Sprintf("round %d, %s: attempt %d failed and was repeated: %v", r+1-b.o.warmup, m, attempt, err))
				b.log.Warn("attempt failed; repeating", "size_mib", size, "method", m, "err", err)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", m, err)
			}
			s.round, s.method = r+1-b.o.warmup, m
			b.log.Info("done", "size_mib", size, "method", m, "sample", s.String())
			if r < b.o.warmup {
				res.warm = append(res.warm, s)
			} else {
				res.samples = append(res.samples, s)
			}
		}
	}
	return nil
}

// waitMemory waits until MemAvailable is at least need MiB.
func (b *bench) waitMemory(ctx context.Context, need int64) error {
	deadline := time.Now().Add(memWaitLimit)
	for {
		avail := memAvailableMiB()
		if avail >= need {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MemAvailable %d MiB < %d MiB for %s", avail, need, memWaitLimit)
		}
		if err := benchkit.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

func (s sample) String() string {
	if s.method.isSSI() {
		pc := ""
		if s.stats.PostCopy {
			pc = fmt.Sprintf(" pages %.3fs lazy %d MiB", s.stats.PagesMS/1000, s.stats.LazyBytes>>20)
		}
		return fmt.Sprintf("frozen %.3fs total %.3fs (dump %.3f transfer %.3f restore %.3f)%s cli %.3fs image %d MiB ready %.2fs",
			s.stats.FrozenMS/1000, s.stats.TotalMS/1000, s.stats.DumpMS/1000, s.stats.TransferMS/1000, s.stats.RestoreMS/1000, pc, s.cli.Seconds(), s.image>>20, s.ready.Seconds())
	}
	c := ""
	if s.method == mRawKeep {
		c = fmt.Sprintf(" stream %.3fs (encode %.3fs)", s.stream.Seconds(), s.encode.Seconds())
	}
	return fmt.Sprintf("dump %.3fs%s restore %.3fs image %d MiB ready %.2fs (criu frozen %.3f memwrite %.3f restore %.3f)",
		s.dump.Seconds(), c, s.restore.Seconds(), s.image>>20, s.ready.Seconds(), s.criuFrozen.Seconds(), s.criuMemWrite.Seconds(), s.criuRestore.Seconds())
}

// ---- raw CRIU ----

func (b *bench) shmDir(what string) string {
	b.seq++
	return filepath.Join("/dev/shm", fmt.Sprintf("%s-%d-%s-%d", b.o.name, os.Getpid(), what, b.seq))
}

func readyTimeout(size int) time.Duration {
	return 60*time.Second + time.Duration(size)*50*time.Millisecond
}

// rawRun starts the job outside ssi, dumps it with CRIU to /dev/shm and
// restores it from there. With keep, the original is left stopped by the dump,
// the images are copied through ssi's stream codec, and the restore reads the
// copy while the original and the first images still exist.
func (b *bench) rawRun(ctx context.Context, size int, keep bool) (s sample, err error) {
	dir := b.shmDir("raw")
	img := filepath.Join(dir, "img")
	if err := os.MkdirAll(img, 0o700); err != nil {
		return s, err
	}
	defer os.RemoveAll(dir)

	out, err := os.OpenFile(filepath.Join(dir, "out"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return s, err
	}
	defer out.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return s, err
	}
	defer devnull.Close()
	cmd := exec.Command(b.o.python, "-c", jobProgram, strconv.Itoa(size), "quiet")
	cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = b.wd, devnull, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return s, fmt.Errorf("start job: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	killOrig := func() {
		_ = unix.Kill(pid, unix.SIGKILL)
		select {
		case <-exited:
		case <-time.After(goneLimit):
		}
	}
	// Every raw job dies with its run, however the run ends (error, Ctrl-C).
	origGone := false
	defer func() {
		if !origGone {
			killOrig()
		}
	}()

	// Ready: "ready" in its output file.
	deadline := time.Now().Add(readyTimeout(size))
	for {
		raw, _ := os.ReadFile(filepath.Join(dir, "out"))
		if bytes.HasPrefix(raw, []byte("ready\n")) {
			break
		}
		select {
		case err := <-exited:
			origGone = true
			return s, fmt.Errorf("job exited before ready (%v): %q", err, raw)
		default:
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("job not ready after %s", readyTimeout(size))
		}
		if err := benchkit.Sleep(ctx, 10*time.Millisecond); err != nil {
			return s, err
		}
	}
	s.ready = time.Since(t0)
	if err := benchkit.Sleep(ctx, b.o.settle); err != nil {
		return s, err
	}
	if err := checkAlive(pid); err != nil {
		return s, fmt.Errorf("before dump: %w", err)
	}

	args := []string{"dump", "-t", strconv.Itoa(pid), "-D", img, "-o", "dump.log", "-v4", "--file-locks", "--display-stats"}
	if keep {
		args = append(args, "--leave-stopped")
	}
	dumpOut, d, err := b.criu(ctx, img, "dump.log", args...)
	if err != nil {
		return s, err
	}
	s.dump = d
	s.criuFrozen = statLine(dumpOut, "Frozen time:")
	s.criuMemWrite = statLine(dumpOut, "Memory write time:")
	s.image = dirSize(img)
	if !keep {
		// CRIU killed the job: wait until it is gone (reaped), so its PID and
		// memory are free for the restore, as after `kill -9` and wait.
		select {
		case <-exited:
			origGone = true
		case <-time.After(goneLimit):
			return s, fmt.Errorf("dumped job %d still there after %s", pid, goneLimit)
		}
	}

	from := img
	if keep {
		// ssi's transfer without the network: the images through ssi's stream
		// codec into a second directory, read on one side and written on the
		// other by two goroutines, as the two agents do.
		from = filepath.Join(dir, "img2")
		if s.encode, s.stream, err = streamCodec(ctx, img, from); err != nil {
			return s, fmt.Errorf("image stream: %w", err)
		}
	}
	pidfile := filepath.Join(dir, "restored.pid")
	rstOut, d, err := b.criu(ctx, from, "restore.log", "restore", "-D", from, "-o", "restore.log", "-v4", "--file-locks", "--display-stats",
		"-d", "--restore-sibling", "--pidfile", pidfile)
	s.restore = d
	rpid := 0
	if raw, rerr := os.ReadFile(pidfile); rerr == nil {
		rpid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
	}
	if rpid > 0 {
		// --restore-sibling: the restored job is our child; reap it after the kill.
		killRestored := func() {
			_ = unix.Kill(rpid, unix.SIGKILL)
			for {
				if _, werr := unix.Wait4(rpid, nil, 0, nil); !errors.Is(werr, unix.EINTR) {
					break
				}
			}
		}
		defer killRestored()
	}
	if err != nil {
		return s, err
	}
	if rpid <= 0 {
		return s, fmt.Errorf("criu restore wrote no pid to %s", pidfile)
	}
	s.criuRestore = statLine(rstOut, "Restore time:")
	if err := benchkit.Sleep(ctx, aliveCheck); err != nil {
		return s, err
	}
	if err := checkAlive(rpid); err != nil {
		return s, fmt.Errorf("restored job, %s later: %w (log %s)", aliveCheck, err, filepath.Join(from, "restore.log"))
	}
	return s, nil
}

// streamCodec times ssi's image stream (package migrate: tar with a SHA-256 of
// every file, checked by the reader) over the images in src without a network:
// written to io.Discard (encode), then written through an in-process pipe and
// read back into the new directory dst (both).
func streamCodec(ctx context.Context, src, dst string) (encode, both time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	t := time.Now()
	if _, err := migrate.WriteStream(io.Discard, migrate.Source{Prefix: "images", Dir: src}); err != nil {
		return 0, 0, err
	}
	encode = time.Since(t)
	if err := os.Mkdir(dst, 0o700); err != nil {
		return encode, 0, err
	}
	pr, pw := io.Pipe()
	t = time.Now()
	go func() {
		_, err := migrate.WriteStream(pw, migrate.Source{Prefix: "images", Dir: src})
		pw.CloseWithError(err)
	}()
	_, err = migrate.ReadStream(pr, map[string]string{"images": dst}, 1<<40)
	both = time.Since(t)
	pr.Close()
	return encode, both, err
}

// criu runs one CRIU command and returns its output and wall time: from just
// before fork+exec until wait returns.
func (b *bench) criu(ctx context.Context, dir, log string, args ...string) ([]byte, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, criuTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, b.o.criu, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t := time.Now()
	err := cmd.Run()
	d := time.Since(t)
	if err != nil {
		return out.Bytes(), d, fmt.Errorf("criu %s: %w: %s; log: %s", args[0], err, bytes.TrimSpace(out.Bytes()), strings.Join(criuErrors(filepath.Join(dir, log)), " | "))
	}
	return out.Bytes(), d, nil
}

// criuErrors returns the Error lines of a CRIU log, minus the harmless rlimit one.
func criuErrors(path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	var lines []string
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, "Error (") && !strings.Contains(l, "RLIMIT_NOFILE") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) > 5 {
		lines = lines[:5]
	}
	return lines
}

// statLine parses "<key> N us" from CRIU's --display-stats output.
func statLine(out []byte, key string) time.Duration {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				if us, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return time.Duration(us) * time.Microsecond
				}
			}
		}
	}
	return 0
}

// checkAlive fails unless pid exists and is not a zombie.
func checkAlive(pid int) error {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return fmt.Errorf("pid %d is gone", pid)
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 || i+2 >= len(raw) {
		return fmt.Errorf("pid %d: unreadable stat", pid)
	}
	if st := raw[i+2]; st == 'Z' || st == 'X' {
		return fmt.Errorf("pid %d has exited (state %c)", pid, st)
	}
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// ---- ssi ----

// ssiCLI runs the ssi CLI against node1's agent and returns its stdout.
func (b *bench) ssiCLI(ctx context.Context, timeout time.Duration, args ...string) ([]byte, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, b.ssi, args...)
	cmd.Env = b.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t := time.Now()
	err := cmd.Run()
	d := time.Since(t)
	if err != nil {
		return stdout.Bytes(), d, fmt.Errorf("ssi %s: %w: %s", strings.Join(args[:min(len(args), 2)], " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), d, nil
}

type psEntry struct {
	GPID    uint64 `json:"gpid"`
	Node    string `json:"node"`
	State   string `json:"state"`
	InitPID int    `json:"init_pid"`
}

func (b *bench) ps(ctx context.Context) ([]psEntry, error) {
	out, _, err := b.ssiCLI(ctx, cliTimeout, "ps", "-A", "-o", "json")
	if err != nil {
		return nil, err
	}
	var ps []psEntry
	if err := json.Unmarshal(out, &ps); err != nil {
		return nil, fmt.Errorf("ssi ps -A -o json: %w", err)
	}
	return ps, nil
}

func (b *bench) logs(ctx context.Context, gpid string) ([]byte, error) {
	out, _, err := b.ssiCLI(ctx, cliTimeout, "logs", gpid)
	return out, err
}

// ssiRun starts a fresh job on node1, waits for it to be ready and migrates it
// to node2, post-copy if postcopy.
func (b *bench) ssiRun(ctx context.Context, size int, postcopy bool) (s sample, err error) {
	t0 := time.Now()
	out, _, err := b.ssiCLI(ctx, cliTimeout, "run", "-d", "--node", "node1", "-w", b.wd, "--", b.o.python, "-c", jobProgram, strconv.Itoa(size))
	if err != nil {
		return s, err
	}
	gpid := strings.TrimSpace(string(out))
	if _, err := strconv.ParseUint(gpid, 10, 64); err != nil {
		return s, fmt.Errorf("ssi run -d printed %q, not a gpid", out)
	}
	defer func() {
		if kerr := b.killJob(context.WithoutCancel(ctx), gpid); kerr != nil && err == nil {
			err = kerr
		}
	}()
	deadline := time.Now().Add(readyTimeout(size))
	for {
		l, err := b.logs(ctx, gpid)
		if err != nil {
			return s, err
		}
		if bytes.HasPrefix(l, []byte("ready\n")) {
			break
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("gpid %s not ready after %s: %q", gpid, readyTimeout(size), l)
		}
		if err := benchkit.Sleep(ctx, pollEvery); err != nil {
			return s, err
		}
	}
	s.ready = time.Since(t0)
	if err := benchkit.Sleep(ctx, b.o.settle); err != nil {
		return s, err
	}

	args := []string{"migrate", "-o", "json", gpid, "node2"}
	if postcopy {
		args = []string{"migrate", "--postcopy", "-o", "json", gpid, "node2"}
	}
	out, d, err := b.ssiCLI(ctx, migrateTimeout, args...)
	s.cli = d
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(out, &s.stats); err != nil {
		return s, fmt.Errorf("ssi %s printed %q: %w", strings.Join(args[:len(args)-2], " "), out, err)
	}
	s.image = s.stats.ImageBytes
	switch {
	case s.stats.StreamLost:
		return s, fmt.Errorf("ssi migrate lost its progress stream: no figures (%s)", bytes.TrimSpace(out))
	case s.stats.PostCopy != postcopy:
		return s, fmt.Errorf("ssi %s: stats say post_copy=%v", strings.Join(args[:len(args)-2], " "), s.stats.PostCopy)
	case postcopy && s.stats.LazyBytes < int64(size)<<20:
		// The job wrote every page of its N MiB: its RSS cannot be smaller.
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("gpid %s (%d MiB): lazy_bytes %d < the job's %d MiB", gpid, size, s.stats.LazyBytes, size))
	}

	// The move happened: the record names node2, the job runs and its output
	// arrives, and no images are left behind.
	ps, err := b.ps(ctx)
	if err != nil {
		return s, err
	}
	found := false
	for _, p := range ps {
		if strconv.FormatUint(p.GPID, 10) == gpid {
			found = true
			if p.Node != "node2" || p.State != "running" {
				return s, fmt.Errorf("after migrate gpid %s is %s on %s", gpid, p.State, p.Node)
			}
		}
	}
	if !found {
		return s, fmt.Errorf("after migrate gpid %s is not listed by ssi ps -A", gpid)
	}
	l0, err := b.logs(ctx, gpid)
	if err != nil {
		return s, err
	}
	grown := time.Now().Add(5 * time.Second)
	for {
		l, err := b.logs(ctx, gpid)
		if err != nil {
			return s, err
		}
		if len(l) > len(l0) {
			break
		}
		if time.Now().After(grown) {
			return s, fmt.Errorf("gpid %s printed nothing for 5 s after the migration", gpid)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return s, err
		}
	}
	if postcopy {
		// The page server exits once the target has every page, the lazy-pages
		// daemon right after; neither may linger.
		dirs := b.imageDirs(gpid)
		var left []string
		for deadline := time.Now().Add(3 * time.Second); ; {
			if left = procsUsing(dirs); len(left) == 0 || time.Now().After(deadline) {
				break
			}
			if err := benchkit.Sleep(ctx, 100*time.Millisecond); err != nil {
				return s, err
			}
		}
		if len(left) > 0 {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("gpid %s: 3 s after `ssi migrate --postcopy` returned, processes still used its image directories: %s", gpid, strings.Join(left, "; ")))
		}
	}
	for _, p := range b.imageDirs(gpid) {
		if _, err := os.Stat(p); err == nil {
			b.rep.notes = append(b.rep.notes, fmt.Sprintf("images of gpid %s left in %s after the migration returned", gpid, p))
			_ = os.RemoveAll(p)
		}
	}
	return s, nil
}

// procsUsing lists the processes (PID and command line) with one of dirs, or a
// path under it, as an argument.
func procsUsing(dirs []string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, d := range dirs {
			if bytes.Contains(raw, []byte(d+"\x00")) || bytes.Contains(raw, []byte(d+"/")) {
				out = append(out, e.Name()+" "+strings.TrimSpace(string(bytes.ReplaceAll(raw, []byte{0}, []byte{' '}))))
				break
			}
		}
	}
	return out
}

// imageDirs lists where the agents keep gpid's images in flight.
func (b *bench) imageDirs(gpid string) []string {
	var out []string
	for _, n := range b.st.Nodes {
		for _, kind := range []string{"out", "in"} {
			out = append(out, filepath.Join(agent.ImagesRoot(n.DataDir), kind+"-"+gpid))
		}
	}
	return out
}

// killJob kills an ssi job and waits until ssi ps -A no longer lists it.
func (b *bench) killJob(ctx context.Context, gpid string) error {
	if _, _, err := b.ssiCLI(ctx, cliTimeout, "kill", "-s", "KILL", gpid); err != nil {
		b.log.Warn("kill", "gpid", gpid, "err", err)
	}
	deadline := time.Now().Add(goneLimit)
	for {
		ps, err := b.ps(ctx)
		listed := false
		for _, p := range ps {
			if strconv.FormatUint(p.GPID, 10) == gpid {
				listed = true
			}
		}
		if err == nil && !listed {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gpid %s still listed %s after ssi kill -s KILL (last error: %v)", gpid, goneLimit, err)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// ---- environment ----

func memAvailableMiB() int64 { return meminfo("MemAvailable") >> 10 }

// meminfo returns a /proc/meminfo field in KiB.
func meminfo(key string) int64 {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(l, key+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// cpuTimes is the first line of /proc/stat: busy, steal and total jiffies.
type cpuTimes struct{ busy, steal, total uint64 }

func readCPU() cpuTimes {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	var t cpuTimes
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i >= 8 { // guest, guest_nice are already in user, nice
			break
		}
		t.total += n
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			t.steal += n
			t.busy += n
		default:
			t.busy += n
		}
	}
	return t
}

type noiseStart struct {
	cpu      cpuTimes
	load     string
	t        time.Time
	reported int64
}

type noise struct {
	loadStart, loadEnd string
	busy, steal        float64 // shares of all CPUs
	took               time.Duration
	reportedMiB        int64 // free memory handed back to the hypervisor meanwhile; -1: unknown
}

// reportedKiB is the free memory the guest kernel has reported to the
// hypervisor so far (virtio-balloon free page reporting), -1 if unknown. Memory
// handed back is slow to touch again: the hypervisor must fault it in.
func reportedKiB() int64 {
	raw, err := os.ReadFile("/sys/module/page_reporting/parameters/reported_kib")
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func sampleNoise() noiseStart {
	return noiseStart{cpu: readCPU(), load: benchkit.LoadAvg(), t: time.Now(), reported: reportedKiB()}
}

func (n noiseStart) since() noise {
	c := readCPU()
	out := noise{loadStart: n.load, loadEnd: benchkit.LoadAvg(), took: time.Since(n.t), reportedMiB: -1}
	if r := reportedKiB(); r >= 0 && n.reported >= 0 {
		out.reportedMiB = (r - n.reported) >> 10
	}
	if dt := c.total - n.cpu.total; dt > 0 {
		out.busy = float64(c.busy-n.cpu.busy) / float64(dt)
		out.steal = float64(c.steal-n.cpu.steal) / float64(dt)
	}
	return out
}

type machine struct {
	cpus          int
	cpuModel      string
	memTotalMiB   int64
	memAvailMiB   int64
	kernel        string
	criu          string
	goVersion     string
	python        string
	commit        string
	started       time.Time
	load          string
	pipeMaxSize   string // fs.pipe-max-size at start (post-copy raises it to 4 MiB)
	otherClusters []string
}

func machineInfo(name string) machine {
	m := machine{cpus: runtime.NumCPU(), memTotalMiB: meminfo("MemTotal") >> 10, memAvailMiB: memAvailableMiB(),
		goVersion: runtime.Version(), started: time.Now(), load: benchkit.LoadAvg()}
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(raw))
	}
	if raw, err := os.ReadFile("/proc/sys/fs/pipe-max-size"); err == nil {
		m.pipeMaxSize = strings.TrimSpace(string(raw))
	}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), name+"-") {
			m.otherClusters = append(m.otherClusters, e.Name())
		}
	}
	return m
}

func (b *bench) versions() {
	if out, err := exec.Command(b.o.criu, "--version").Output(); err == nil {
		b.rep.machine.criu = "criu " + strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "Version:"))
	}
	if out, err := exec.Command(b.o.python, "--version").CombinedOutput(); err == nil {
		b.rep.machine.python = strings.TrimSpace(string(out))
	}
}

// ---- report ----

type report struct {
	machine machine
	command string
	sizes   []*sizeResult
	notes   []string
}

// dist is the median, min and max of some seconds.
type dist struct {
	n             int
	med, min, max float64
}

func distOf(xs []float64) dist {
	if len(xs) == 0 {
		return dist{med: math.NaN(), min: math.NaN(), max: math.NaN()}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return dist{n: n, med: med, min: s[0], max: s[n-1]}
}

// of collects f over the samples of method m.
func (r *sizeResult) of(m method, f func(sample) float64) dist {
	var xs []float64
	for _, s := range r.samples {
		if s.method == m {
			xs = append(xs, f(s))
		}
	}
	return distOf(xs)
}

func secs(d dist) string {
	if d.n == 0 {
		return "–"
	}
	p := 2
	if d.med < 1 {
		p = 3
	}
	return fmt.Sprintf("%.*f (%.*f–%.*f)", p, d.med, p, d.min, p, d.max)
}

func med(d dist) string {
	if d.n == 0 {
		return "–"
	}
	if d.med < 1 {
		return fmt.Sprintf("%.3f", d.med)
	}
	return fmt.Sprintf("%.2f", d.med)
}

func ratio(a, b float64, target float64) string {
	if b <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	r := a / b
	v := "met"
	if r > target {
		v = "**not met**"
	}
	return fmt.Sprintf("%.2f× (%s)", r, v)
}

func sec(d time.Duration) float64 { return d.Seconds() }

func (r *report) print(w io.Writer, o options, runErr error) {
	m := r.machine
	fmt.Fprintf(w, "# Live migration vs raw CRIU\n\n")
	fmt.Fprintf(w, "- command: `%s`\n", strings.TrimSpace(r.command))
	fmt.Fprintf(w, "- started %s, commit %s, %s\n", m.started.UTC().Format(time.RFC3339), m.commit, m.goVersion)
	fmt.Fprintf(w, "- machine: %d CPUs (%s), %d MiB RAM (%d MiB available at start), kernel %s, %s, %s, fs.pipe-max-size %s at start\n",
		m.cpus, m.cpuModel, m.memTotalMiB, m.memAvailMiB, m.kernel, m.criu, m.python, m.pipeMaxSize)
	fmt.Fprintf(w, "- load average at start: %s; other local clusters' namespaces: %s\n", m.load, listOr(m.otherClusters, "none"))
	var ms []string
	for _, x := range (&bench{o: o}).methods() {
		ms = append(ms, string(x))
	}
	fmt.Fprintf(w, "- %d warm-up + %d measured rounds per size; each round runs %s once, order rotating; figures are median (min–max) in seconds; ratios are of medians\n\n",
		o.warmup, o.runs, strings.Join(ms, ", "))

	fmt.Fprintf(w, "## Results\n\n")
	fmt.Fprintf(w, "Baseline (raw CRIU, dump to tmpfs then restore from it, no network):\n\n")
	fmt.Fprintf(w, "| size | n | raw dump s | raw restore s | raw dump+restore s |\n|---|---|---|---|---|\n")
	for _, s := range r.sizes {
		if s.skipped != "" {
			fmt.Fprintf(w, "| %d MiB | 0 | %s | | |\n", s.size, s.skipped)
			continue
		}
		dump := s.of(mRaw, func(x sample) float64 { return sec(x.dump) })
		fmt.Fprintf(w, "| %d MiB | %d | %s | %s | %s |\n", s.size, dump.n, secs(dump),
			secs(s.of(mRaw, func(x sample) float64 { return sec(x.restore) })),
			secs(s.of(mRaw, func(x sample) float64 { return sec(x.dump + x.restore) })))
	}
	fmt.Fprintf(w, "\nMigrations (ratios: of the medians, against the raw medians of the same run):\n\n")
	fmt.Fprintf(w, "| size | method | n | frozen s | total s | of which pages s | frozen / raw dump (target ≤ 1.1) | total / raw dump+restore (target ≤ 1.3) |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.sizes {
		if s.skipped != "" {
			fmt.Fprintf(w, "| %d MiB | | 0 | %s | | | | |\n", s.size, s.skipped)
			continue
		}
		dump := s.of(mRaw, func(x sample) float64 { return sec(x.dump) })
		rst := s.of(mRaw, func(x sample) float64 { return sec(x.restore) })
		for _, m := range []method{mSSI, mSSIPost} {
			if !slices.Contains(o.methods, m) {
				continue
			}
			fr := s.of(m, func(x sample) float64 { return x.stats.FrozenMS / 1000 })
			tot := s.of(m, func(x sample) float64 { return x.stats.TotalMS / 1000 })
			pages := "–"
			if m == mSSIPost {
				pages = secs(s.of(m, func(x sample) float64 { return x.stats.PagesMS / 1000 }))
			}
			fmt.Fprintf(w, "| %d MiB | %s | %d | %s | %s | %s | %s | %s |\n", s.size, m, fr.n, secs(fr), secs(tot), pages,
				ratio(fr.med, dump.med, 1.1), ratio(tot.med, dump.med+rst.med, 1.3))
		}
	}

	fmt.Fprintf(w, "\n## Where ssi's time goes (medians, s)\n\n")
	fmt.Fprintf(w, "ssi: frozen = dump_ms + transfer_ms + restore_ms + commit and resume; total = frozen + claim and prepare before + cleanup after (kill of the stopped source copy). raw-keep: CRIU alone with a migration's memory footprint (original kept stopped, images copied once through ssi's stream codec in-process, restore while both exist), without network, HTTP or etcd.\n\n")
	fmt.Fprintf(w, "| size | images MiB raw / ssi | raw dump | raw-keep dump | ssi dump_ms | raw-keep stream encode only | raw-keep stream in-process | ssi transfer_ms (MB/s) | raw restore | raw-keep restore | ssi restore_ms | ssi frozen − dump − transfer − restore | raw-keep dump+stream+restore | ssi frozen / that | ssi total − frozen | `ssi migrate` CLI wall |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.sizes {
		if s.skipped != "" || s.of(mSSI, func(sample) float64 { return 0 }).n == 0 {
			continue
		}
		imgRaw := s.of(mRaw, func(x sample) float64 { return float64(x.image) / (1 << 20) })
		imgSSI := s.of(mSSI, func(x sample) float64 { return float64(x.image) / (1 << 20) })
		tr := s.of(mSSI, func(x sample) float64 { return x.stats.TransferMS / 1000 })
		rate := s.of(mSSI, func(x sample) float64 { return float64(x.stats.ImageBytes) / 1e6 / max(x.stats.TransferMS/1000, 1e-6) })
		keepSum := s.of(mRawKeep, func(x sample) float64 { return sec(x.dump + x.stream + x.restore) })
		frozen := s.of(mSSI, func(x sample) float64 { return x.stats.FrozenMS / 1000 })
		keepRatio := "–"
		if keepSum.n > 0 && frozen.n > 0 {
			keepRatio = fmt.Sprintf("%.2f×", frozen.med/keepSum.med)
		}
		fmt.Fprintf(w, "| %d MiB | %.0f / %.0f | %s | %s | %s | %s | %s | %s (%.0f) | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.size,
			imgRaw.med, imgSSI.med,
			med(s.of(mRaw, func(x sample) float64 { return sec(x.dump) })),
			med(s.of(mRawKeep, func(x sample) float64 { return sec(x.dump) })),
			med(s.of(mSSI, func(x sample) float64 { return x.stats.DumpMS / 1000 })),
			med(s.of(mRawKeep, func(x sample) float64 { return sec(x.encode) })),
			med(s.of(mRawKeep, func(x sample) float64 { return sec(x.stream) })),
			med(tr), rate.med,
			med(s.of(mRaw, func(x sample) float64 { return sec(x.restore) })),
			med(s.of(mRawKeep, func(x sample) float64 { return sec(x.restore) })),
			med(s.of(mSSI, func(x sample) float64 { return x.stats.RestoreMS / 1000 })),
			med(s.of(mSSI, func(x sample) float64 {
				return (x.stats.FrozenMS - x.stats.DumpMS - x.stats.TransferMS - x.stats.RestoreMS) / 1000
			})),
			med(keepSum), keepRatio,
			med(s.of(mSSI, func(x sample) float64 { return (x.stats.TotalMS - x.stats.FrozenMS) / 1000 })),
			med(s.of(mSSI, func(x sample) float64 { return sec(x.cli) })))
	}

	fmt.Fprintf(w, "\n## Where ssi-postcopy's time goes (medians, s)\n\n")
	fmt.Fprintf(w, "ssi-postcopy: frozen = dump_ms (everything but the memory; CRIU then serves the pages) + transfer_ms (those images) + restore_ms (with --lazy-pages: no memory restored) + commit and resume; pages = after the resume, until the target has all the memory (the source's page server exited); total = frozen + pages + claim and prepare before + the rest of cleanup. The pages rate is lazy_bytes / pages_ms.\n\n")
	fmt.Fprintf(w, "| size | images MiB | lazy MiB | dump_ms | transfer_ms | restore_ms | frozen − dump − transfer − restore | frozen | pages_ms (MB/s) | total − frozen − pages | total | `ssi migrate` CLI wall |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.sizes {
		if s.skipped != "" || s.of(mSSIPost, func(sample) float64 { return 0 }).n == 0 {
			continue
		}
		pc := func(f func(api.MigrateStats) float64) dist {
			return s.of(mSSIPost, func(x sample) float64 { return f(x.stats) })
		}
		rate := pc(func(x api.MigrateStats) float64 { return float64(x.LazyBytes) / 1e6 / max(x.PagesMS/1000, 1e-6) })
		fmt.Fprintf(w, "| %d MiB | %.1f | %.0f | %s | %s | %s | %s | %s | %s (%.0f) | %s | %s | %s |\n", s.size,
			pc(func(x api.MigrateStats) float64 { return float64(x.ImageBytes) / (1 << 20) }).med,
			pc(func(x api.MigrateStats) float64 { return float64(x.LazyBytes) / (1 << 20) }).med,
			med(pc(func(x api.MigrateStats) float64 { return x.DumpMS / 1000 })),
			med(pc(func(x api.MigrateStats) float64 { return x.TransferMS / 1000 })),
			med(pc(func(x api.MigrateStats) float64 { return x.RestoreMS / 1000 })),
			med(pc(func(x api.MigrateStats) float64 { return (x.FrozenMS - x.DumpMS - x.TransferMS - x.RestoreMS) / 1000 })),
			med(pc(func(x api.MigrateStats) float64 { return x.FrozenMS / 1000 })),
			med(pc(func(x api.MigrateStats) float64 { return x.PagesMS / 1000 })), rate.med,
			med(pc(func(x api.MigrateStats) float64 { return (x.TotalMS - x.FrozenMS - x.PagesMS) / 1000 })),
			med(pc(func(x api.MigrateStats) float64 { return x.TotalMS / 1000 })),
			med(s.of(mSSIPost, func(x sample) float64 { return sec(x.cli) })))
	}
	fmt.Fprintf(w, "\n## CRIU's own figures for the raw runs (--display-stats, medians, s) and memory first touch\n\n")
	fmt.Fprintf(w, "| size | method | dump wall | CRIU frozen | CRIU memory write | restore wall | CRIU restore | job start → ready (touching N MiB) |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.sizes {
		for _, mm := range []method{mRaw, mRawKeep, mSSI, mSSIPost} {
			if s.of(mm, func(x sample) float64 { return 0 }).n == 0 {
				continue
			}
			if mm.isSSI() {
				fmt.Fprintf(w, "| %d MiB | %s | | | | | | %s |\n", s.size, mm, med(s.of(mm, func(x sample) float64 { return sec(x.ready) })))
				continue
			}
			fmt.Fprintf(w, "| %d MiB | %s | %s | %s | %s | %s | %s | %s |\n", s.size, mm,
				med(s.of(mm, func(x sample) float64 { return sec(x.dump) })),
				med(s.of(mm, func(x sample) float64 { return sec(x.criuFrozen) })),
				med(s.of(mm, func(x sample) float64 { return sec(x.criuMemWrite) })),
				med(s.of(mm, func(x sample) float64 { return sec(x.restore) })),
				med(s.of(mm, func(x sample) float64 { return sec(x.criuRestore) })),
				med(s.of(mm, func(x sample) float64 { return sec(x.ready) })))
		}
	}

	fmt.Fprintf(w, "\n## Noise\n\n| size | took | load avg start → end | CPU busy (all CPUs) | CPU steal | free memory reported to the hypervisor meanwhile |\n|---|---|---|---|---|---|\n")
	for _, s := range r.sizes {
		if s.skipped != "" {
			continue
		}
		rep := "unknown"
		if s.noise.reportedMiB >= 0 {
			rep = fmt.Sprintf("%d MiB", s.noise.reportedMiB)
		}
		fmt.Fprintf(w, "| %d MiB | %s | %s → %s | %.0f%% | %.1f%% | %s |\n", s.size, s.noise.took.Round(time.Second), s.noise.loadStart, s.noise.loadEnd, 100*s.noise.busy, 100*s.noise.steal, rep)
	}

	fmt.Fprintf(w, "\n## Every run (s)\n\n| size | round | method | dump | stream in-process | transfer | restore | frozen | pages | total | image MiB | lazy MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.sizes {
		all := append(slices.Clone(s.warm), s.samples...)
		for _, x := range all {
			round := strconv.Itoa(x.round)
			if x.round <= 0 {
				round = "warm-up"
			}
			if x.method.isSSI() {
				pages, lazy := "", ""
				if x.stats.PostCopy {
					pages, lazy = fmt.Sprintf("%.3f", x.stats.PagesMS/1000), strconv.FormatInt(x.stats.LazyBytes>>20, 10)
				}
				fmt.Fprintf(w, "| %d MiB | %s | %s | %.3f | | %.3f | %.3f | %.3f | %s | %.3f | %.1f | %s |\n", s.size, round, x.method,
					x.stats.DumpMS/1000, x.stats.TransferMS/1000, x.stats.RestoreMS/1000, x.stats.FrozenMS/1000, pages, x.stats.TotalMS/1000, float64(x.image)/(1<<20), lazy)
				continue
			}
			c := ""
			if x.method == mRawKeep {
				c = fmt.Sprintf("%.3f", x.stream.Seconds())
			}
			fmt.Fprintf(w, "| %d MiB | %s | %s | %.3f | %s | | %.3f | | | %.3f | %d | |\n", s.size, round, x.method,
				x.dump.Seconds(), c, x.restore.Seconds(), (x.dump + x.stream + x.restore).Seconds(), x.image>>20)
		}
	}

	var notes []string
	for _, s := range r.sizes {
		for _, n := range s.notes {
			notes = append(notes, fmt.Sprintf("%d MiB: %s", s.size, n))
		}
	}
	notes = append(notes, r.notes...)
	if runErr != nil {
		notes = append(notes, fmt.Sprintf("the benchmark stopped early: %v", runErr))
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n## Notes\n\n")
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

func listOr(xs []string, none string) string {
	if len(xs) == 0 {
		return none
	}
	return strings.Join(xs, ", ")
}

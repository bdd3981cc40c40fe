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
// timeout, the whole run by -timeout. -json FILE also writes the figures as
// JSON (package benchkit's Result: every value, medians and the ratios).
//
// Files: main.go (flags), cluster.go (the cluster, its teardown, /dev/shm),
// measure.go (the rounds of one size), raw.go (the raw CRIU peer), ssi.go
// (moves through `ssi migrate`), noise.go (what else the machine did),
// report.go (markdown and JSON).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/hack/benchkit"
)

type options struct {
	sizes        []int
	runs, warmup int
	rawKeep      bool
	methods      []method
	settle       time.Duration
	cluster      benchkit.ClusterFlags
	criu, python string
	headroomMiB  int64
	timeout      time.Duration
	json         string
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
	o.cluster.Register(flag.CommandLine, "smig", "10.214.0.0/24")
	flag.StringVar(&o.criu, "criu", "/usr/local/sbin/criu", "CRIU binary for the raw baseline (the agents use their own default)")
	flag.StringVar(&o.python, "python", "python3", "Python interpreter of the job")
	flag.Int64Var(&o.headroomMiB, "headroom-mib", 2048, "MemAvailable to keep on top of 4 x size")
	flag.DurationVar(&o.timeout, "timeout", 90*time.Minute, "bound on the whole benchmark (teardown comes after it)")
	flag.StringVar(&o.json, "json", "", "also write the results as JSON to this file")
	flag.Parse()
	if err := o.cluster.Check("smig"); err != nil {
		return o, err
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
	os.Exit(benchkit.Main(benchkit.Config{Program: "benchmigrate", Timeout: o.timeout, JSON: o.json}, newBench(o)))
}

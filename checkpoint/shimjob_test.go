package checkpoint_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/checkpoint"
	"github.com/ssi-cluster/ssi/internal/testenv"
	"github.com/ssi-cluster/ssi/isolate"
	"github.com/ssi-cluster/ssi/joblog"
	"github.com/ssi-cluster/ssi/shim"
)

// counterScript prints 1, 2, 3, ... every 100 ms.
const counterScript = `i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done`

// TestShimJobCheckpointRestore starts a job exactly as the agent does (ssi-shim
// shim JOBDIR, init in its own PID/IPC/UTS namespaces and cgroup), dumps it with
// CRIU, kills the original, restores it with its stdout/stderr re-plumbed to new
// pipes, and checks that the counter it prints carries on where it stopped.
func TestShimJobCheckpointRestore(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: CRIU dumps and restores only as root, and the job needs a cgroup")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	info, err := checkpoint.Probe(ctx, "")
	if err != nil {
		testenv.Skip(t, "CRIU not usable: %v", err)
	}
	t.Logf("CRIU %s at %s", checkpoint.FormatVersion(info.Version), info.Path)

	tmp := t.TempDir() // removed last: the binary must outlive every process using it
	bin := filepath.Join(tmp, "ssi-shim")
	build := exec.CommandContext(ctx, goTool(), "build", "-o", bin, "github.com/ssi-cluster/ssi/cmd/ssi-shim")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ssi-shim: %v\n%s", err, out)
	}

	// The job's cgroup, as the agent creates it; and the one a target node would
	// create for the restored job.
	cgParent := fmt.Sprintf("/ssi-criutest/%d", os.Getpid())
	cgPath, cgRestore := cgParent+"/1", cgParent+"/2"
	t.Cleanup(func() { cleanupCgroups(t, cgPath, cgRestore, cgParent) })
	if _, err := isolate.CreateCgroup(cgPath, isolate.Limits{}); err != nil {
		t.Fatal(err)
	}

	jobDir := filepath.Join(tmp, "job")
	imgDir := filepath.Join(tmp, "images")
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range []string{checkpoint.DefaultDumpLog, checkpoint.DefaultRestoreLog} {
				if b, err := os.ReadFile(filepath.Join(imgDir, l)); err == nil {
					t.Logf("tail of %s:\n%s", l, strings.Join(checkpoint.LastLines(b, 40), "\n"))
				}
			}
		}
	})
	for _, d := range []string{jobDir, imgDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	spec := shim.Spec{
		GPID:    1,
		Node:    "criutest",
		Argv:    []string{"sh", "-c", counterScript},
		Env:     []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Workdir: "/",
		Cgroup:  cgPath,
	}
	if err := shim.WriteJSON(jobDir, shim.SpecFile, spec); err != nil {
		t.Fatal(err)
	}
	shimCmd, st, err := shim.Launch(ctx, bin, jobDir, shim.ModeStart)
	if shimCmd == nil {
		t.Fatalf("launch: %v", err)
	}
	shimDone := make(chan error, 1)
	go func() { shimDone <- shimCmd.Wait() }()
	t.Cleanup(func() { stopShim(t, st, shimDone) })
	if err != nil {
		t.Fatalf("launch: %v\nshim.log:\n%s", err, readFile(filepath.Join(jobDir, shim.ShimLog)))
	}
	waitShim := func() error {
		select {
		case err := <-shimDone:
			shimDone <- err // for the cleanup
			return err
		case <-time.After(15 * time.Second):
			return errors.New("shim still running 15s after its job was killed")
		}
	}
	runJob(ctx, t, st, jobDir, imgDir, cgPath, cgRestore, waitShim)
}

// runJob is the body of the test once the shim runs the job; waitShim waits for
// the shim to exit.
func runJob(ctx context.Context, t *testing.T, st shim.State, jobDir, imgDir, cgPath, cgRestore string, waitShim func() error) {
	initPID := st.Init.PID
	t.Logf("shim %d, init %d, job %d", st.Shim.PID, initPID, st.MainPID)

	// Let the counter run a little, and make sure it does.
	deadline := time.Now().Add(10 * time.Second)
	for lastCount(t, jobDir) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("job printed nothing in 10s; log %q, shim.log:\n%s", readFile(filepath.Join(jobDir, shim.LogFile)), readFile(filepath.Join(jobDir, shim.ShimLog)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The shim promises a tree with only fds 0-2 open (CRIU dumps whatever else is
	// there and needs it at restore, and a file of the job's own cgroup would
	// tie the restore to that cgroup): hold it to that.
	for _, pid := range []int{initPID, st.MainPID} {
		fds := openFDs(t, pid)
		if len(fds) != 3 {
			t.Errorf("pid %d has fds beyond 0-2, which CRIU must dump and restore: %s", pid, strings.Join(fds, ", "))
		}
		t.Logf("fds of pid %d: %s", pid, strings.Join(fds, ", "))
	}
	outKey, err := checkpoint.FileKey(initPID, 1)
	if err != nil {
		t.Fatal(err)
	}
	errKey, err := checkpoint.FileKey(initPID, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(outKey, "pipe:[") || !strings.HasPrefix(errKey, "pipe:[") {
		t.Fatalf("init's stdout/stderr are %s and %s, want pipes", outKey, errKey)
	}

	// Dump, leaving the source frozen (as a migration does), then kill it.
	t0 := time.Now()
	if err := checkpoint.Dump(ctx, checkpoint.DumpOpts{PID: initPID, ImagesDir: imgDir, LeaveStopped: true, Flags: checkpoint.Flags{NodeMounts: true}}); err != nil {
		t.Fatalf("dump: %v", err)
	}
	dumpTime := time.Since(t0)
	t.Logf("dump took %v (images: %s)", dumpTime, dirSize(imgDir))
	// --leave-stopped detaches with SIGSTOP: init stops shortly after.
	for stopBy := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s, err := shim.ProcStat(initPID)
		if err == nil && s == "T" {
			break
		}
		if time.Now().After(stopBy) {
			t.Errorf("init 2s after dump --leave-stopped: state %q (err %v), want T", s, err)
			break
		}
	}
	if err := unix.Kill(initPID, unix.SIGKILL); err != nil {
		t.Fatalf("kill dumped init %d: %v", initPID, err)
	}
	if err := waitShim(); err != nil {
		t.Fatalf("shim: %v", err)
	}
	var exit shim.Exit
	if err := shim.ReadJSON(jobDir, shim.ExitFile, &exit); err != nil {
		t.Fatalf("shim wrote no exit status: %v", err)
	}
	if exit.Code != 128+int(unix.SIGKILL) {
		t.Errorf("original job exit code %d, want %d", exit.Code, 128+int(unix.SIGKILL))
	}
	last := lastCount(t, jobDir)
	t.Logf("original printed up to %d; exit %+v", last, exit)

	// Restore into the cgroup a target agent would have created, with the job's
	// output re-plumbed to pipes this process reads.
	if _, err := isolate.CreateCgroup(cgRestore, isolate.Limits{}); err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer errR.Close()
	t0 = time.Now()
	pid, err := checkpoint.Restore(ctx, checkpoint.RestoreOpts{
		ImagesDir:  imgDir,
		Inherit:    []checkpoint.InheritFile{{Key: outKey, File: outW}, {Key: errKey, File: errW}},
		CgroupRoot: cgRestore,
		Flags:      checkpoint.Flags{NodeMounts: true},
	})
	restoreTime := time.Since(t0)
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	t.Logf("restore took %v; restored init is pid %d", restoreTime, pid)
	t.Logf("CRIU timings: dump %v, restore %v", dumpTime, restoreTime)

	// The restored root is our child: reap it, and kill the tree at the end.
	reaped := make(chan unix.WaitStatus, 1)
	go func() {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		reaped <- ws
	}()
	stderrDone := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(errR)
		stderrDone <- string(b)
	}()
	defer func() {
		_ = unix.Kill(pid, unix.SIGKILL)
		select {
		case ws := <-reaped:
			t.Logf("restored init ended: %v", describe(ws))
		case <-time.After(10 * time.Second):
			t.Errorf("restored init %d not reaped 10s after SIGKILL", pid)
		}
		select {
		case s := <-stderrDone:
			if s != "" {
				t.Logf("restored job's stderr: %q", s)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("restored job's stderr still open 5s after it was killed")
		}
	}()

	// The restored tree has its own PID namespace, and is in the new cgroup.
	nspid := statusField(t, pid, "NSpid")
	if len(nspid) != 2 || nspid[1] != "1" {
		t.Errorf("restored init NSpid %v, want [%d 1]", nspid, pid)
	}
	if a, b := nsLink(t, pid), nsLink(t, os.Getpid()); a == b {
		t.Errorf("restored init shares our PID namespace %s", a)
	}
	if cg := cgroupOf(t, pid, "memory"); cg != cgRestore {
		t.Errorf("restored init in memory cgroup %q, want %q", cg, cgRestore)
	}

	// The counter continues where it stopped: last+1, last+2, ... for over a second.
	lines := make(chan string, 1024) // never blocks the reader: it ends at EOF
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var got []int
	watch := time.After(1500 * time.Millisecond)
collect:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("restored job's stdout closed after %v; restored init: %s", got, describeExit(reaped))
			}
			n, err := strconv.Atoi(l)
			if err != nil {
				t.Fatalf("restored job printed %q", l)
			}
			got = append(got, n)
		case <-watch:
			break collect
		}
	}
	if len(got) < 5 {
		t.Fatalf("restored job printed only %v in 1.5s", got)
	}
	t.Logf("restored job printed %d..%d (%d lines) in the first 1.5s", got[0], got[len(got)-1], len(got))
	if got[0] != last+1 {
		t.Errorf("restored counter starts at %d, want %d (the original stopped at %d)", got[0], last+1, last)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Errorf("restored counter not consecutive: %v", got)
			break
		}
	}
	if s, err := shim.ProcStat(pid); err != nil || s == "Z" {
		t.Errorf("restored init not running after 1.5s: state %q, err %v", s, err)
	}
}

// stopShim makes sure the original job and its shim are gone.
func stopShim(t *testing.T, st shim.State, done chan error) {
	if st.Init.Alive() {
		_ = unix.Kill(st.Init.PID, unix.SIGKILL)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Errorf("shim %d still running at cleanup", st.Shim.PID)
	}
}

// cleanupCgroups removes the test's cgroups, and /ssi-criutest when no other run
// of this test uses it.
func cleanupCgroups(t *testing.T, paths ...string) {
	for _, p := range paths {
		destroyCgroup(t, p)
	}
	top, err := isolate.OpenCgroup("/ssi-criutest")
	if err != nil {
		t.Error(err)
		return
	}
	if pids, err := top.Pids(); err == nil && len(pids) > 0 {
		t.Logf("leaving /ssi-criutest: in use by %v", pids)
		return
	}
	if err := top.Destroy(); err != nil {
		t.Logf("leaving /ssi-criutest: %v", err) // another run's cgroups below it
	}
}

func destroyCgroup(t *testing.T, path string) {
	c, err := isolate.OpenCgroup(path)
	if err == nil {
		err = c.Destroy()
	}
	if err != nil {
		t.Errorf("remove cgroup %s: %v", path, err)
	}
}

// lastCount returns the last number the job printed to its log (0 if none).
func lastCount(t *testing.T, jobDir string) int {
	f, err := os.Open(filepath.Join(jobDir, shim.LogFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	r := joblog.NewReader(f)
	for {
		rec, err := r.Next()
		if err != nil {
			break // io.EOF, or a record still being written
		}
		if rec.Kind == joblog.Stdout {
			out.Write(rec.Data)
		}
	}
	fields := strings.Fields(out.String())
	if len(fields) == 0 {
		return 0
	}
	// Only whole lines count: a trailing number without its newline may grow.
	if !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		fields = fields[:len(fields)-1]
	}
	prev := 0
	for _, f := range fields {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("job printed %q", f)
		}
		if n != prev+1 {
			t.Fatalf("original job's counter went from %d to %d", prev, n)
		}
		prev = n
	}
	return prev
}

func openFDs(t *testing.T, pid int) []string {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		fds = append(fds, e.Name()+"->"+target)
	}
	return fds
}

func statusField(t *testing.T, pid int, name string) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return nil
}

func nsLink(t *testing.T, pid int) string {
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// cgroupOf returns pid's cgroup in the v1 hierarchy with the controller ctrl, or
// its v2 cgroup on a unified host.
func cgroupOf(t *testing.T, pid int, ctrl string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	v2 := ""
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "" {
			v2 = f[2]
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == ctrl {
				return f[2]
			}
		}
	}
	return v2
}

func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Signaled():
		return fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	case ws.Exited():
		return "exit " + strconv.Itoa(ws.ExitStatus())
	}
	return fmt.Sprintf("status %#x", uint32(ws))
}

func describeExit(reaped chan unix.WaitStatus) string {
	select {
	case ws := <-reaped:
		reaped <- ws
		return describe(ws)
	case <-time.After(time.Second):
		return "still running"
	}
}

func dirSize(dir string) string {
	var n int64
	var files int
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
				files++
			}
		}
		return nil
	})
	return fmt.Sprintf("%d files, %d KiB", files, n>>10)
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// goTool returns the go command; `go test` puts its GOROOT/bin first in PATH.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

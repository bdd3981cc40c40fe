package shim

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"
)

// TestJSONFiles: the job directory's files round-trip, are written whole
// (no temporary file left, mode 0600: they hold the job's environment), and a
// missing or damaged file is an error a caller can tell apart.
func TestJSONFiles(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{GPID: 42, Node: "node2", Argv: []string{"python3", "-c", "print(1)"}, Env: []string{"PATH=/usr/bin", "SECRET=x"},
		Workdir: "/tmp", UID: 1000, GID: 1000, Groups: []int{27, 100}, Cgroup: "/ssi/node2/42"}
	if err := WriteJSON(dir, SpecFile, spec); err != nil {
		t.Fatal(err)
	}
	var got Spec
	if err := ReadJSON(dir, SpecFile, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, spec) {
		t.Fatalf("read back %+v, wrote %+v", got, spec)
	}
	// Rewritten whole: the second version replaces the first.
	spec.Node = "node3"
	if err := WriteJSON(dir, SpecFile, spec); err != nil {
		t.Fatal(err)
	}
	if err := ReadJSON(dir, SpecFile, &got); err != nil || got.Node != "node3" {
		t.Fatalf("after a rewrite: %+v, %v", got, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != SpecFile {
		t.Fatalf("job dir holds %v, want only %s", entries, SpecFile)
	}
	if fi, err := os.Stat(filepath.Join(dir, SpecFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v; want mode 0600", SpecFile, fi.Mode(), err)
	}

	var st State
	if err := ReadJSON(dir, StateFile, &st); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing %s: %v, want os.ErrNotExist", StateFile, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ExitFile), []byte(`{"code": "three"`), 0o600); err != nil {
		t.Fatal(err)
	}
	var ex Exit
	if err := ReadJSON(dir, ExitFile, &ex); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Fatalf("damaged %s: %v, want a decode error", ExitFile, err)
	}
	if err := WriteJSON(filepath.Join(dir, "absent"), ExitFile, Exit{Code: 1}); err == nil {
		t.Fatal("WriteJSON into a missing directory succeeded")
	}
}

// TestProcIDAlive: a ProcID stays alive only while it names the same, running
// process: not after it exits (zombie or reaped), not for a PID reused by
// another process (another start time).
func TestProcIDAlive(t *testing.T) {
	self, err := Identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.PID != os.Getpid() || self.Start == 0 || !self.Alive() {
		t.Fatalf("this process: %+v, alive %v", self, self.Alive())
	}
	if again, _ := Identify(os.Getpid()); again != self {
		t.Fatalf("identified twice: %+v, then %+v", self, again)
	}
	for _, id := range []ProcID{{}, {PID: -1}, {PID: self.PID, Start: self.Start + 1}} {
		if id.Alive() {
			t.Errorf("%+v is alive; want not (no PID, or the PID's start time differs)", id)
		}
	}

	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	id, err := Identify(child.Process.Pid)
	if err != nil || !id.Alive() {
		t.Fatalf("running child: %+v, %v, alive %v", id, err, id.Alive())
	}
	// Stopped is still alive, and ProcStat says T.
	if err := child.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitState(t, child.Process.Pid, "T")
	if !id.Alive() {
		t.Fatal("stopped child not alive")
	}
	// Killed but not reaped: a zombie, not alive.
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitState(t, child.Process.Pid, "Z")
	if id.Alive() {
		t.Fatal("zombie child alive")
	}
	_ = child.Wait()
	if id.Alive() {
		t.Fatal("reaped child alive")
	}
	if _, err := ProcStat(child.Process.Pid); err == nil {
		t.Fatal("ProcStat of a reaped child succeeded")
	}
}

// waitState waits up to 5 s for pid's ProcStat to be want.
func waitState(t *testing.T, pid int, want string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var err error
		if got, err = ProcStat(pid); err == nil && got == want {
			return
		}
	}
	t.Fatalf("pid %d in state %q, want %q", pid, got, want)
}

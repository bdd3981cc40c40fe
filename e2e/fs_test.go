package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/internal/testenv"
)

// mounted reports whether dir is a mount point (in /proc/mounts).
func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/mounts")
	return bytes.Contains(b, []byte(" "+dir+" "))
}

// sh runs a shell command line (the tools a user would use) and returns its
// output; it fails the test on a non-zero exit.
func sh(t *testing.T, line string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sh", "-c", line).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", line, err, out)
	}
	return string(out)
}

func TestFS(t *testing.T) {
	c := need(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Skip(t, "needs /dev/fuse (modprobe fuse): %v", err)
	}
	// ssi fs mounts with mount(2) as root; fusermount3 is for unmounting by hand.
	needTool(t, "fusermount3", "fuse3")
	mark := fmt.Sprintf("fsmark%d", time.Now().UnixNano()%1e6)
	g := c.detach(t, "--node", "node2", "--", "sh", "-c", ": "+mark+"; i=0; while :; do i=$((i+1)); echo line$i; echo err$i >&2; sleep 0.2; done")
	defer c.kill(t, g)
	gs := fmt.Sprint(g)

	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	fs := c.cmd(context.Background(), "fs", mnt)
	fs.Stderr = &stderr
	if err := fs.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- fs.Wait() }()
	defer func() {
		if mounted(mnt) { // the test failed before the unmount below
			_ = fs.Process.Signal(syscall.SIGTERM)
			select { // (not if the test already received its exit)
			case <-exited:
			case <-time.After(15 * time.Second):
			}
			_ = exec.Command("fusermount3", "-u", mnt).Run()
		}
	}()
	eventually(t, 20*time.Second, "the tree mounted", func() error {
		if !mounted(mnt) {
			return fmt.Errorf("not mounted; ssi fs said: %s", stderr.String())
		}
		return nil
	})

	if ls := sh(t, "ls "+mnt); ls != "nodes\nproc\ntopics\n" {
		t.Fatalf("ls /: %q", ls)
	}
	if ls := sh(t, "ls "+mnt+"/nodes"); ls != "node1\nnode2\nnode3\n" {
		t.Fatalf("ls nodes: %q", ls)
	}
	if ls := sh(t, "ls "+mnt+"/proc"); !strings.Contains("\n"+ls, "\n"+gs+"\n") {
		t.Fatalf("ls proc: %q, want gpid %s", ls, gs)
	}
	if ls := sh(t, "ls "+mnt+"/proc/"+gs); ls != "cmdline\nnode\nstatus\nstderr\nstdout\n" {
		t.Fatalf("ls proc/%s: %q", gs, ls)
	}
	if node := sh(t, "cat "+mnt+"/proc/"+gs+"/node"); node != "node2\n" {
		t.Fatalf("cat node: %q", node)
	}
	if st := sh(t, "grep -E '^(State|Node):' "+mnt+"/proc/"+gs+"/status"); st != "State:\trunning\nNode:\tnode2\n" {
		t.Fatalf("grep status: %q", st)
	}
	if l := sh(t, "grep -l "+mark+" "+mnt+"/proc/*/cmdline"); l != mnt+"/proc/"+gs+"/cmdline\n" {
		t.Fatalf("grep -l in cmdlines: %q", l)
	}
	if jobs := sh(t, "cat "+mnt+"/nodes/node2/jobs"); !strings.Contains(jobs, gs+"\troot\trunning\tsh -c : "+mark) {
		t.Fatalf("nodes/node2/jobs: %q", jobs)
	}
	if st := sh(t, "grep -c Ready:.true "+mnt+"/nodes/*/status"); strings.Count(st, ":1\n") != 3 {
		t.Fatalf("Ready nodes: %q", st)
	}
	eventually(t, 10*time.Second, "stderr read", func() error {
		if e := sh(t, "head -2 "+mnt+"/proc/"+gs+"/stderr"); e != "err1\nerr2\n" {
			return fmt.Errorf("head -2 stderr: %q", e)
		}
		return nil
	})
	// tail -f follows stdout as it grows: a job writing 5 lines a second
	// shows new ones within 4 s.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var tailOut bytes.Buffer
	tail := exec.CommandContext(ctx, "tail", "-n", "1", "-f", mnt+"/proc/"+gs+"/stdout")
	tail.Stdout = &tailOut
	_ = tail.Run() // killed by the timeout
	lines := strings.Fields(tailOut.String())
	if len(lines) < 5 {
		t.Fatalf("tail -f printed %q in 4 s, want the file to grow", tailOut.String())
	}
	for i := 1; i < len(lines); i++ {
		var a, b int
		fmt.Sscanf(lines[i-1], "line%d", &a)
		fmt.Sscanf(lines[i], "line%d", &b)
		if b != a+1 {
			t.Fatalf("tail -f: %q follows %q", lines[i], lines[i-1])
		}
	}
	if err := os.WriteFile(mnt+"/proc/"+gs+"/node", []byte("x"), 0o644); err == nil {
		t.Fatal("wrote a file of the read-only tree")
	}

	// topics/: the user's message subjects as files. tail -f gets what is
	// published from its open on, through the tree (echo x > ...) or
	// ssi pub; ssi sub gets what the tree publishes.
	subj := fmt.Sprintf("fsnews%d", time.Now().UnixNano()%1e6)
	tctx, tcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer tcancel()
	var follow bytes.Buffer
	tf := exec.CommandContext(tctx, "tail", "-n", "+1", "-f", mnt+"/topics/"+subj)
	tf.Stdout = &follow
	if err := tf.Start(); err != nil {
		t.Fatal(err)
	}
	stopTail := sync.OnceFunc(func() { _ = tf.Process.Kill(); _ = tf.Wait() })
	defer stopTail()
	subbed := make(chan result, 1)
	go func() { subbed <- runCmd(t, c.cmd(tctx, "sub", subj, "-n", "1")) }()
	time.Sleep(time.Second) // both subscribed
	sh(t, "echo hello from a file > "+mnt+"/topics/"+subj)
	c.ok(t, "pub", subj, "hello from ssi pub")
	eventually(t, 10*time.Second, "tail -f of topics/"+subj, func() error {
		if got := follow.String(); got != "hello from a file\nhello from ssi pub\n" {
			return fmt.Errorf("tail -f printed %q", got)
		}
		return nil
	})
	if r := <-subbed; r.code != 0 || strings.TrimSpace(r.stdout) != "hello from a file" {
		t.Fatalf("ssi sub of what the tree published: %v", r)
	}
	if ls := sh(t, "ls "+mnt+"/topics"); !strings.Contains(ls, subj+"\n") {
		t.Fatalf("ls topics: %q, want %s", ls, subj)
	}
	stopTail() // an open file keeps the tree from being unmounted
	// SIGINT unmounts and exits 0.
	if err := fs.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("ssi fs after SIGINT: %v: %s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("ssi fs still running 15 s after SIGINT")
	}
	if mounted(mnt) {
		t.Fatal("still mounted after ssi fs exited")
	}
}

func TestCompletion(t *testing.T) {
	c := need(t)
	g := c.detach(t, "--node", "node1", "--", "sleep", "600")
	defer c.kill(t, g)
	out := c.ok(t, "__complete", "migrate", "")
	if !strings.Contains(out, fmt.Sprintf("%d\tnode1: sleep 600\n", g)) {
		t.Fatalf("gpids completed: %q", out)
	}
	out = c.ok(t, "__complete", "migrate", fmt.Sprint(g), "")
	for _, n := range []string{"node1\tReady", "node2\tReady", "node3\tReady"} {
		if !strings.Contains(out, n) {
			t.Fatalf("nodes completed: %q, want %q", out, n)
		}
	}
	if out := c.ok(t, "__complete", "run", "--node", ""); !strings.Contains(out, "node2\tReady") {
		t.Fatalf("--node completed: %q", out)
	}
	if out := c.ok(t, "__complete", "kill", fmt.Sprint(g), ""); strings.Contains(out, fmt.Sprintf("%d\t", g)) {
		t.Fatalf("kill completes a gpid already given: %q", out)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out := c.ok(t, "completion", shell); len(out) < 1000 {
			t.Fatalf("completion %s: %q", shell, out)
		}
	}
}

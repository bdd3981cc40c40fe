package shim

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/ssi-cluster/ssi/isolate"
)

// RunCgexec is `ssi-shim cgexec CGROUP -- CMD ARGS...`: it moves itself into
// the job cgroup CGROUP (every hierarchy) and execs CMD there, keeping its
// file descriptors, so that CMD and all it forks are born in the job's cgroup.
// The restore runs CRIU this way (criuRestore). It returns only on failure,
// with the exit code to use.
func RunCgexec(args []string) int {
	if len(args) < 3 || args[1] != "--" {
		fmt.Fprintln(os.Stderr, "ssi-shim cgexec: internal command, started by ssi-shim restore: ssi-shim cgexec CGROUP -- CMD [ARGS...]")
		return 2
	}
	cg, err := isolate.OpenCgroup(args[0])
	if err == nil {
		err = cg.Add(os.Getpid())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ssi-shim cgexec: %v\n", err)
		return 1
	}
	path, err := exec.LookPath(args[2])
	if err != nil {
		fmt.Fprintf(os.Stderr, "ssi-shim cgexec: %v\n", err)
		return 127
	}
	err = syscall.Exec(path, args[2:], os.Environ())
	fmt.Fprintf(os.Stderr, "ssi-shim cgexec: exec %s: %v\n", path, err)
	return 126
}

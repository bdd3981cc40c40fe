// Command ssi-shim is the per-job half of ssi, kept apart from the ssi binary so
// that the two processes every job costs stay small: it links no etcd, gRPC or
// CLI code, whose package initialisers alone would cost ~20 MiB of RSS per process.
//
//	ssi-shim shim JOBDIR                       the job's supervisor (see package shim)
//	ssi-shim restore JOBDIR                    supervisor of a job restored from images
//	ssi-shim init --node N --gpid G -- CMD...  the job's PID 1
//	ssi-shim cgexec CGROUP -- CMD...           CMD (a restore's CRIU) in a job's cgroup
//
// The agent starts it; it is not meant to be run by hand.
//
// The go:debug lines stop the runtime from reading (and keeping open) the cgroup
// CPU limit files to size GOMAXPROCS: init runs inside the job, so those fds would
// be checkpointed with it and name a cgroup that does not exist on the target.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/ssi-cluster/ssi/shim"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "ssi-shim: internal command of ssi, started by the agent: ssi-shim shim JOBDIR | ssi-shim init ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "init":
		os.Exit(shim.RunInit(os.Args[2:]))
	case "cgexec":
		os.Exit(shim.RunCgexec(os.Args[2:]))
	case "shim":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "ssi-shim shim: want exactly one argument, the job directory")
			os.Exit(2)
		}
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(os.Stderr, "ssi-shim: find own binary: %v\n", err)
			os.Exit(1)
		}
		os.Exit(shim.RunShim(os.Args[2], exe, slog.New(slog.NewTextHandler(os.Stderr, nil))))
	case "restore":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "ssi-shim restore: want exactly one argument, the job directory")
			os.Exit(2)
		}
		os.Exit(shim.RunRestore(os.Args[2], slog.New(slog.NewTextHandler(os.Stderr, nil))))
	}
	fmt.Fprintf(os.Stderr, "ssi-shim: unknown command %q\n", os.Args[1])
	os.Exit(2)
}

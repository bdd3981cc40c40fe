// Command ssi is the single-system-image CLI and node agent.
//
// Exit codes: 0 success, 1 failure, 2 usage error; `ssi run` (attached) and
// `ssi wait` exit with the job's status (128+N when it was killed by signal N),
// and 125 when ssi lost track of the job. See `ssi --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

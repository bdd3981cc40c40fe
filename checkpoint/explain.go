package checkpoint

import (
	"errors"
	"strings"
)

// Explain says in a user's words what in a job stopped CRIU from dumping or
// restoring it, and what to do; "" when err is not a failure it knows. It
// reads the Error lines of a *CRIUError, else the error's text (a restore
// failure quoted by the shim). Each rule is a failure measured on these
// machines.
func Explain(err error) string {
	if err == nil {
		return ""
	}
	var lines []string
	var ce *CRIUError
	if errors.As(err, &ce) {
		lines = ce.Lines
	} else {
		lines = []string{err.Error()}
	}
	for _, r := range explanations {
		for _, l := range lines {
			if r.match(l) {
				return r.say
			}
		}
	}
	return ""
}

// pin is the advice for a job that cannot move at all.
const pin = "; it can run on, where it is: `ssi run --pin` keeps the balancer from trying to move such a job"

var explanations = []struct {
	match func(line string) bool
	say   string
}{
	{has("Connected TCP socket"),
		"the job has an established TCP connection, and ssi cannot carry a connection to another node yet (that needs the job's own network namespace and address); close the connection before moving the job, or, if the job makes its connections again when they break (a NATS or database client), run it with `ssi run --reconnects` and a move closes them instead" + pin},
	{func(l string) bool {
		return strings.Contains(l, "Can't bind inet socket") || strings.Contains(l, "bind") && strings.Contains(l, "Cannot assign requested address")
	}, "the job has a socket bound to an address of its node, which the target node does not have; a job listening on 0.0.0.0 (or ::) can move, one bound to its node's own address cannot until jobs get addresses of their own" + pin},
	{func(l string) bool {
		return strings.Contains(l, "unix") && (strings.Contains(l, "xternal") || strings.Contains(l, "peer"))
	}, "the job has a Unix socket connected to a process outside it (a daemon's socket, say), which cannot follow it to another node; close it before moving the job" + pin},
	{func(l string) bool {
		return strings.Contains(l, "of that type") || strings.Contains(l, "Unknown file type") || strings.Contains(l, "nsupported")
	}, "the job holds a kind of file descriptor that CRIU cannot checkpoint (see CRIU's line below)" + pin},
	{has("Can't dump ghost file"),
		"the job still uses a file that was deleted (or replaced) while it ran, and the file is larger than a move carries (64 MiB); restart the job from the new file, or free it of the old one, to make it movable" + pin},
	{has("has bad size"),
		"a file the job holds open does not have the size it had when the job was dumped: something other than the job changed it; a retry may succeed once it is left alone"},
	{func(l string) bool {
		return strings.Contains(l, "Cannot allocate memory") || strings.Contains(l, "Out of memory")
	}, "the node ran out of memory for the job; move it to a node with more free memory"},
}

func has(s string) func(string) bool { return func(l string) bool { return strings.Contains(l, s) } }

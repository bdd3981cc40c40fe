// Package criulog reads CRIU's log files: the lines CRIU prints at error level,
// without those every log on these machines carries. It has no dependencies, so
// the per-job ssi-shim (which must not link go-criu) and package checkpoint
// quote CRIU the same way.
package criulog

import (
	"bufio"
	"bytes"
	"strings"
)

// harmless are Error lines every CRIU log on these machines has (root lacks
// CAP_SYS_RESOURCE), which say nothing about a failure.
var harmless = []string{"rlimit: Can't setup RLIMIT_NOFILE for self"}

// ErrorLines returns up to n lines of CRIU output printed at error level
// ("Error (file:line): ..."), in log order (the root cause is usually first),
// without the harmless ones.
func ErrorLines(out []byte, n int) []string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
next:
	for sc.Scan() && len(lines) < n {
		l := strings.TrimSpace(sc.Text())
		if !strings.Contains(l, "Error (") {
			continue
		}
		for _, h := range harmless {
			if strings.Contains(l, h) {
				continue next
			}
		}
		lines = append(lines, l)
	}
	return lines
}

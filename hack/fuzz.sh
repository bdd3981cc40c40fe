#!/usr/bin/env bash
# fuzz.sh: run every fuzz target (a decoder of untrusted input) for a short,
# fixed time each: FUZZTIME (default 10s). A crash leaves its input under the
# package's testdata/fuzz/<Target>/, which plain 'go test' then replays as a
# regression case: commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
status=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $target ($fuzztime)"
		for attempt in 1 2; do
			if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel 2 "$pkg" >/tmp/ssi-fuzz.$$.log 2>&1; then
				break
			fi
			# A crash names its input file; anything else (the engine's own
			# "context deadline exceeded" on a loaded machine) is retried once.
			if grep -q 'Failing input written to' /tmp/ssi-fuzz.$$.log || [ $attempt = 2 ]; then
				cat /tmp/ssi-fuzz.$$.log
				status=1
				break
			fi
			echo "  fuzz engine error, not a crash; retrying"
		done
	done
done
rm -f /tmp/ssi-fuzz.$$.log
exit $status

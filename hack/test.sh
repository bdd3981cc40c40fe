#!/usr/bin/env bash
# test.sh: everything CI checks, as CI runs it (root, real etcd, real CRIU,
# real network namespaces): gofmt and vet (hack/lint.sh); all tests, unit and
# e2e; the failpoint package's own tests (build tag failpoints, which the e2e
# suite compiles into its agents); then every fuzz target for a short fixed
# time (FUZZTIME, default 3s here; hack/fuzz.sh). SSI_SKIP_FUZZ=1 skips the
# fuzzing. Extra arguments go to the main `go test`.
#
# Tests that cannot run here skip with a reason (internal/testenv); the skips
# are listed and counted at the end. With CI=true (.ci/run) such a skip fails
# its test, unless the test is listed in SSI_CI_SKIP: a counted exception.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:$PATH # hack/install-criu.sh puts criu there
SSI_SKIP_LOG=$(mktemp /tmp/ssi-skips.XXXXXX)
export SSI_SKIP_LOG
trap 'rm -f "$SSI_SKIP_LOG"' EXIT

hack/lint.sh
status=0
go test -count=1 -timeout 40m "$@" ./... || status=1
go test -count=1 -tags failpoints ./failpoint/ || status=1

skipped=$(wc -l <"$SSI_SKIP_LOG")
exceptions=$(grep -c $'\tci-exception\t' "$SSI_SKIP_LOG" || true)
echo "skipped tests: $skipped (CI exceptions: $exceptions; CI=${CI:-unset})"
sort "$SSI_SKIP_LOG" | awk -F'\t' '{ printf "  %-50s %s\n", $1, $3 }'
if [ "$status" != 0 ]; then
	exit "$status"
fi

if [ "${SSI_SKIP_FUZZ:-0}" != 1 ]; then
	FUZZTIME=${FUZZTIME:-3s} hack/fuzz.sh
fi

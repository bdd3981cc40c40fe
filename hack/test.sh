#!/usr/bin/env bash
# test.sh: all tests, unit and e2e, as CI runs them (root, real etcd, real CRIU,
# real network namespaces), then every fuzz target for a short fixed time
# (FUZZTIME, default 3s here; hack/fuzz.sh). Root-only tests skip with a
# reason when not root. SSI_SKIP_FUZZ=1 skips the fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:$PATH # hack/install-criu.sh puts criu there
go test -count=1 -timeout 25m "$@" ./...
if [ "${SSI_SKIP_FUZZ:-0}" != 1 ]; then
	FUZZTIME=${FUZZTIME:-3s} hack/fuzz.sh
fi

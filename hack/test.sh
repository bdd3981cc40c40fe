#!/usr/bin/env bash
# test.sh: all tests, unit and e2e, as CI runs them (root, real etcd, real CRIU,
# real network namespaces). Root-only tests skip with a reason when not root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:$PATH # hack/install-criu.sh puts criu there
go test -count=1 -timeout 25m "$@" ./...

#!/usr/bin/env bash
# down.sh: stop the local cluster (agents, jobs, namespaces, bridge, cgroups, data).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bin/ssi ] || hack/build.sh
bin/ssi local down "$@"

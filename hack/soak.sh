#!/usr/bin/env bash
# soak.sh: the real-workload soak suite (issue 19), as root: e2e TestSoak,
# built with the tag soak (make test does not run it). A logger, an SQLite
# writer (WAL and DELETE), an fcntl and a flock lock holder, a threaded numpy
# computation and a make -j2 build each move 5 times with ssi migrate, then
# by the balancer; every move is counted and its frozen time compared with a
# raw CRIU dump + restore of a copy of the same program. The figures go to
# SOAK_REPORT (default /tmp/ssi-soak-report.md), for docs/ROBUSTNESS.md; the
# test log to SOAK_LOG (default /tmp/ssi-soak.log); then the end-during-move
# sweep with SSI_SWEEP_TRIALS (default 100) trials. ~15-20 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:$PATH # hack/install-criu.sh puts criu there
if [ "$(id -u)" != 0 ]; then
	echo "soak: needs root (network namespaces, cgroups, CRIU)" >&2
	exit 1
fi
# The numpy job runs Debian's python3 with OpenBLAS (2 threads).
if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-numpy libopenblas0-pthread
fi
for tool in gcc make; do
	command -v "$tool" >/dev/null || { echo "soak: $tool missing (apt-get install build-essential)" >&2; exit 1; }
done
export SOAK_REPORT=${SOAK_REPORT:-/tmp/ssi-soak-report.md}
log=${SOAK_LOG:-/tmp/ssi-soak.log}
rc=0
go test -count=1 -v -tags soak -run '^TestSoak$' -timeout 30m ./e2e/ 2>&1 | tee "$log" || rc=$?
# The end-during-move sweep at full size (the suite runs 25 trials).
SSI_SWEEP_TRIALS=${SSI_SWEEP_TRIALS:-100} go test -count=1 -v -run '^TestEndDuringMoveSweep$' -timeout 30m ./e2e/ 2>&1 | tee -a "$log" || rc=$?
echo "soak: report in $SOAK_REPORT, log in $log" >&2
exit "$rc"

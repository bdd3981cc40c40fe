#!/usr/bin/env bash
# soak-failover.sh: the failover fault campaign (issue 9), as root: e2e
# TestFailoverCampaign, built with the tag soak (make test does not run it),
# on a four-node cluster of its own (fobcamp, 10.217.9.0/24). FAILOVER_FAULTS
# (default 54) faults in turn: node kill, agent kill, partition longer and
# shorter than the lease, node kill with the failover controller's leader
# killed mid-restore, agent down longer than lease + grace; lost and
# duplicated processes are counted. The table
# goes to FAILOVER_REPORT (default /tmp/ssi-failover-campaign.md), for
# docs/ROBUSTNESS.md; the test log to FAILOVER_LOG (default
# /tmp/ssi-failover-campaign.log), the agents' logs to FAILOVER_LOGS (default
# /tmp/ssi-failover-campaign-logs). ~15 minutes for 54 faults.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:$PATH # hack/install-criu.sh puts criu there
if [ "$(id -u)" != 0 ]; then
	echo "soak-failover: needs root (network namespaces, cgroups, CRIU)" >&2
	exit 1
fi
export SSI_E2E_NAME=${SSI_E2E_NAME:-fobcamp} SSI_E2E_SUBNET=${SSI_E2E_SUBNET:-10.217.9.0/24} SSI_E2E_NODES=4
export FAILOVER_REPORT=${FAILOVER_REPORT:-/tmp/ssi-failover-campaign.md}
log=${FAILOVER_LOG:-/tmp/ssi-failover-campaign.log}
rc=0
go test -count=1 -v -tags soak -run '^TestFailoverCampaign$' -timeout 90m ./e2e/ 2>&1 | tee "$log" || rc=$?
echo "soak-failover: report in $FAILOVER_REPORT, log in $log" >&2
exit "$rc"

#!/usr/bin/env bash
# bench-metrics-rss.sh: each agent's idle resident memory (VmRSS of
# /proc/PID/status) on a 3-node local cluster, after IDLE seconds with no job,
# with metrics off (no --metrics-listen, never scraped) and on
# (--metrics-listen 127.0.0.1:9464 in each node's namespace, scraped every 5 s
# meanwhile). node1 runs the embedded etcd, so its figure includes etcd's.
# BINARY=path measures another build (MODES=off for one without the metrics
# code, which has no --metrics-listen).
# Usage (root): hack/bench-metrics-rss.sh   [NAME=smem SUBNET=10.224.0.0/24 IDLE=30]
set -euo pipefail
cd "$(dirname "$0")/.."
name=${NAME:-smem}
subnet=${SUBNET:-10.224.0.0/24}
idle=${IDLE:-30}
bin=${BINARY:-$PWD/bin/ssi}
tmp=$(mktemp -d /tmp/ssi-metrics-rss.XXXXXX)
trap '"$bin" local down --name "$name" --state-dir "$tmp/state" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

measure() { # label, agent args...
	local label=$1
	shift
	"$bin" local up --name "$name" --subnet "$subnet" --binary "$bin" --data-dir "$tmp/data" \
		--state-dir "$tmp/state" --write-config '' "$@" >/dev/null
	local state="$tmp/state/$name.json"
	local end=$((SECONDS + idle))
	while ((SECONDS < end)); do
		if [[ $label == on ]]; then
			for ns in $(jq -r '.nodes[].namespace' "$state"); do
				ip netns exec "$ns" curl -sf -o /dev/null http://127.0.0.1:9464/metrics
			done
		fi
		sleep 5
	done
	printf '%-4s' "$label"
	for i in $(seq 0 2); do
		local node pid
		node=$(jq -r ".nodes[$i].name" "$state")
		pid=$(jq -r ".nodes[$i].agent.pid" "$state")
		printf '  %s %s' "$node" "$(awk '/^VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/status")"
	done
	echo
	"$bin" local down --name "$name" --state-dir "$tmp/state" >/dev/null
	rm -rf "$tmp/data"
}

echo "binary $bin ($("$bin" --version 2>/dev/null || echo '?')); idle ${idle}s"
for mode in ${MODES:-off on}; do
	case $mode in
	off) measure off ;;
	on) measure on --agent-arg=--metrics-listen=127.0.0.1:9464 ;;
	esac
done

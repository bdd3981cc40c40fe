#!/bin/bash
# bench-replicas.sh: reconcile throughput of the service controller, as root:
# ssi apply of one unit with REPLICAS (500) replicas of /bin/sleep on a private
# 3-node local cluster (rep5, 10.219.5.0/24); prints the time from the apply to
# all running (ssi ps -A polled every 0.5 s) and the agents' CPU over it.
set -u
cd "$(dirname "$0")/.."
S=$PWD/bin/ssi
N=${REPLICAS:-500}
export SSI_CONFIG=/tmp/rep500.json
$S local up --name rep5 --subnet 10.219.5.0/24 --data-dir /tmp/rep5-data --state-dir /tmp/rep5-state --write-config /tmp/rep500.json >/dev/null || exit 1
mkdir -p /tmp/rep5u
printf '[Service]\nExecStart=/bin/sleep 100000\nRestart=always\n[X-SSI]\nReplicas=%s\nSpread=any\n' "$N" > /tmp/rep5u/many.service
sleep 3
pids=$(pgrep -f "ssi agent --name node. --listen 10.219.5" | tr '\n' ' ')
cpu0=$(for p in $pids; do awk '{print $14+$15}' /proc/$p/stat; done | paste -sd+ | bc)
t0=$(date +%s.%N)
$S apply /tmp/rep5u/many.service
while :; do
  run=$($S ps -A -o json | python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin) if p.get("service")=="many" and p["state"]=="running"))')
  [ "$run" -ge "$N" ] && break
  sleep 0.5
done
t1=$(date +%s.%N)
cpu1=$(for p in $pids; do awk '{print $14+$15}' /proc/$p/stat; done | paste -sd+ | bc)
echo "$N replicas running in $(echo "$t1 - $t0" | bc) s; agents' CPU $(echo "($cpu1 - $cpu0)/100" | bc -l | cut -c1-6) s (3 agents, node1 with etcd)"
$S services
for p in $pids; do echo "agent $p: $(awk '{print ($14+$15)/100}' /proc/$p/stat) s cpu total"; done
$S service rm many >/dev/null
sleep 10
$S local down --name rep5 --state-dir /tmp/rep5-state
rm -rf /tmp/rep5-data /tmp/rep5-state /tmp/rep5u /tmp/rep500.json

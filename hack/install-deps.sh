#!/usr/bin/env bash
# install-deps.sh: everything ssi needs on a Debian machine, idempotent.
#   - iproute2 and util-linux (ip, nsenter) for inspecting local clusters
#   - a C compiler and libc6-dev: ssi-init, a job's PID 1, is a static C program
#   - systemd's systemd-analyze: the oracle package calendar is tested against
#   - Chromium, headless, for the web dashboard's end-to-end test (e2e/dashboard_test.go)
#   - CRIU >= 4.2 (hack/install-criu.sh builds it from Debian's source when needed)
#   - the Go modules of this repository
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf 'install-deps: %s\n' "$*" >&2; }
if [ "$(id -u)" -ne 0 ]; then
	log "must run as root"
	exit 1
fi
missing=()
for pair in ip:iproute2 nsenter:util-linux iptables-restore:iptables cc:gcc chromium:chromium systemd-analyze:systemd; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# ssi-init (cmd/ssi-init) is a static C program: the C library's static archive.
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/aarch64-linux-gnu/libc.a ] || missing+=(libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
hack/install-criu.sh
if ! command -v go >/dev/null 2>&1; then
	log "no Go toolchain on PATH (looked for go; /usr/local/go/bin is the usual place)"
	exit 1
fi
go mod download

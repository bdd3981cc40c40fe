#!/usr/bin/env bash
# build.sh: build bin/ssi (CLI and agent), bin/ssi-shim (per-job shim) and
# bin/ssi-init (a job's PID 1, static C: cmd/ssi-init/main.c).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED=0
go build -trimpath -ldflags "-X main.version=$version" -o bin/ssi ./cmd/ssi
go build -trimpath -o bin/ssi-shim ./cmd/ssi-shim
${CC:-cc} -O2 -static -Wall -Wextra -Werror -o bin/ssi-init cmd/ssi-init/main.c

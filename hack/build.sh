#!/usr/bin/env bash
# build.sh: build bin/ssi (CLI and agent) and bin/ssi-shim (per-job shim and init).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED=0
go build -trimpath -ldflags "-X main.version=$version" -o bin/ssi ./cmd/ssi
go build -trimpath -o bin/ssi-shim ./cmd/ssi-shim

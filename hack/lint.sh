#!/usr/bin/env bash
# lint.sh: formatting and vet; fails listing unformatted files. The failpoint
# package is vetted in both builds (its files differ by the failpoints tag;
# no other package has build tags).
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go vet -tags failpoints ./failpoint/
go vet -tags soak ./e2e/ # the soak suite (make soak)

#!/usr/bin/env bash
# man.sh: generate the man pages (section 1) from the CLI's help into
# ${MANDIR:-bin/man}; view one with `man -l bin/man/ssi-top.1`, install with
# `cp bin/man/*.1 /usr/local/share/man/man1/ && mandb`.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/build.sh
bin/ssi man "${MANDIR:-bin/man}"

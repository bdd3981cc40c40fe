#!/usr/bin/env bash
# install-criu.sh: make sure a working, patched CRIU >= 4.2 is installed as /usr/local/sbin/criu.
#
# Debian 12's packaged CRIU (3.17) fails `criu check` on recent kernels and 4.1 cannot dump
# inet sockets on Linux >= 6.16, so we build CRIU from Debian's sid source tarball. Only the
# source is taken from sid (a deb-src line); build dependencies come from the running release,
# so libc is never upgraded.
#
# The build applies hack/criu-patches/*.patch (see the header of each) and keeps CRIU's
# kernel-feature cache in /run/criu, a small tmpfs this script mounts when /run is not one
# (CRIU keeps the cache only on tmpfs; without it every criu run re-probes the kernel, ~55 ms
# here). Skips the build when the installed criu passes `criu check`, is new enough and was
# built from the current patches. Idempotent; safe to run on every `make up` and in CI.
set -euo pipefail

MIN_VERSION=${CRIU_MIN_VERSION:-40200}
PREFIX=${CRIU_PREFIX:-/usr/local}
BUILD_DIR=${CRIU_BUILD_DIR:-/var/cache/ssi/criu-build}

log() { printf 'install-criu: %s\n' "$*" >&2; }

version_code() { # prints e.g. 40201 for "Version: 4.2.1"
	"$1" --version 2>/dev/null | awk '/^Version:/ { split($2, v, "."); printf "%d%02d%02d\n", v[1], v[2], v[3] }'
}

PATCH_DIR="$(cd "$(dirname "$0")" && pwd)/criu-patches"
RUNDIR=/run/criu
# What the installed binary was built from: the patches and the cache directory.
BUILD_ID=$( (cat "$PATCH_DIR"/*.patch; echo "RUNDIR=$RUNDIR") | sha256sum | cut -c1-16)
STAMP="$PREFIX/lib/ssi/criu.build"

usable() { # $1 = criu binary
	[ -x "$1" ] || return 1
	local code
	code=$(version_code "$1")
	[ -n "$code" ] && [ "$code" -ge "$MIN_VERSION" ] || return 1
	"$1" check >/dev/null 2>&1
}

# CRIU's kernel-feature cache lives in $RUNDIR and must be on tmpfs (stale after a reboot).
ensure_rundir() {
	mkdir -p "$RUNDIR"
	chmod 0700 "$RUNDIR"
	if [ "$(stat -f -c %T "$RUNDIR")" != tmpfs ]; then
		mount -t tmpfs -o size=1m,mode=0700 criu-cache "$RUNDIR"
	fi
}

if [ "$(id -u)" -ne 0 ]; then
	log "must run as root (it installs packages and CRIU into $PREFIX)"
	exit 1
fi
ensure_rundir

c="$PREFIX/sbin/criu"
if [ "$(cat "$STAMP" 2>/dev/null)" = "$BUILD_ID" ] && usable "$c"; then
	log "ok: $c $("$c" --version | awk '/^Version:/{print $2}') (patched, build $BUILD_ID) passes criu check"
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
SRC_LIST=/etc/apt/sources.list.d/ssi-criu-src.list
if [ ! -f "$SRC_LIST" ]; then
	# Source packages only: never a 'deb' line for sid (it would upgrade libc).
	echo "deb-src http://deb.debian.org/debian sid main" >"$SRC_LIST"
fi
log "installing build dependencies"
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	build-essential pkgconf libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev \
	protobuf-compiler libnl-3-dev libnet1-dev libcap-dev libbsd-dev libnftables-dev \
	libgnutls28-dev uuid-dev python3-protobuf iptables nftables xz-utils dpkg-dev patch >/dev/null

mkdir -p "$BUILD_DIR"
cd "$BUILD_DIR"
tarball=$(ls criu_*.orig.tar.* 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$tarball" ]; then
	log "fetching criu source from Debian sid"
	# apt-get source may fail on a secondary file (e.g. the debian tarball 404s); the orig
	# tarball is what we need, so judge success by its presence.
	apt-get source --download-only criu/sid >/dev/null 2>&1 || true
	tarball=$(ls criu_*.orig.tar.* 2>/dev/null | sort -V | tail -n 1 || true)
fi
if [ -z "$tarball" ]; then
	log "could not download criu's source tarball from Debian sid (is deb.debian.org reachable?)"
	exit 1
fi
ver=${tarball#criu_}
ver=${ver%%.orig.tar.*}
src="$BUILD_DIR/criu-$ver"
# A fresh tree each build, so that patches apply to pristine source.
log "unpacking $tarball"
rm -rf "$src"
mkdir -p "$src"
tar -xf "$tarball" -C "$src" --strip-components=1
for p in "$PATCH_DIR"/*.patch; do
	log "applying $(basename "$p")"
	patch -d "$src" -p1 --quiet <"$p" || {
		log "patch $p does not apply to criu $ver"
		exit 1
	}
done
log "building criu $ver (about a minute)"
make -C "$src" -j"$(nproc)" RUNDIR="$RUNDIR" criu >"$BUILD_DIR/build.log" 2>&1 || {
	tail -n 30 "$BUILD_DIR/build.log" >&2
	log "build failed; full log in $BUILD_DIR/build.log"
	exit 1
}
install -D -m 0755 "$src/criu/criu" "$PREFIX/sbin/criu"
if ! usable "$PREFIX/sbin/criu"; then
	"$PREFIX/sbin/criu" check >&2 || true
	log "built criu $ver but it does not pass 'criu check' on this kernel"
	exit 1
fi
mkdir -p "$(dirname "$STAMP")"
echo "$BUILD_ID" >"$STAMP"
log "installed $PREFIX/sbin/criu ($("$PREFIX/sbin/criu" --version | awk '/^Version:/{print $2}'))"

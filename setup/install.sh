#!/usr/bin/env bash
# Installs a released shipgate binary: downloads the archive for this runner's platform and the
# release's SHA256SUMS, checks the archive against them (and against `SHIPGATE_SHA256` when the
# workflow pins it), checks the binary reports the requested version, and puts it on PATH.
# Nothing is installed unless every check passes. Used by setup/action.yml; runs anywhere with
# bash, curl, tar and sha256sum (or shasum).
#
# Environment (the action's inputs):
#   SHIPGATE_VERSION      version to install, e.g. 0.1.0; empty: the version of this checkout
#   SHIPGATE_BASE_URL     where releases live: <base>/v<version>/<archive>
#   SHIPGATE_INSTALL_DIR  directory to put the binary in
#   SHIPGATE_SHA256       optional: the archive's expected SHA-256 (pins it beyond the release)
#   SHIPGATE_TOKEN        optional: bearer token for the downloads (GHES, private mirrors)
#   SHIPGATE_TARGET       optional: target triple instead of this machine's
set -euo pipefail

fail() {
    echo "::error title=setup-shipgate::$*" >&2
    exit 1
}

version="${SHIPGATE_VERSION:-}"
if [ -z "$version" ]; then
    # The release this copy of the action belongs to: the crate version beside it.
    manifest="$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml"
    version="$(sed -n 's/^version *= *"\(.*\)"$/\1/p' "$manifest" 2>/dev/null | head -n 1)"
fi
version="${version#v}"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] \
    || fail "version '${SHIPGATE_VERSION:-}' is not a release version like 0.1.0"
base="${SHIPGATE_BASE_URL:?SHIPGATE_BASE_URL is not set}"
base="${base%/}"
dir="${SHIPGATE_INSTALL_DIR:?SHIPGATE_INSTALL_DIR is not set}"

target="${SHIPGATE_TARGET:-}"
if [ -z "$target" ]; then
    case "$(uname -s)/$(uname -m)" in
        Linux/x86_64 | Linux/amd64) target=x86_64-unknown-linux-musl ;;
        Linux/aarch64 | Linux/arm64) target=aarch64-unknown-linux-musl ;;
        Darwin/arm64) target=aarch64-apple-darwin ;;
        Darwin/x86_64) target=x86_64-apple-darwin ;;
        *) fail "no shipgate release for $(uname -s) $(uname -m); use the container action, or build it with \`cargo install shipgate\`" ;;
    esac
fi
archive="shipgate-${version}-${target}.tar.gz"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

download() {
    local url="$1" out="$2"
    local auth=()
    if [ -n "${SHIPGATE_TOKEN:-}" ]; then
        auth=(-H "Authorization: Bearer ${SHIPGATE_TOKEN}")
    fi
    curl -fsSL --retry 3 --retry-delay 2 --connect-timeout 10 --max-time 300 \
        "${auth[@]}" -o "$out" "$url" \
        || fail "cannot download ${url}: check the version and that the release has an archive for ${target}"
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

download "${base}/v${version}/SHA256SUMS" "$work/SHA256SUMS"
download "${base}/v${version}/${archive}" "$work/${archive}"

listed="$(awk -v name="$archive" '$2 == name || $2 == "*" name { print $1 }' "$work/SHA256SUMS")"
[ -n "$listed" ] || fail "SHA256SUMS of v${version} does not list ${archive}"
actual="$(sha256_of "$work/${archive}")"
[ "$actual" = "$listed" ] \
    || fail "${archive} does not match SHA256SUMS of v${version} (expected ${listed}, got ${actual}); nothing was installed"
if [ -n "${SHIPGATE_SHA256:-}" ]; then
    [ "$actual" = "${SHIPGATE_SHA256,,}" ] \
        || fail "${archive} is not the pinned one (sha256 input ${SHIPGATE_SHA256}, got ${actual}); nothing was installed"
fi

mkdir -p "$work/unpacked"
tar -xzf "$work/${archive}" -C "$work/unpacked" --no-same-owner
binary="$work/unpacked/shipgate"
[ -f "$binary" ] && [ ! -L "$binary" ] || fail "${archive} holds no regular file 'shipgate' at its top"
chmod 0755 "$binary"
reported="$("$binary" --version 2>/dev/null | awk '{ print $2 }')" \
    || fail "the shipgate binary in ${archive} does not run on this machine (${target})"
[ "$reported" = "$version" ] \
    || fail "the binary in ${archive} says it is version '${reported}', not ${version}; nothing was installed"

mkdir -p "$dir"
install -m 0755 "$binary" "$dir/shipgate.new"
mv -f "$dir/shipgate.new" "$dir/shipgate"
if [ -n "${GITHUB_PATH:-}" ]; then
    echo "$dir" >> "$GITHUB_PATH"
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
    {
        echo "path=$dir/shipgate"
        echo "version=$version"
        echo "sha256=$actual"
    } >> "$GITHUB_OUTPUT"
fi
echo "shipgate ${version} (${target}, sha256 ${actual}) installed in ${dir}"

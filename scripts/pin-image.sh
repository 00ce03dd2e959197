#!/usr/bin/env bash
# Points action.yml's `runs.image` at an image by its digest, so that pinning the action by a
# commit SHA pins the code that runs too (a tag such as `:0.2.0` can be pushed again; a digest
# cannot). The release workflow runs it on the commit it releases, after pushing the
# multi-arch image, and tags the resulting commit.
#
#   scripts/pin-image.sh ACTION_YML IMAGE DIGEST
#   scripts/pin-image.sh action.yml ghcr.io/acme/shipgate sha256:<64 hex digits>
#
# Changes that one line and nothing else; refuses a malformed image name or digest, and an
# action.yml without exactly one `runs.image` line.
set -euo pipefail

die() { echo "pin-image: $*" >&2; exit 2; }

[ "$#" -eq 3 ] || die "usage: $0 ACTION_YML IMAGE DIGEST"
file=$1 image=$2 digest=$3

[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] ||
    die "\`$digest\` is not an image digest: expected sha256: and 64 lower-case hex digits"
# A registry host and a lower-case repository path, no tag (the digest names the image).
[[ "$image" =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$ ]] ||
    die "\`$image\` is not an image name such as ghcr.io/owner/shipgate (lower case, no tag)"
[ -f "$file" ] || die "\`$file\` does not exist"

pattern='^  image: docker://'
count=$(grep -c -- "$pattern" "$file" || true)
[ "$count" -eq 1 ] ||
    die "\`$file\` has $count \`image: docker://…\` lines under \`runs:\`; expected exactly one"

tmp="$(mktemp "$file.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
sed -E "s#${pattern}.*\$#  image: docker://${image}@${digest}#" "$file" >"$tmp"
chmod --reference="$file" "$tmp"
mv "$tmp" "$file"
trap - EXIT
echo "pin-image: $file runs docker://${image}@${digest}"

#!/usr/bin/env bash
# Audit the action definition, the workflows and the workflow templates with zizmor.
# Fails on any finding of low severity or above, on any zizmor error, and on a file zizmor
# cannot parse (`--strict-collection`: otherwise a syntax or schema error only warns and the
# file goes unaudited).
#
# Files are passed by path: given a directory, zizmor only collects .github/workflows and
# action definitions, so workflows-templates/ would yield "no inputs collected" (rc 3).
# Offline on purpose: with a GITHUB_TOKEN/GH_TOKEN in the environment zizmor would call the
# GitHub API, which fails without network (and CI must not depend on it).
set -euo pipefail

cd "$(dirname "$0")/.."

zizmor="${ZIZMOR:-zizmor}"
if ! command -v "$zizmor" >/dev/null 2>&1; then
    echo "zizmor not found; install it with: pip install zizmor==1.32.0" >&2
    exit 1
fi

shopt -s nullglob
inputs=(action.yml setup/action.yml .github/workflows/*.yml .github/workflows/*.yaml
    workflows-templates/*.yml workflows-templates/*.yaml)

# Exit codes: 0 clean, 1 error, 2 bad usage, 3 no inputs, 10+ findings (worst severity).
status=0
ZIZMOR_OFFLINE=true "$zizmor" --offline --strict-collection --min-severity low "${inputs[@]}" || status=$?
if [ "$status" -ne 0 ]; then
    echo "zizmor failed (exit status $status)" >&2
fi

# The auditor persona (every audit, pedantic ones included) on the workflows and templates:
# no secret outside a dedicated environment, every image pinned. action.yml is left out of this
# pass only for `unpinned-images` (its image is referenced by version tag until the release
# workflow writes the digest); the pass above audits it.
workflows=(setup/action.yml .github/workflows/*.yml .github/workflows/*.yaml workflows-templates/*.yml workflows-templates/*.yaml)
auditor=0
ZIZMOR_OFFLINE=true "$zizmor" --offline --strict-collection --persona auditor "${workflows[@]}" || auditor=$?
if [ "$auditor" -ne 0 ]; then
    echo "zizmor --persona auditor failed (exit status $auditor)" >&2
    status=$auditor
fi
exit "$status"

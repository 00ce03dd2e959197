#!/usr/bin/env bash
# Local rehearsal of the deployment pipeline, with no GitHub needed. Today it rehearses what
# shipgate can do so far: `shipgate validate` on a throwaway clone of this repository, tagged
# with the crate's version, exactly as a tag push would run it (a simulated Actions step with
# its output and summary files). Prints where the outputs, summary and state are.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

cargo build --locked --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/debug/shipgate"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"

work="$(mktemp -d "${TMPDIR:-/tmp}/shipgate-rehearsal.XXXXXX")"
git clone --quiet --no-hardlinks "$root" "$work/repo"
git -C "$work/repo" -c user.name=rehearsal -c user.email=rehearsal@example.invalid \
    tag -a "v$version" -m "Release v$version (rehearsal)"
mkdir -p "$work/runner"
: >"$work/runner/output"
: >"$work/runner/summary.md"

echo "==> shipgate validate (tag v$version, simulated tag push)" >&2
(
    cd "$work/repo"
    env -u GITHUB_TOKEN -u GH_TOKEN \
        GITHUB_ACTIONS=true GITHUB_REF="refs/tags/v$version" GITHUB_RUN_ID=1 \
        GITHUB_OUTPUT="$work/runner/output" GITHUB_STEP_SUMMARY="$work/runner/summary.md" \
        GITHUB_WORKSPACE="$work/repo" \
        "$bin" validate
)

echo >&2
echo "==> step outputs ($work/runner/output)" >&2
cat "$work/runner/output"
echo >&2
echo "==> step summary ($work/runner/summary.md)" >&2
cat "$work/runner/summary.md"
echo >&2
echo "State directory: $work/repo/.shipgate/" >&2
ls -R "$work/repo/.shipgate" >&2

echo >&2
echo "==> shipgate rollout --dry-run (seed 004's plan, its timeline and worst-case exposure; nothing runs)" >&2
(
    cd "$work/repo"
    "$bin" rollout --dry-run --endpoint https://app.example/health --hook true
)

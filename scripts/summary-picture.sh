#!/usr/bin/env bash
# Writes docs/rehearsal-summary.md, the picture of what a run looks like: runs the local
# rehearsal (scripts/rehearse.sh, its arguments passed on) and copies the step summary it wrote,
# with the temp directory and the ids that change from run to run made fixed, so that a new
# picture differs from the committed one only where the summary itself changed.
#
#   bash scripts/summary-picture.sh                 # the successful deploy
#   bash scripts/summary-picture.sh --break-canary  # the rolled-back one
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/docs/rehearsal-summary.md"

log="$(mktemp "${TMPDIR:-/tmp}/shipgate-summary-picture.XXXXXX")"
trap 'rm -f "$log"' EXIT
status=0
bash "$root/scripts/rehearse.sh" "$@" 2>&1 | tee "$log" >&2 || status=$?
summary="$(sed -n 's/^Summary: *//p' "$log" | tail -n1)"
if [ -z "$summary" ] || [ ! -s "$summary" ]; then
    echo "summary-picture: the rehearsal (exit code $status) wrote no step summary" >&2
    exit 1
fi
work="$(dirname "$summary")"
id="$(sed -n 's/^State directory: *//p' "$log" | tail -n1)"
id="${id##*/}"
commit="$(sed -n 's/^| Commit | `\([0-9a-f]\{40\}\)` |$/\1/p' "$summary" | head -n1)"
digest="$(sed -n 's/^| SHA-256 | `\([0-9a-f]\{64\}\)` |$/\1/p' "$summary" | head -n1)"

# Fixed stand-ins for what changes from run to run: the temp directory, the deployment id (a
# random run number and the commit of a freshly made repository), the commit, the backup's
# digest (pg_dump writes timestamps) and the process that held the lease. Times and durations
# are kept as measured.
fixed_commit=a1b2c3d4e5f60718293a4b5c6d7e8f9012345678
fixed_id="1234567890-${fixed_commit:0:7}"
fixed_digest=5f0c3e1d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d
edits=(-e "s#$work#/tmp/shipgate-rehearsal#g")
[ -n "$id" ] && edits+=(-e "s#$id#$fixed_id#g")
[ -n "$commit" ] && edits+=(-e "s#$commit#$fixed_commit#g")
[ -n "$digest" ] && edits+=(-e "s#$digest#$fixed_digest#g")
edits+=(-e 's#(process [0-9]* on `[^`]*`)#(process 4242 on `rehearsal-host`)#g')

{
    echo '<!-- Written by scripts/summary-picture.sh: the step summary of one local rehearsal. -->'
    echo
    echo '> The step summary of one `bash scripts/rehearse.sh` run, as a job'"'"'s summary page shows'
    echo '> it. Made by `bash scripts/summary-picture.sh`; the temp directory, deployment id, commit,'
    echo '> backup digest and process id are fixed stand-ins, times and durations are as measured.'
    echo
    sed "${edits[@]}" "$summary"
} >"$out"
echo "wrote ${out#"$root"/} from $summary (rehearsal exit code $status)" >&2
exit "$status"

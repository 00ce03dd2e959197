#!/usr/bin/env bash
# How long `shipgate record` takes on a full state dir whose logs total SIZE_MIB (default 64),
# with no artifact service (so it measures assembling the record, writing the instructions,
# staging and zipping every artifact: the work done before any upload). Prints the figures.
#
#   bash bench/record.sh            # uses target/debug/shipgate (cargo build first)
#   SHIPGATE=path/to/shipgate SIZE_MIB=256 bash bench/record.sh
set -euo pipefail

cd "$(dirname "$0")/.."
bin="${SHIPGATE:-${CARGO_TARGET_DIR:-target}/debug/shipgate}"
size_mib="${SIZE_MIB:-64}"
runs="${RUNS:-3}"
[ -x "$bin" ] || { echo "no $bin: run cargo build first (or set SHIPGATE)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
id="9999-abcdef0"
state="$work/.shipgate/$id"
mkdir -p "$state"
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
cat > "$state/validate.json" <<JSON
{"schema_version":1,"command":"validate","result":"pass","timestamp":"$now","duration_ms":800,"deployment_id":"$id","environment":"production","version":"1.4.0","tag":"v1.4.0","sha":"9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"}
JSON
cat > "$state/smoke.json" <<JSON
{"schema_version":1,"command":"smoke","result":"pass","timestamp":"$now","duration_ms":4100,"total":1,"passed":1,"failed":0,"tests":[{"name":"API","status":"passed","duration_ms":140}]}
JSON
# Log-like text (compressible the way real logs are): four logs of SIZE_MIB/4 each.
for stem in backup-logs migration-logs rollout-logs smoke-test-logs; do
    (set +o pipefail
     yes "[2026-11-22T01:51:22Z] [stdout] GET /api/health 200 12ms upstream=canary-7f9c weight=5" \
        | head -c "$((size_mib * 1024 * 1024 / 4))" > "$state/$stem-$id.log")
done

best=""
for i in $(seq "$runs"); do
    rm -rf "$state/artifacts"
    start=$(date +%s%N)
    (cd "$work" && env -i PATH="$PATH" HOME="$work" "$bin" --deployment-id "$id" record >/dev/null 2>&1)
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    echo "run $i: ${ms} ms"
    if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
done
zipped=$(du -cb "$state"/artifacts/*/ | tail -1 | cut -f1)
echo "record: ${size_mib} MiB of logs, 6 artifacts staged and zipped: best ${best} ms of ${runs} runs ($(( size_mib * 1000 / (best > 0 ? best : 1) )) MiB/s); staged files ${zipped} bytes"
echo "binary: $bin ($(file -b "$bin" | cut -d, -f1-2))"

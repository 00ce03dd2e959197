#!/usr/bin/env bash
# Rollout probe benchmark: how many health probes per second `shipgate rollout` sustains on one
# core against a loopback server, and what each probe costs beyond a bare reqwest loop (body
# reading through the health-format reader, the sample's verdict, the rolling window, every gate
# evaluated after every sample, one decision-log line per probe).
#
#   bash bench/rollout.sh                 # release build (the figures to quote)
#   BENCH_PROFILE=dev bash bench/rollout.sh   # debug build (slower; quick check)
#   SECONDS_PER_RUN=10 LANES=8 bash bench/rollout.sh
#
# shipgate and the bare loop run pinned to CPU 0 (`taskset`), the server to CPU 1 when there is
# one, so "one core" means one core. Targets: >= 200 probes/s; overhead < 1 ms per probe.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

profile="${BENCH_PROFILE:-release}"
seconds="${SECONDS_PER_RUN:-5}"
lanes="${LANES:-8}"
if [ "$profile" = release ]; then
    cargo build --quiet --release --bin shipgate --example rollout-bench
    dir="${CARGO_TARGET_DIR:-$root/target}/release"
else
    cargo build --quiet --bin shipgate --example rollout-bench
    dir="${CARGO_TARGET_DIR:-$root/target}/debug"
fi
shipgate="$dir/shipgate"
helper="$dir/examples/rollout-bench"

pin_client=()
pin_server=()
if command -v taskset >/dev/null 2>&1; then
    pin_client=(taskset -c 0)
    if [ "$(nproc)" -gt 1 ]; then pin_server=(taskset -c 1); fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/shipgate-bench.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"${pin_server[@]}" "$helper" serve >"$work/server.out" &
server_pid=$!
for _ in $(seq 100); do
    grep -q '^PORT ' "$work/server.out" 2>/dev/null && break
    sleep 0.05
done
port="$(sed -n 's/^PORT //p' "$work/server.out")"
[ -n "$port" ] || { echo "the loopback server did not start" >&2; exit 1; }
url="http://127.0.0.1:$port/health"

# One `shipgate rollout` stage of $2 seconds probing $1 endpoints every $3; prints
# "<samples> <elapsed_ms> <p50_ms>".
run_shipgate() {
    local endpoints=() i
    for i in $(seq "$1"); do endpoints+=(--endpoint "$url?lane=$i"); done
    local id="bench-$RANDOM"
    /usr/bin/time -f '%U %S' -o "$work/cpu" \
        "${pin_client[@]}" "$shipgate" --format json --state-dir "$work/state" --deployment-id "$id" \
        rollout --version 0.0.0-bench --hook true "${endpoints[@]}" \
        --stage "bench:100:${2}s:$3" --min-samples 1 --max-p95 5s --probe-timeout 5s \
        2>"$work/shipgate.err" >"$work/shipgate.json" || {
        echo "shipgate rollout failed:" >&2
        tail -20 "$work/shipgate.err" >&2
        exit 1
    }
    python3 - "$work/shipgate.json" "$work/cpu" <<'PY'
import json, sys
stage = json.load(open(sys.argv[1]))["stages"][0]
cpu = sum(map(float, open(sys.argv[2]).read().split()[-2:]))
print(stage["samples"], stage["elapsed_ms"], stage["p50_ms"], cpu)
PY
}

# The bare loop with its CPU time: prints "<json> <cpu_seconds>".
run_bare() {
    local out
    out="$(/usr/bin/time -f '%U %S' -o "$work/cpu" "${pin_client[@]}" "$helper" bare "$url" "$@")"
    echo "$out $(python3 -c 'import sys; print(sum(map(float, open(sys.argv[1]).read().split()[-2:])))' "$work/cpu")"
}


echo "==> $profile build, $lanes lanes, ${seconds}s per run, loopback $url" >&2

# Throughput: as many probes as one core does (lanes probing back to back).
read -r sg_samples sg_ms _ sg_cpu < <(run_shipgate "$lanes" "$seconds" 1ms)
read -r bare bare_cpu < <(run_bare "$lanes" "$seconds")

# Latency as measured: one lane every 10 ms, nothing competing.
read -r _ _ sg_p50 _ < <(run_shipgate 1 3 10ms)
read -r bare_one _ < <(run_bare 1 3 10)

python3 - "$sg_samples" "$sg_ms" "$sg_cpu" "$bare" "$bare_cpu" "$sg_p50" "$bare_one" \
    "$lanes" "$seconds" "$profile" <<'PY'
import json, sys
sg_samples, sg_ms, sg_cpu = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
bare, bare_cpu = json.loads(sys.argv[4]), float(sys.argv[5])
sg_p50, bare_p50 = float(sys.argv[6]), json.loads(sys.argv[7])["p50_ms"]
lanes, seconds, profile = sys.argv[8], sys.argv[9], sys.argv[10]
sg_rate = sg_samples / (sg_ms / 1000)
sg_cost = sg_cpu / sg_samples * 1e6
bare_cost = bare_cpu / bare["probes"] * 1e6
overhead = sg_cost - bare_cost
print(f"probes on one core ({profile} build, {lanes} lanes probing back to back, {seconds}s):")
print(f"  shipgate rollout   {sg_rate:8.0f} probes/s wall clock, {sg_cost:6.1f} us CPU per probe -> {1e6 / sg_cost:8.0f} probes per CPU-second")
print(f"  bare reqwest loop  {bare['rate']:8.0f} probes/s wall clock, {bare_cost:6.1f} us CPU per probe -> {1e6 / bare_cost:8.0f} probes per CPU-second")
print(f"per-probe measurement overhead (CPU): {overhead:+.1f} us = {overhead / 1000:+.3f} ms")
print(f"measured latency, 1 lane every 10ms: shipgate p50 {sg_p50:.3f} ms, bare p50 {bare_p50:.3f} ms ({sg_p50 - bare_p50:+.3f} ms)")
ok_rate = min(sg_rate, 1e6 / sg_cost) >= 200
ok_overhead = overhead < 1000
print(f"targets: >= 200 probes/s {'met' if ok_rate else 'MISSED'}; overhead < 1 ms {'met' if ok_overhead else 'MISSED'}")
PY

#!/usr/bin/env bash
# Metric gate benchmark (issue 14): the CPU `shipgate rollout` spends per evaluation round of 20
# metric queries (each: template, HTTP GET to a Prometheus-compatible API on loopback, JSON
# parsing, the condition, the verdict of every gate, one decision-log line), printed beside the
# probe benchmark's figure (CPU per health probe) from the same runs.
#
#   bash bench/metrics.sh                      # release build (the figures to quote)
#   BENCH_PROFILE=dev bash bench/metrics.sh    # debug build (slower; an upper bound)
#   SECONDS_PER_RUN=10 QUERIES=20 bash bench/metrics.sh
#
# Two runs of one stage, identical but for `rollout.metrics`: the first probes one endpoint
# every 100ms and has no metric gate; the second adds QUERIES metric gates measured every 100ms.
# The CPU difference divided by the rounds measured is the cost of one round. shipgate runs
# pinned to CPU 0 (`taskset`), the loopback servers to CPU 1 when there is one. Target: < 50 ms
# of CPU per round of 20 queries.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

profile="${BENCH_PROFILE:-release}"
seconds="${SECONDS_PER_RUN:-5}"
queries="${QUERIES:-20}"
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
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Starts `rollout-bench $1` (in this shell, so cleanup can stop it) and waits for its port in
# $work/$1.out.
start_server() {
    "${pin_server[@]}" "$helper" "$1" >"$work/$1.out" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 100); do
        grep -q '^PORT ' "$work/$1.out" 2>/dev/null && break
        sleep 0.05
    done
}
start_server serve
start_server serve-prometheus
health_port="$(sed -n 's/^PORT //p' "$work/serve.out")"
prometheus_port="$(sed -n 's/^PORT //p' "$work/serve-prometheus.out")"
[ -n "$health_port" ] && [ -n "$prometheus_port" ] || {
    echo "the loopback servers did not start" >&2
    exit 1
}

# shipgate.yml with $1 metric gates, each measured every 100ms.
config() {
    local n="$1" i
    echo "rollout:"
    echo "  prometheus: { address: \"http://127.0.0.1:$prometheus_port\" }"
    if [ "$n" -gt 0 ]; then
        echo "  metrics:"
        for i in $(seq "$n"); do
            echo "    - name: q$i"
            echo "      query: 'sum(rate(http_requests_total{version=\"{{version}}\",status=~\"5..\",lane=\"$i\"}[{{window}}]))'"
            echo "      condition: '< 0.03'"
            echo "      interval: 100ms"
        done
    fi
}

# One `shipgate rollout` stage of $seconds with $1 metric gates; prints
# "<probes> <measurements> <cpu_seconds>".
run_shipgate() {
    local id="bench-$RANDOM"
    config "$1" >"$work/shipgate-$1.yml"
    /usr/bin/time -f '%U %S' -o "$work/cpu" \
        "${pin_client[@]}" "$shipgate" --format json --config "$work/shipgate-$1.yml" \
        --state-dir "$work/state" --deployment-id "$id" \
        rollout --version 0.0.0-bench --hook true --endpoint "http://127.0.0.1:$health_port/health" \
        --stage "bench:100:${seconds}s:100ms" --min-samples 1 --max-p95 5s --probe-timeout 5s \
        2>"$work/shipgate.err" >"$work/shipgate.json" || {
        echo "shipgate rollout failed:" >&2
        tail -20 "$work/shipgate.err" >&2
        exit 1
    }
    local measurements
    measurements="$(grep -c ' metric:q[0-9]* pass ' "$work/state/$id/rollout-logs-$id.log" || true)"
    python3 - "$work/shipgate.json" "$work/cpu" "$measurements" <<'PY'
import json, sys
stage = json.load(open(sys.argv[1]))["stages"][0]
cpu = sum(map(float, open(sys.argv[2]).read().split()[-2:]))
print(stage["samples"], sys.argv[3], cpu)
PY
}

echo "==> $profile build, ${seconds}s per run, $queries queries every 100ms, loopback ports $health_port/$prometheus_port" >&2
read -r base_probes _ base_cpu < <(run_shipgate 0)
read -r probes measurements cpu < <(run_shipgate "$queries")

python3 - "$base_probes" "$base_cpu" "$probes" "$measurements" "$cpu" "$queries" "$seconds" "$profile" <<'PY'
import sys
base_probes, base_cpu = int(sys.argv[1]), float(sys.argv[2])
probes, measurements, cpu = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
queries, seconds, profile = int(sys.argv[6]), sys.argv[7], sys.argv[8]
if measurements < queries:
    sys.exit(f"only {measurements} measurements were logged: the metric gates did not run")
rounds = measurements / queries
per_round_ms = (cpu - base_cpu) / rounds * 1000
per_query_us = (cpu - base_cpu) / measurements * 1e6
print(f"metric gates on one core ({profile} build, {queries} queries every 100ms, {seconds}s):")
print(f"  {measurements} measurements = {rounds:.0f} rounds; CPU {cpu:.2f}s with them, {base_cpu:.2f}s without")
print(f"  per round of {queries} queries: {per_round_ms:.2f} ms CPU ({per_query_us:.0f} us per query)")
print(f"beside the probes (the run without metric gates): {base_cpu / max(base_probes, 1) * 1000:.2f} ms CPU per health probe, start-up included ({base_probes} probes; bench/rollout.sh measures the per-probe overhead alone)")
print(f"target: < 50 ms of CPU per round of {queries} queries {'met' if per_round_ms < 50 else 'MISSED'}")
PY

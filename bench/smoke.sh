#!/usr/bin/env bash
# Benchmark: 200 independent smoke checks against a loopback HTTP server that answers each
# request after 50 ms, run at shipgate's default concurrency and sequentially
# (`--concurrency 1`). Prints both wall times and the ratio (target: >= 10x).
#
#   bash bench/smoke.sh            # uses target/debug/shipgate (built if needed)
#   CHECKS=500 LATENCY_MS=20 bash bench/smoke.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CHECKS="${CHECKS:-200}"
LATENCY_MS="${LATENCY_MS:-50}"

cargo build --locked --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/debug/shipgate"

work="$(mktemp -d "${TMPDIR:-/tmp}/shipgate-bench-smoke.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The server: threaded, keep-alive, a deep accept queue, 50 ms before every answer.
cat >"$work/server.py" <<'PY'
import http.server, json, sys, time
latency = int(sys.argv[1]) / 1000.0
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        time.sleep(latency)
        body = json.dumps({"status": "healthy", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
server = Server(("127.0.0.1", 0), Handler)
with open(sys.argv[2], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
PY
python3 "$work/server.py" "$LATENCY_MS" "$work/port" &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
port="$(cat "$work/port")"

{
    echo "base-url: http://127.0.0.1:$port"
    echo "tests:"
    for i in $(seq 1 "$CHECKS"); do
        printf '  - name: check %s\n    url: /service/%s/health\n    expect:\n      - status == 200\n      - json $.status == healthy\n' "$i" "$i"
    done
} >"$work/smoke.yml"

run() {
    local start end
    start=$(date +%s%N)
    (cd "$work" && "$bin" --deployment-id bench-1 smoke --suite smoke.yml "$@" 2>/dev/null)
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}

default_ms=$(run)
sequential_ms=$(run --concurrency 1)
echo "checks:                 $CHECKS (server latency ${LATENCY_MS} ms each)"
echo "default concurrency:    ${default_ms} ms"
echo "sequential (1):         ${sequential_ms} ms"
awk -v s="$sequential_ms" -v d="$default_ms" 'BEGIN { printf "speed-up:               %.1fx (target >= 10x)\n", s / d }'

#!/usr/bin/env bash
# Benchmark for `shipgate gate`: 30 checks finishing one by one over a simulated 20 minutes
# (1 simulated second = 10 real milliseconds), polled every simulated 10 s by shipgate and by a
# naive poller (no ETag, no backoff), each against its own fake GitHub with the same timeline.
# Prints requests sent and requests charged against the rate limit (non-304) for both.
#
#   bash bench/gate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --quiet --test it gate_bench -- --ignored --nocapture --test-threads 1

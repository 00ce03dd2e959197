#!/usr/bin/env bash
# Figures for `shipgate migrate` against a throwaway local PostgreSQL cluster (initdb + pg_ctl on
# a free port, removed at the end). Prints:
#   1. overhead: wall time of `shipgate migrate -- true` (backup check, lock connection, lock,
#      two reads of a Prisma history table of ROWS rows, the child, state file, summary) next to
#      the bare `true`;
#   2. lock hand-off: the time from one run's command ending to a waiting run's command starting.
# Usage: bash bench/migrate.sh [RUNS] [ROWS]     (defaults: 10 runs, 1000 rows)
set -euo pipefail
runs="${1:-10}"
rows="${2:-1000}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --locked --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/debug/shipgate"

pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
[ -x "$pgbin/initdb" ] || { echo "no PostgreSQL server binaries; run .ci/install-deps.sh" >&2; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/shipgate-bench-migrate.XXXXXX")"
as_pg=()
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$work"
    as_pg=(runuser -u postgres --)
fi
cleanup() {
    "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/data" stop -m immediate >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

password="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$password" >"$work/pw"
chmod 600 "$work/pw"
[ "$(id -u)" = 0 ] && chown postgres: "$work/pw"
"${as_pg[@]}" "$pgbin/initdb" -D "$work/data" --auth=scram-sha-256 --username=postgres \
    --pwfile="$work/pw" --no-sync --no-instructions >/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/data" -l "$work/data/log" -w \
    -o "-p $port -k $work/data -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null

export PGPASSWORD="$password"
psql_() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE bench"
psql_ -d bench -c "CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL, finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz, started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count int NOT NULL DEFAULT 0)" \
    -c "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name) SELECT md5(i::text), 'c', now(), lpad(i::text, 14, '0') || '_m' FROM generate_series(1, $rows) i"
unset PGPASSWORD

app="$work/app"
mkdir -p "$app"
export DATABASE_URL="postgres://postgres:${password}@127.0.0.1:${port}/bench"
backup() {
    mkdir -p "$app/.shipgate/$1"
    printf '{"result":"pass","backup_id":"b-%s","location":"file:///dev/null","verified":true}\n' "$1" \
        >"$app/.shipgate/$1/backup.json"
}
ms() { echo $(( ($2 - $1) / 1000000 )); }
stats() { sort -n | awk '{a[NR]=$1} END {printf "median %d ms, min %d ms, max %d ms (n=%d)\n", a[int((NR+1)/2)], a[1], a[NR], NR}'; }

echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'), history table of $rows rows, $runs runs" >&2

bare=()
for i in $(seq "$runs"); do
    t0=$(date +%s%N); true; t1=$(date +%s%N)
    bare+=("$(ms "$t0" "$t1")")
done
overhead=()
for i in $(seq "$runs"); do
    id="1-overhead$i"
    backup "$id"
    t0=$(date +%s%N)
    (cd "$app" && "$bin" --deployment-id "$id" migrate -- true 2>/dev/null)
    t1=$(date +%s%N)
    overhead+=("$(ms "$t0" "$t1")")
done
echo "bare \`true\`:                      $(printf '%s\n' "${bare[@]}" | stats)"
echo "\`shipgate migrate -- true\`:        $(printf '%s\n' "${overhead[@]}" | stats)"

handoff=()
for i in $(seq "$runs"); do
    a="2-first$i"; b="2-second$i"
    backup "$a"; backup "$b"
    (cd "$app" && "$bin" --deployment-id "$a" migrate --shell -- "sleep 1; date +%s%N > $work/a.end" 2>/dev/null) &
    first=$!
    # The second starts while the first holds the lock, and waits for it.
    sleep 0.3
    (cd "$app" && "$bin" --deployment-id "$b" migrate --shell -- "date +%s%N > $work/b.start" 2>/dev/null)
    wait "$first"
    handoff+=("$(ms "$(cat "$work/a.end")" "$(cat "$work/b.start")")")
done
echo "lock hand-off (end of one command to start of the next): $(printf '%s\n' "${handoff[@]}" | stats)"

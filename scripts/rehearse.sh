#!/usr/bin/env bash
# Local rehearsal of the whole deployment pipeline — no GitHub, no cloud:
#
#   bash scripts/rehearse.sh                 # v1.0.0 → v2.0.0, every stage passes
#   bash scripts/rehearse.sh --break-canary  # v2.0.0's canary answers 500s: automatic rollback,
#                                            # database restored from the pre-deploy backup
#   bash scripts/rehearse.sh --break-api     # v2.0.0's health checks stay green but its users
#                                            # get 500s: only the metric gate can see it
#
# It builds shipgate and a small sample service, starts a throwaway PostgreSQL with sample
# data, runs the sample service at v1.0.0 with simulated users (40 requests/s), a throwaway
# Prometheus scraping it every second (the rollout's metric gate: the canary's error rate in real
# PromQL over that traffic), and runs `shipgate pipeline` on a local git
# repository tagged v2.0.0: validate → backup (file://) → migrate → rollout (canary 5% → 50% →
# 100%, stage hooks rewrite the service's routing) → smoke → record, then a restore drill of
# the backup and a short post-deploy watch. It then prints where the
# record, the summary and the logs are. Everything lives in one temp directory, kept for
# inspection; the processes are stopped on exit.
set -euo pipefail

variant=success
case "${1:-}" in
    "") ;;
    --break-canary) variant=broken ;;
    --break-api) variant=broken-api ;;
    *) echo "usage: $0 [--break-canary | --break-api]" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "$0")/.." && pwd)"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

# PostgreSQL's server binaries and Prometheus, from Debian's packages when missing.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    || ! { [ -x /usr/bin/prometheus ] || command -v prometheus >/dev/null 2>&1; }; then
    say "installing PostgreSQL and Prometheus (Debian packages)"
    bash "$root/.ci/install-deps.sh" --rehearsal
fi
prometheus_bin="$( [ -x /usr/bin/prometheus ] && echo /usr/bin/prometheus || command -v prometheus)"

say "building shipgate and the sample service"
(cd "$root" && cargo build --locked --quiet --bin shipgate --example sample_service)
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/debug/shipgate"
service_bin="$target/debug/examples/sample_service"

work="$(mktemp -d "${TMPDIR:-/tmp}/shipgate-rehearsal.XXXXXX")"
chmod 755 "$work"
pg="$work/postgres"
app="$work/app"
service_pid=""
prometheus_pid=""
pg_ctl_as=()

cleanup() {
    [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null || true
    [ -n "$prometheus_pid" ] && kill "$prometheus_pid" 2>/dev/null || true
    if [ -f "$pg/data/postmaster.pid" ]; then
        "${pg_ctl_as[@]}" "$pgbin/pg_ctl" -D "$pg/data" -m immediate stop >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# --- PostgreSQL --------------------------------------------------------------------------
say "starting a throwaway PostgreSQL"
pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
[ -x "$pgbin/initdb" ] || { echo "PostgreSQL server binaries not found; run: bash .ci/install-deps.sh" >&2; exit 2; }
export PATH="$pgbin:$PATH"
mkdir -p "$pg"
pg_password="rehearsal-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$pg_password" >"$pg/pwfile"
if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres "$pg"
    pg_ctl_as=(runuser -u postgres --)
fi
pg_port="$(free_port)"
"${pg_ctl_as[@]}" "$pgbin/initdb" -D "$pg/data" -U postgres --auth=scram-sha-256 \
    --pwfile="$pg/pwfile" -E UTF8 >"$pg/initdb.log"
rm -f "$pg/pwfile"
"${pg_ctl_as[@]}" "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/server.log" -w \
    -o "-p $pg_port -k $pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
# The migration tool of this sample reads the standard libpq variables; shipgate itself reads
# DATABASE_URL, masks it and passes the password to its tools only through their environment.
export PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=postgres PGPASSWORD="$pg_password" PGDATABASE=app
export DATABASE_URL="postgres://postgres:$pg_password@127.0.0.1:$pg_port/app"
psql -X -q -d postgres -c "CREATE DATABASE app"
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO customers (name) SELECT 'customer ' || n FROM generate_series(1, 5000) AS n;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers, total_cents int NOT NULL);
INSERT INTO orders (customer_id, total_cents) SELECT 1 + n % 5000, n * 7 % 10000 FROM generate_series(1, 20000) AS n;
CREATE TABLE schema_migrations (version varchar PRIMARY KEY);
INSERT INTO schema_migrations (version) VALUES ('001');
SQL
echo "PostgreSQL on 127.0.0.1:$pg_port, database app: 5000 customers, 20000 orders" >&2

# --- The application repository (v1.0.0 running, v2.0.0 to deploy) -------------------------
say "creating the application repository (tags v1.0.0, v2.0.0)"
mkdir -p "$app/deploy" "$app/db/migrations" "$app/.github/shipgate"
git() { command git -C "$app" -c user.name="Release Bot" -c user.email=bot@example.invalid \
    -c commit.gpgsign=false -c tag.gpgsign=false "$@"; }
git init --quiet --initial-branch=main
git commit --quiet --allow-empty -m "v1: the service"
git tag -a v1.0.0 -m "Release v1.0.0"

cat >"$app/db/migrate.sh" <<'SH'
#!/bin/sh
# The sample's migration tool (Rails style): applies db/migrations/NNN_*.sql in
# order, each once, in its own transaction, recorded in schema_migrations.
set -eu
cd "$(dirname "$0")"
for file in migrations/*.sql; do
    version=$(basename "$file" | cut -d_ -f1)
    if [ -n "$(psql -X -q -At -c "SELECT 1 FROM schema_migrations WHERE version = '$version'")" ]; then
        continue
    fi
    echo "applying $file"
    psql -X -q -v ON_ERROR_STOP=1 -1 -f "$file" \
        -c "INSERT INTO schema_migrations (version) VALUES ('$version')"
done
SH
cat >"$app/db/migrations/002_loyalty_points.sql" <<'SQL'
ALTER TABLE customers ADD COLUMN loyalty_points int NOT NULL DEFAULT 0;
UPDATE customers SET loyalty_points = id % 100;
SQL
cat >"$app/db/migrations/003_audit_log.sql" <<'SQL'
CREATE TABLE audit_log (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), event text NOT NULL);
SQL

cat >"$app/deploy/shift.sh" <<'SH'
#!/bin/sh
# Stage and rollback hook: rewrites the sample service's routing file. shipgate passes
# SHIPGATE_EVENT (stage | rollback), SHIPGATE_WEIGHT, SHIPGATE_VERSION, SHIPGATE_STAGE.
set -eu
control="$SAMPLE_CONTROL"
stable=$(sed -n 's/^stable=//p' "$control")
broken=$(sed -n 's/^broken=//p' "$control")
broken_api=$(sed -n 's/^broken-api=//p' "$control")
route() {
    printf 'stable=%s\ncanary=%s\nweight=%s\nbroken=%s\nbroken-api=%s\n' \
        "$1" "$2" "$3" "$broken" "$broken_api" >"$control.tmp"
}
if [ "$SHIPGATE_EVENT" = rollback ]; then
    [ -f "$control.previous-stable" ] && stable=$(cat "$control.previous-stable")
    route "$stable" "" 0
elif [ "$SHIPGATE_WEIGHT" -ge 100 ]; then
    printf '%s\n' "$stable" >"$control.previous-stable"
    route "$SHIPGATE_VERSION" "" 0
else
    route "$stable" "$SHIPGATE_VERSION" "$SHIPGATE_WEIGHT"
fi
mv "$control.tmp" "$control"
echo "routing: $(tr '\n' ' ' <"$control")"
SH
chmod +x "$app/deploy/shift.sh" "$app/db/migrate.sh"

# --- The sample service, running v1.0.0 -----------------------------------------------------
service_port="$(free_port)"
export SAMPLE_CONTROL="$work/service.control"
broken=""
broken_api=""
[ "$variant" = broken ] && broken="2.0.0"
[ "$variant" = broken-api ] && broken_api="2.0.0"
printf 'stable=1.0.0\ncanary=\nweight=0\nbroken=%s\nbroken-api=%s\n' "$broken" "$broken_api" \
    >"$SAMPLE_CONTROL"
"$service_bin" --port "$service_port" --control "$SAMPLE_CONTROL" --traffic 40 \
    2>"$work/service.log" &
service_pid=$!
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$service_port") 2>/dev/null && break
    sleep 0.1
done
say "sample service v1.0.0 on http://127.0.0.1:$service_port, 40 simulated users' requests/s"

# --- Prometheus, scraping the service every second --------------------------------------------
prometheus_port="$(free_port)"
mkdir -p "$work/prometheus"
cat >"$work/prometheus/prometheus.yml" <<YAML
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: sample-service
    static_configs: [{targets: ['127.0.0.1:$service_port']}]
YAML
"$prometheus_bin" --config.file="$work/prometheus/prometheus.yml" \
    --storage.tsdb.path="$work/prometheus/data" \
    --web.listen-address="127.0.0.1:$prometheus_port" >"$work/prometheus/prometheus.log" 2>&1 &
prometheus_pid=$!
# Ready once it has scraped the service (Prometheus applies a new target set after a few
# seconds): `up` is 1.
scraped() {
    local answer
    answer="$( (exec 3<>"/dev/tcp/127.0.0.1/$prometheus_port" \
        && printf 'GET /api/v1/query?query=up HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 \
        && cat <&3) 2>/dev/null)" || return 1
    [[ "$answer" == *'"1"]'* ]]
}
prometheus_ready=""
for _ in $(seq 300); do
    if scraped; then
        prometheus_ready=yes
        break
    fi
    sleep 0.1
done
[ -n "$prometheus_ready" ] || { tail -n 20 "$work/prometheus/prometheus.log" >&2; echo "Prometheus did not scrape the service within 30 s" >&2; exit 1; }
say "Prometheus on http://127.0.0.1:$prometheus_port"

cat >"$app/.github/shipgate/smoke.yml" <<YAML
base-url: http://127.0.0.1:$service_port
vars:
  password: {env: SAMPLE_PASSWORD, secret: true}
defaults:
  timeout: 5s
  ready: {timeout: 20s, interval: 500ms}
tests:
  - name: health
    url: /health
    expect: [health == healthy, "version == {{version}}"]
  - name: readiness
    url: /health/ready
    expect: [health == healthy]
  - name: liveness
    url: /health/live
    expect: [status == 200]
  - name: login
    url: /login
    method: POST
    json: {user: release-bot, password: "{{password}}"}
    expect: [status == 200]
    capture:
      token: \$.token
  - name: authenticated call
    url: /api/me
    headers: {Authorization: "Bearer {{token}}"}
    expect: [status == 200, json \$.user == release-bot]
  - name: database
    database: {url: "{{DATABASE_URL}}", query: "SELECT count(*) FROM customers"}
    expect: [value > 0]
YAML
export SAMPLE_PASSWORD="smoke-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

cat >"$app/shipgate.yml" <<YAML
environment: production
repository: example/sample-app
validate:
  default-branch: main
backup:
  destination: file://$work/backups/prod
migrate:
  command: [sh, db/migrate.sh]
rollout:
  endpoints: [http://127.0.0.1:$service_port/health]
  hook: [sh, deploy/shift.sh]
  rollback-hook: [sh, deploy/shift.sh]
  interval: 100ms
  min-samples: 10
  # The canary's users, not only its health checks: its share of 5xx answers in real PromQL
  # over what Prometheus scraped. Before the first two scrapes there is no data: wait for it.
  prometheus: {address: "http://127.0.0.1:$prometheus_port"}
  metrics:
    - name: canary-error-rate
      query: '(sum(rate(http_requests_total{version="{{version}}",status=~"5.."}[{{window}}])) or vector(0)) / sum(rate(http_requests_total{version="{{version}}"}[{{window}}]))'
      condition: "< 0.03"
      interval: 500ms
      no-data: wait
  stages:
    - {name: canary, weight: 5, duration: 6s}
    - {name: progressive, weight: 50, duration: 3s}
    - {name: full, weight: 100, duration: 3s}
smoke:
  suite: .github/shipgate/smoke.yml
  secrets: [DATABASE_URL]
pipeline:
  restore-database: true
YAML
git add -A
git commit --quiet -m "v2: loyalty points, audit log"
git tag -a v2.0.0 -m "Release v2.0.0"

# --- The pipeline -----------------------------------------------------------------------------
summary="$work/summary.md"
: >"$summary"
say "shipgate pipeline ($variant variant): deploying v2.0.0"
status=0
(
    cd "$app"
    # As a tag push would: the release comes from GITHUB_REF.
    env -u GITHUB_TOKEN -u GH_TOKEN -u GITHUB_ACTIONS GITHUB_REF=refs/tags/v2.0.0 \
        GITHUB_STEP_SUMMARY="$summary" "$bin" pipeline 2>&1
) || status=$?

id="$(cat "$app/.shipgate/latest" 2>/dev/null || true)"
state="$app/.shipgate/$id"

# --- The restore drill (seed 001 D6, seed 002 "weekly restore drill") ---------------------------
# After a successful deploy: the backup just taken, restored into a scratch database on the same
# server (never the app's database), RTO/RPO and parity against the row counts it recorded.
if [ "$status" -eq 0 ]; then
    say "shipgate drill: restoring the pre-deploy backup into a scratch database"
    drill_status=0
    drill_json="$(
        cd "$app"
        env -u GITHUB_ACTIONS \
            "INPUT_DRILL-DATABASE-URL=postgres://postgres:$pg_password@127.0.0.1:$pg_port/postgres" \
            "$bin" --format json drill
    )" || drill_status=$?
    rto="$(printf '%s' "$drill_json" | sed -n 's/.*"rto_seconds": *\([0-9.]*\).*/\1/p' | head -n1)"
    echo "restore drill: exit code $drill_status, RTO $(printf '%.2f' "${rto:-0}") s" >&2
    [ "$drill_status" -eq 0 ] || status=$drill_status
fi

# --- The post-deploy watch (seeds 000/004: "monitor for the first 60 minutes") ----------------
# Shortened to 6 s: the same probes and metric gate as the rollout, on the new version at 100%;
# a breach would roll back as the rollout does and mark the record.
if [ "$status" -eq 0 ]; then
    say "shipgate watch: 6 s of the rollout's probes and metric gate after the deploy"
    watch_status=0
    (
        cd "$app"
        env -u GITHUB_ACTIONS GITHUB_STEP_SUMMARY="$summary" "$bin" --deployment-id "$id" watch --for 6s --interval 1s 2>&1
    ) || watch_status=$?
    echo "post-deploy watch: exit code $watch_status" >&2
    [ "$watch_status" -eq 0 ] || status=$watch_status
fi

say "result: exit code $status"
if [ -f "$state/rollout.json" ]; then
    caught="$(sed -n 's/^  "failed_gate": *"\([^"]*\)".*/\1/p' "$state/rollout.json" | head -n1)"
    [ -n "$caught" ] && echo "the rollout's breach: gate $caught" >&2
fi
echo "service routing now: $(tr '\n' ' ' <"$SAMPLE_CONTROL")" >&2
echo "schema: $(psql -X -q -At -c "SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'customers'")" >&2
echo "migrations recorded: $(psql -X -q -At -c "SELECT string_agg(version, ', ' ORDER BY version) FROM schema_migrations")" >&2
echo >&2
echo "Deployment record:  $(ls "$state"/deployment-record-*.json 2>/dev/null || ls -d "$state"/artifacts/deployment-record-* 2>/dev/null || echo "(none)")" >&2
echo "Rollback procedure: $(ls -d "$state"/artifacts/rollback-instructions-* 2>/dev/null || echo "(none)")" >&2
echo "Failure report:     $(ls -d "$state"/artifacts/deployment-failure-report-* 2>/dev/null || echo "(none: the deployment succeeded)")" >&2
echo "Summary:            $summary" >&2
echo "Logs:               $(ls "$state"/*.log 2>/dev/null | tr '\n' ' ')" >&2
echo "State directory:    $state" >&2
exit "$status"

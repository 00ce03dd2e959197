//! The whole pipeline end to end, as a workflow runs it: each stage a separate `shipgate`
//! process (its own runner files, like a step), all sharing the state directory, against the
//! fake GitHub, a real PostgreSQL, a real S3 server (SeaweedFS) and a real sample service whose
//! routing the stage hooks rewrite. Then a search for every secret across every stream and file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use serde_json::{Value, json};

use crate::support::cli::Run;
use crate::support::postgres::PgCluster;
use crate::support::s3::S3Server;
use crate::support::{FakeGitHub, Shipgate, assert_no_secret, read_tree};

const V1: &str = "1111111111111111111111111111111111111111";
const V2: &str = "2222222222222222222222222222222222222222";
const TAG_OBJECT: &str = "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";
const RUN_ID: &str = "555000111";
const SMOKE_PASSWORD: &str = "smoke-pa$$-Wörd/+=";

/// The sample service (`examples/sample_service.rs`), killed when dropped.
struct Service {
    child: Child,
    port: u16,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample_service(control: &Path) -> Service {
    let exe = Path::new(env!("CARGO_BIN_EXE_shipgate"))
        .parent()
        .expect("target dir")
        .join("examples/sample_service");
    assert!(
        exe.exists(),
        "{} is missing: `cargo test` builds it (or `cargo build --example sample_service`)",
        exe.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let service = Service {
        child: Command::new(exe)
            .args(["--port", &port.to_string(), "--control"])
            .arg(control)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the sample service"),
        port,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return service;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(service);
    panic!("the sample service did not start");
}

struct World {
    gh: FakeGitHub,
    ws: tempfile::TempDir,
    db: String,
    bucket: String,
    _service: Service,
    runs: Vec<(String, Run)>,
}

impl World {
    fn new(broken_canary: bool) -> World {
        let pg = PgCluster::shared();
        let s3 = S3Server::shared();
        let gh = FakeGitHub::start();
        gh.repo("octo", "app", "main")
            .commit(V1, &[])
            .commit(V2, &[V1])
            .branch("main", V2)
            .lightweight_tag("v1.0.0", V1)
            .annotated_tag("v2.0.0", TAG_OBJECT, V2, Some((true, "valid")));
        gh.deployment(
            "production",
            "v1.0.0",
            V1,
            json!({"version": "v1.0.0"}),
            &["in_progress", "success"],
        );
        gh.check(V2, "build", "success");
        gh.check(V2, "test", "success");

        let db = pg.create_database("e2e");
        pg.psql(
            &db,
            "CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL);
             INSERT INTO customers (name) SELECT 'c' || n FROM generate_series(1, 2000) n;
             CREATE TABLE schema_migrations (version varchar PRIMARY KEY);
             INSERT INTO schema_migrations VALUES ('1');",
        );
        let bucket = s3.create_bucket();

        let ws = tempfile::tempdir().expect("workspace");
        let root = ws.path();
        let control = root.join("service.control");
        std::fs::write(
            &control,
            format!(
                "stable=1.0.0\ncanary=\nweight=0\nbroken={}\n",
                if broken_canary { "2.0.0" } else { "" }
            ),
        )
        .expect("control file");
        let service = sample_service(&control);

        std::fs::create_dir_all(root.join("deploy")).expect("deploy dir");
        std::fs::write(
            root.join("deploy/shift.sh"),
            r#"#!/bin/sh
set -eu
control="$SAMPLE_CONTROL"
stable=$(sed -n 's/^stable=//p' "$control")
broken=$(sed -n 's/^broken=//p' "$control")
echo "$SHIPGATE_EVENT $SHIPGATE_STAGE $SHIPGATE_WEIGHT $SHIPGATE_VERSION $SHIPGATE_DEPLOYMENT_ID" >> hooks.log
if [ "$SHIPGATE_EVENT" = rollback ]; then
    printf 'stable=%s\ncanary=\nweight=0\nbroken=%s\n' "$stable" "$broken" > "$control.tmp"
elif [ "$SHIPGATE_WEIGHT" -ge 100 ]; then
    printf 'stable=%s\ncanary=\nweight=0\nbroken=%s\n' "$SHIPGATE_VERSION" "$broken" > "$control.tmp"
else
    printf 'stable=%s\ncanary=%s\nweight=%s\nbroken=%s\n' "$stable" "$SHIPGATE_VERSION" "$SHIPGATE_WEIGHT" "$broken" > "$control.tmp"
fi
mv "$control.tmp" "$control"
"#,
        )
        .expect("hook");
        std::fs::write(
            root.join("migrate.sql"),
            "ALTER TABLE customers ADD COLUMN loyalty_points int NOT NULL DEFAULT 0;
             INSERT INTO schema_migrations VALUES ('2');
             CREATE TABLE audit_log (id bigserial PRIMARY KEY, event text NOT NULL);
             INSERT INTO schema_migrations VALUES ('3');",
        )
        .expect("migration");
        std::fs::write(
            root.join("smoke.yml"),
            format!(
                r#"base-url: http://127.0.0.1:{port}
vars:
  password: {{env: SMOKE_PASSWORD, secret: true}}
defaults:
  timeout: 5s
tests:
  - name: health
    url: /health
    expect: [health == healthy, "version == {{{{version}}}}"]
  - name: login
    url: /login
    method: POST
    json: {{user: release-bot, password: "{{{{password}}}}"}}
    expect: [status == 200]
    capture:
      token: $.token
  - name: authenticated call
    url: /api/me
    headers: {{Authorization: "Bearer {{{{token}}}}"}}
    expect: [status == 200, json $.user == release-bot]
  - name: database
    database: {{url: "{{{{DATABASE_URL}}}}", query: "SELECT count(*) FROM customers"}}
    expect: [value > 0]
"#,
                port = service.port
            ),
        )
        .expect("suite");
        std::fs::write(
            root.join("shipgate.yml"),
            format!(
                r#"environment: production
backup:
  destination: s3://{bucket}/prod
  s3-endpoint-url: {endpoint}
  s3-path-style: true
  s3-region: {region}
migrate:
  command: [psql, -X, -q, -v, ON_ERROR_STOP=1, "-1", -f, migrate.sql]
rollout:
  endpoints: [http://127.0.0.1:{port}/health]
  hook: [sh, deploy/shift.sh]
  rollback-hook: [sh, deploy/shift.sh]
  interval: 50ms
  min-samples: 10
  stages:
    - {{name: canary, weight: 5, duration: 2s}}
    - {{name: full, weight: 100, duration: 1s}}
smoke:
  suite: smoke.yml
  secrets: [DATABASE_URL]
"#,
                endpoint = s3.endpoint(),
                region = s3.region(),
                port = service.port,
            ),
        )
        .expect("config");
        World {
            gh,
            ws,
            db,
            bucket,
            _service: service,
            runs: Vec::new(),
        }
    }

    fn database_url(&self) -> String {
        PgCluster::shared().url(&self.db)
    }

    /// One workflow step: `shipgate <args>` with the job's environment and its own runner files.
    fn step(&mut self, args: &[&str]) -> &Run {
        let pg = PgCluster::shared();
        let mut cmd = Shipgate::new(self.ws.path());
        cmd.actions()
            .env("GITHUB_API_URL", self.gh.url())
            .env("GITHUB_REPOSITORY", "octo/app")
            .env("GITHUB_RUN_ID", RUN_ID)
            .env("GITHUB_RUN_ATTEMPT", "1")
            .env("GITHUB_REF", "refs/tags/v2.0.0")
            .env("GITHUB_SHA", V2)
            .env("GITHUB_SERVER_URL", "https://github.example")
            .env("GITHUB_ACTOR", "release-engineer")
            .env("SAMPLE_CONTROL", self.ws.path().join("service.control"))
            .env("SMOKE_PASSWORD", SMOKE_PASSWORD)
            .env("DATABASE_URL", self.database_url())
            // The migration tool of this test reads libpq's variables.
            .env("PGHOST", pg.host())
            .env("PGPORT", pg.port().to_string())
            .env("PGUSER", pg.user())
            .env("PGPASSWORD", pg.password())
            .env("PGDATABASE", &self.db)
            .env("PATH", path_with(PgCluster::bin_dir()))
            .input("github-token", &self.gh.token());
        for (key, value) in S3Server::shared().aws_env() {
            cmd.env(key, value);
        }
        let run = cmd.args(args).run();
        self.runs.push((args.join(" "), run));
        &self.runs.last().expect("run").1
    }

    fn state(&self) -> PathBuf {
        self.ws
            .path()
            .join(".shipgate")
            .join(format!("{RUN_ID}-{}", &V2[..7]))
    }

    fn record(&self) -> Value {
        let path = self
            .state()
            .join(format!("deployment-record-{RUN_ID}-{}.json", &V2[..7]));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("record JSON")
    }

    /// Every secret of the run, in every stream, runner file, state file and staged artifact.
    fn assert_no_secret_anywhere(&self) {
        let pg = PgCluster::shared();
        let s3 = S3Server::shared();
        let token = self.gh.token();
        let url = self.database_url();
        let secrets = [
            pg.password(),
            url.as_str(),
            token.as_str(),
            s3.secret_key(),
            SMOKE_PASSWORD,
            "sample-session-token-7f3a",
        ];
        let files = read_tree(self.ws.path());
        for secret in secrets {
            let streams = self
                .runs
                .iter()
                .flat_map(|(name, run)| {
                    run.everything()
                        .into_iter()
                        .map(move |(place, text)| (format!("`{name}` {place}"), text))
                })
                .collect::<Vec<_>>();
            assert_no_secret(
                secret,
                streams.iter().map(|(n, t)| (n.clone(), t.as_str())).chain(
                    files
                        .iter()
                        .filter(|(p, _)| !p.ends_with("shipgate.yml") && !p.ends_with("smoke.yml"))
                        .map(|(p, t)| (p.clone(), t.as_str())),
                ),
            );
        }
    }
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn the_pipeline_ships_v2_and_records_it() {
    let mut world = World::new(false);
    let validate = world.step(&["validate"]);
    validate.expect_code(0);
    assert_eq!(
        validate.outputs["deployment-id"],
        format!("{RUN_ID}-2222222")
    );
    world.step(&["gate", "--interval", "100ms"]).expect_code(0);
    let backup = world.step(&["backup"]);
    backup.expect_code(0);
    let backup_key = format!("prod/backup-{RUN_ID}-2222222.sql.gz");
    let migrate = world.step(&["migrate"]);
    migrate.expect_code(0);
    assert_eq!(migrate.outputs["migrations-applied"], "2");
    world.step(&["rollout"]).expect_code(0);
    world.step(&["smoke"]).expect_code(0);
    let record = world.step(&["record", "--github-deployment"]);
    record.expect_code(0);

    // What shipped: v2 serves all traffic, the migrations are in, the backup is in S3.
    let control =
        std::fs::read_to_string(world.ws.path().join("service.control")).expect("control");
    assert!(control.starts_with("stable=2.0.0\n"), "{control}");
    let keys = S3Server::shared().list_keys(&world.bucket);
    assert!(keys.contains(&backup_key), "{keys:?}");
    let hooks = std::fs::read_to_string(world.ws.path().join("hooks.log")).expect("hooks.log");
    assert_eq!(
        hooks
            .lines()
            .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        ["stage canary 5", "stage full 100"],
        "{hooks}"
    );

    // The record carries every seed field, from every stage.
    let record = world.record();
    assert_eq!(record["status"], "success");
    assert_eq!(record["version"], "v2.0.0");
    assert_eq!(record["git_sha"], V2);
    assert_eq!(record["migrations_applied"], 2);
    assert_eq!(
        record["database_backup"]["location"],
        format!("s3://{}/{backup_key}", world.bucket)
    );
    assert_eq!(record["rollback_available"], true);
    assert_eq!(record["rollback_window_minutes"], 60);
    let stages: Vec<&str> = record["rollout_stages"]
        .as_array()
        .expect("rollout stages")
        .iter()
        .filter_map(|s| s["stage"].as_str())
        .collect();
    assert_eq!(stages, ["canary", "full"]);
    // The deployment lease: taken by the backup step, kept by the rollout step, released by
    // the record step; the environment is free again.
    let lease = &record["lease"];
    assert_eq!(lease["taken_by"], "backup", "{record:#}");
    assert_eq!(lease["status"], "released");
    assert_eq!(
        lease["holder"]["run_url"],
        format!("https://github.example/octo/app/actions/runs/{RUN_ID}")
    );
    assert_eq!(lease["holder"]["actor"], "release-engineer");
    assert!(!keys.contains(&"prod/lease-production.json".to_string()));
    assert!(
        !S3Server::shared()
            .list_keys(&world.bucket)
            .contains(&"prod/lease-production.json".to_string()),
        "released"
    );
    // The GitHub deployment is for the exact commit, and ended in success.
    let created = world.gh.created_deployments();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["ref"], V2);
    assert_eq!(created[0]["auto_merge"], false);

    world.assert_no_secret_anywhere();
}

#[test]
fn a_broken_canary_is_rolled_back_and_reported() {
    let mut world = World::new(true);
    world.step(&["validate"]).expect_code(0);
    world.step(&["backup"]).expect_code(0);
    world.step(&["migrate"]).expect_code(0);
    let rollout = world.step(&["rollout"]);
    rollout.expect_code(1);
    assert_eq!(rollout.outputs["result"], "rolled_back");
    assert_eq!(rollout.outputs["failed-stage"], "canary");
    assert!(
        rollout.outputs["reason"].contains("success rate"),
        "{}",
        rollout.outputs["reason"]
    );
    // Like the failure handler job: the record and the failure report, then the database restore.
    let record = world.step(&["record"]);
    record.expect_code(0);
    let backup_id = format!("{RUN_ID}-2222222");
    world
        .step(&["restore", "--backup-id", &backup_id, "--yes"])
        .expect_code(0);

    let control =
        std::fs::read_to_string(world.ws.path().join("service.control")).expect("control");
    assert!(
        control.starts_with("stable=1.0.0\ncanary=\nweight=0"),
        "{control}"
    );
    let columns = PgCluster::shared().psql(
        &world.db,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'loyalty_points'",
    );
    assert_eq!(
        columns.trim(),
        "0",
        "the restore brought back the pre-migration schema"
    );

    let record = world.record();
    assert_eq!(record["status"], "rolled_back");
    let report = read_tree(&world.state())
        .into_iter()
        .find(|(p, _)| p.contains("deployment-failure-report"))
        .expect("a failure report");
    assert!(report.1.contains("canary"), "{}", report.1);
    world.assert_no_secret_anywhere();
}

#[test]
fn shipgate_pipeline_runs_the_same_plan_in_one_step() {
    let mut world = World::new(true);
    let run = world.step(&[
        "pipeline",
        "--stages",
        "validate,gate,backup,migrate,rollout,smoke,record",
        "--restore-database",
    ]);
    run.expect_code(1);
    assert_eq!(run.outputs["result"], "fail");
    let summary = run.summary.clone();
    let pipeline: Value = serde_json::from_str(
        &std::fs::read_to_string(world.state().join("pipeline.json")).expect("pipeline.json"),
    )
    .expect("JSON");
    assert_eq!(pipeline["failed_stage"], "rollout");
    assert_eq!(pipeline["rolled_back"], true);
    let ran: Vec<&str> = pipeline["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["stage"].as_str())
        .collect();
    assert_eq!(
        ran,
        [
            "validate", "gate", "backup", "migrate", "rollout", "record", "restore"
        ]
    );
    assert_eq!(world.record()["status"], "rolled_back");
    let columns = PgCluster::shared().psql(
        &world.db,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'loyalty_points'",
    );
    assert_eq!(
        columns.trim(),
        "0",
        "the pipeline restored the pre-deploy database"
    );
    // The restore after the record still ran under the lease (the record kept it), and the
    // pipeline released it at its end.
    assert_eq!(world.record()["lease"]["status"], "held");
    let lease: Value = serde_json::from_str(
        &std::fs::read_to_string(world.state().join("lease.json")).expect("lease.json"),
    )
    .expect("JSON");
    assert_eq!(lease["status"], "released");
    assert!(
        !S3Server::shared()
            .list_keys(&world.bucket)
            .contains(&"prod/lease-production.json".to_string())
    );
    assert!(
        summary.contains("Pipeline failed at `rollout` and was rolled back"),
        "{summary}"
    );
    world.assert_no_secret_anywhere();
}

#[test]
fn a_failed_smoke_test_after_the_rollout_rolls_back_and_restores() {
    let mut world = World::new(false);
    // v2 rolls out fine, but a smoke test says no.
    let suite = world.ws.path().join("smoke.yml");
    let text = std::fs::read_to_string(&suite).expect("suite");
    std::fs::write(
        &suite,
        text.replace("expect: [value > 0]", "expect: [value > 1000000]"),
    )
    .expect("suite");
    // The config lives where a team with several environments keeps it: every stage, and the
    // restore that the rollback runs, must read it (the destination of the backup is only there).
    std::fs::rename(
        world.ws.path().join("shipgate.yml"),
        world.ws.path().join("deploy/production.yml"),
    )
    .expect("move the config");
    let run = world.step(&[
        "--config",
        "deploy/production.yml",
        "pipeline",
        "--stages",
        "validate,backup,migrate,rollout,smoke,record",
        "--restore-database",
    ]);
    run.expect_code(1);
    let ran: Vec<String> = serde_json::from_str::<Value>(
        &std::fs::read_to_string(world.state().join("pipeline.json")).expect("pipeline.json"),
    )
    .expect("JSON")["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["stage"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        ran,
        [
            "validate", "backup", "migrate", "rollout", "smoke", "record", "rollback"
        ]
    );
    // The rollback hook ran with the rollback event, and the database is the pre-deploy one.
    let hooks = std::fs::read_to_string(world.ws.path().join("hooks.log")).expect("hooks.log");
    assert!(
        hooks.lines().any(|l| l.starts_with("rollback rollback 0")),
        "{hooks}"
    );
    let columns = PgCluster::shared().psql(
        &world.db,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'loyalty_points'",
    );
    assert_eq!(
        columns.trim(),
        "0",
        "the rollback restored the pre-deploy database"
    );
    assert_eq!(world.record()["status"], "rolled_back");
    world.assert_no_secret_anywhere();
}

//! `shipgate drill` end to end: a real PostgreSQL cluster and a real S3 server (SeaweedFS) on
//! loopback; backups taken by `shipgate backup`, restored into scratch databases that must be
//! gone afterwards.

use std::io::{Read as _, Write as _};

use serde_json::Value;

use crate::backup::{Case, pg, read_json, s3, seeded, sha256_hex};
use crate::support::{assert_no_secret, read_tree};

/// A Rails-style migration history next to the seeded tables.
const HISTORY: &str = "CREATE TABLE schema_migrations (version varchar PRIMARY KEY); \
    INSERT INTO schema_migrations VALUES ('20240101000000'), ('20240202000000');";

/// The drill scratch databases on the cluster. Drill tests hold [`one_at_a_time`], so another
/// test's scratch database never shows up here.
fn databases() -> Vec<String> {
    pg().psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE datname LIKE 'shipgate\\_drill\\_%' ORDER BY 1",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Drill tests run one at a time (the others keep running beside them).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A seeded database with a migration history, backed up to a new bucket: (database,
/// destination, bucket).
fn backed_up(case: &Case, prefix: &str) -> (String, String, String) {
    let source = seeded(prefix);
    pg().psql(&source, HISTORY);
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/prod");
    case.shipgate(&source)
        .args(["backup", "--destination", &destination])
        .run()
        .expect_code(0);
    (source, destination, bucket)
}

fn drill_json(case: &Case) -> Value {
    read_json(&case.state().join("drill.json"))
}

fn verdict(drill: &Value, name: &str) -> (String, String) {
    let check = drill["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {drill:#}"));
    (
        check["verdict"].as_str().unwrap_or("").to_string(),
        check["detail"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn a_drill_of_a_multi_table_backup_passes_and_reports_rto_rpo_and_parity() {
    let _serial = one_at_a_time();
    let case = Case::new();
    let (source, destination, bucket) = backed_up(&case, "drill_ok");
    // The sidecar recorded the counts and the schema version in the dump's snapshot.
    let sidecar: Value = s3().get_json(&bucket, &format!("prod/backup-{}.json", case.id));
    assert_eq!(sidecar["row_counts"]["public.accounts"], 5000);
    assert_eq!(sidecar["row_counts"]["public.schema_migrations"], 2);
    assert_eq!(
        sidecar["migration_versions"][0]["version"],
        "20240202000000"
    );

    let suite = case.path().join("drill-smoke.yml");
    std::fs::write(
        &suite,
        "vars:\n  db:\n    env: SHIPGATE_DRILL_DATABASE_URL\n    secret: true\ntests:\n  - name: accounts restored\n    database:\n      url: \"{{db}}\"\n      query: SELECT count(*) FROM accounts\n    expect:\n      - value == 5000\n",
    )
    .expect("write suite");
    let before = databases();
    let run = case
        .shipgate(&source)
        .actions()
        .input("drill-database-url", &pg().url("postgres"))
        .args([
            "drill",
            "--destination",
            &destination,
            "--smoke-suite",
            &suite.display().to_string(),
        ])
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["result"], "pass");
    assert_eq!(run.outputs["backup-id"], format!("backup-{}", case.id));
    // The drill server here is production's own cluster (another database on it): allowed, said.
    assert!(
        run.stderr
            .contains("is on the same PostgreSQL cluster as `database-url`"),
        "{}",
        run.stderr
    );
    let rto: f64 = run.outputs["rto-seconds"].parse().expect("rto-seconds");
    let rpo: f64 = run.outputs["rpo-seconds"].parse().expect("rpo-seconds");
    assert!(rto > 0.0, "{rto}");
    assert!(rpo >= 0.0, "{rpo}");
    eprintln!("drill of the seeded database: RTO {rto}s, RPO {rpo}s");
    let scratch = run.outputs["scratch-database"].clone();
    assert!(scratch.starts_with("shipgate_drill_"), "{scratch}");
    assert_eq!(databases(), before, "the scratch database is gone");
    assert!(!databases().contains(&scratch));

    let drill = drill_json(&case);
    assert_eq!(drill["result"], "pass");
    assert_eq!(drill["scratch_dropped"], true);
    assert_eq!(drill["row_counts"]["public.accounts"], 5000);
    for name in [
        "rto",
        "rpo",
        "row-counts",
        "schema-version",
        "indexes",
        "constraints",
        "smoke",
    ] {
        assert_eq!(verdict(&drill, name).0, "pass", "{name}: {drill:#}");
    }
    assert!(
        verdict(&drill, "schema-version")
            .1
            .contains("`public.schema_migrations` (rails) at `20240202000000`"),
        "{drill:#}"
    );
    assert!(
        verdict(&drill, "smoke").1.contains("1 of 1 tests passed"),
        "{drill:#}"
    );
    assert!(
        run.summary.contains("Restore drill of `backup-"),
        "{}",
        run.summary
    );
    assert!(
        run.summary.contains("| `rto` | ✅ pass |"),
        "{}",
        run.summary
    );
    // The report, as an artifact staged for upload.
    let staged = case
        .state()
        .join("artifacts")
        .join(format!("drill-report-{}", case.id));
    for ext in ["md", "json"] {
        assert!(
            staged
                .join(format!("drill-report-{}.{ext}", case.id))
                .is_file(),
            "{}",
            staged.display()
        );
    }

    let mut places = run.everything();
    places.extend(read_tree(case.path()));
    assert_no_secret(
        pg().password(),
        places.iter().map(|(n, t)| (n.clone(), t.as_str())),
    );
}

/// Rewrites the dump so that `rows` rows of `public.accounts` are gone, with a sidecar whose
/// size and SHA-256 match the new object: only the row counts can tell.
fn remove_rows(bucket: &str, id: &str, rows: usize) {
    let key = format!("prod/backup-{id}.sql.gz");
    let mut sql = String::new();
    flate2::read::MultiGzDecoder::new(&s3().get(bucket, &key).expect("dump")[..])
        .read_to_string(&mut sql)
        .expect("gunzip");
    let mut out = Vec::new();
    let mut skipping = 0;
    for line in sql.lines() {
        if skipping > 0 {
            skipping -= 1;
            continue;
        }
        out.push(line);
        if line.starts_with("COPY public.accounts ") {
            skipping = rows;
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all((out.join("\n") + "\n").as_bytes())
        .expect("gzip");
    let object = gz.finish().expect("gzip");
    let sidecar_key = format!("prod/backup-{id}.json");
    let mut sidecar: Value = s3().get_json(bucket, &sidecar_key);
    sidecar["sha256"] = Value::from(sha256_hex(&object));
    sidecar["size"] = Value::from(object.len());
    s3().put(bucket, &key, &object);
    s3().put(bucket, &sidecar_key, sidecar.to_string().as_bytes());
}

#[test]
fn a_tampered_table_fails_the_drill_naming_the_table_and_both_counts() {
    let _serial = one_at_a_time();
    let case = Case::new();
    let (source, destination, bucket) = backed_up(&case, "drill_tampered");
    remove_rows(&bucket, &case.id, 7);
    let before = databases();
    let run = case
        .shipgate(&source)
        .actions()
        .input("drill-database-url", &pg().url("postgres"))
        .args(["drill", "--destination", &destination])
        .run();
    run.expect_code(1);
    assert_eq!(run.outputs["result"], "fail");
    let expected = "`public.accounts` has 4993 rows, expected 5000";
    assert!(run.visible_stderr().contains(expected), "{}", run.stderr);
    assert!(run.summary.contains(expected), "{}", run.summary);
    let drill = drill_json(&case);
    assert_eq!(drill["result"], "fail");
    assert_eq!(verdict(&drill, "row-counts").0, "fail");
    assert!(
        drill["reason"].as_str().unwrap_or("").contains(expected),
        "{drill:#}"
    );
    // The other checks still ran and passed: the SHA-256 matched the rewritten sidecar.
    assert_eq!(verdict(&drill, "schema-version").0, "pass");
    assert_eq!(
        databases(),
        before,
        "the scratch database is gone after a failed drill"
    );
}

#[test]
fn the_production_database_as_drill_server_is_refused_before_anything_runs() {
    let _serial = one_at_a_time();
    let case = Case::new();
    let source = seeded("drill_refused");
    let before = databases();
    // The same database through another name for the local host, and through a name no URL
    // comparison can see through (a DNS alias with libpq's `hostaddr`): the servers' own system
    // identifiers tell.
    let same = pg().url(&source).replace("127.0.0.1", "localhost");
    let alias = format!(
        "{}?hostaddr=127.0.0.1&sslmode=disable",
        pg().url(&source).replace("127.0.0.1", "prod-db.example")
    );
    for url in [pg().url(&source), same, alias] {
        let run = case
            .shipgate(&source)
            .actions()
            .input("drill-database-url", &url)
            .args(["drill", "--destination", "file:///nonexistent/backups"])
            .run();
        run.expect_code(2);
        assert!(
            run.visible_stderr()
                .contains("names the same database as `database-url`"),
            "{}",
            run.stderr
        );
        assert_eq!(run.outputs["result"], "fail");
    }
    assert_eq!(databases(), before, "no scratch database was created");
    assert!(
        !case.state().exists(),
        "nothing was written: {:?}",
        read_tree(case.path())
    );
}

#[test]
fn a_backup_older_than_max_rpo_fails_naming_its_age() {
    let _serial = one_at_a_time();
    let case = Case::new();
    let (source, destination, _) = backed_up(&case, "drill_rpo");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let run = case
        .shipgate(&source)
        .actions()
        .input("drill-database-url", &pg().url("postgres"))
        .args(["drill", "--destination", &destination, "--max-rpo", "1s"])
        .run();
    run.expect_code(1);
    let drill = drill_json(&case);
    let (rpo, detail) = verdict(&drill, "rpo");
    assert_eq!(rpo, "fail", "{drill:#}");
    assert!(
        detail.contains(&format!("the backup `backup-{}` is ", case.id))
            && detail.contains("s old (taken ")
            && detail.contains("over the target of 1s"),
        "{detail}"
    );
    assert!(
        run.visible_stderr().contains("over the target of 1s"),
        "{}",
        run.stderr
    );
    // The restore itself was fine.
    assert_eq!(verdict(&drill, "row-counts").0, "pass");
    assert_eq!(verdict(&drill, "rto").0, "pass");
}

#[test]
fn keep_leaves_the_scratch_database_and_says_its_name() {
    let _serial = one_at_a_time();
    let case = Case::new();
    let (source, destination, _) = backed_up(&case, "drill_keep");
    let before = databases();
    let run = case
        .shipgate(&source)
        .actions()
        .input("drill-database-url", &pg().url("postgres"))
        .args(["drill", "--destination", &destination, "--keep"])
        .run();
    run.expect_code(0);
    let scratch = run.outputs["scratch-database"].clone();
    assert!(
        run.stderr.contains(&format!(
            "keeping the scratch database `{scratch}` (`--keep`)"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(drill_json(&case)["scratch_dropped"], false);
    // It is there, restored: the rows can be looked at.
    assert_eq!(
        pg().psql(&scratch, "SELECT count(*) FROM accounts").trim(),
        "5000"
    );
    let mut after = databases();
    after.retain(|d| d != &scratch);
    assert_eq!(after, before, "only the kept one is new");
    pg().psql("postgres", &format!("DROP DATABASE \"{scratch}\""));
}

#[test]
fn sigterm_mid_drill_drops_the_scratch_database_and_exits_4() {
    let _serial = one_at_a_time();
    let case = Case::new();
    let (source, destination, _) = backed_up(&case, "drill_sigterm");
    // A smoke test that holds a session on the scratch database until it is stopped.
    let suite = case.path().join("slow-smoke.yml");
    std::fs::write(
        &suite,
        "vars:\n  db:\n    env: SHIPGATE_DRILL_DATABASE_URL\n    secret: true\ntests:\n  - name: a slow query\n    timeout: 5m\n    database:\n      url: \"{{db}}\"\n      query: SELECT 1 FROM pg_sleep(300)\n    expect:\n      - value == 1\n",
    )
    .expect("write suite");
    let before = databases();
    let mut running = case
        .shipgate(&source)
        .actions()
        .input("drill-database-url", &pg().url("postgres"))
        .args([
            "drill",
            "--destination",
            &destination,
            "--smoke-suite",
            &suite.display().to_string(),
        ])
        .spawn();
    // Wait until the smoke suite's session sleeps on the scratch database.
    let sleeping = || {
        pg().psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'shipgate\\_drill\\_%' \
             AND query LIKE '%pg_sleep(300)%'",
        )
        .trim()
            == "1"
    };
    let waited = std::time::Instant::now();
    while !sleeping() {
        assert!(
            !running.exited(),
            "the drill ended early:\n{}",
            running.stderr()
        );
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(120),
            "the smoke query never started:\n{}",
            running.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let run = running.wait();
    run.expect_code(4);
    assert!(
        run.stderr.contains("cancelled by SIGTERM"),
        "{}",
        run.stderr
    );
    assert_eq!(databases(), before, "the scratch database is gone");
    let drill = drill_json(&case);
    assert_eq!(drill["result"], "fail", "{drill:#}");
    assert_eq!(drill["scratch_dropped"], true, "{drill:#}");
}

#[test]
fn a_drill_of_a_directory_backup_restores_it_with_parallel_jobs() {
    let _serial = one_at_a_time();
    let case = Case::new();
    let source = seeded("drill_dir");
    pg().psql(&source, HISTORY);
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/prod");
    case.backup(
        &source,
        &destination,
        &["--dump-format", "directory", "--jobs", "2"],
    )
    .expect_code(0);
    let before = databases();
    let run = case
        .shipgate(&source)
        .input("drill-database-url", &pg().url("postgres"))
        .input("jobs", "2")
        .args(["drill", "--destination", &destination])
        .run();
    run.expect_code(0);
    let drill = drill_json(&case);
    assert_eq!(drill["result"], "pass", "{drill:#}");
    for name in ["row-counts", "schema-version"] {
        assert_eq!(verdict(&drill, name).0, "pass", "{name}: {drill:#}");
    }
    assert!(run.stderr.contains("not one transaction"), "{}", run.stderr);
    assert_eq!(databases(), before, "the scratch database is gone");
}

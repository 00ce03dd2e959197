//! `shipgate backup` and `shipgate restore` end to end: the real binary, a real PostgreSQL
//! cluster and a real S3 server (SeaweedFS) on loopback.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest as _;

use crate::support::postgres::PgCluster;
use crate::support::s3::S3Server;
use crate::support::{Run, Shipgate, assert_no_secret, read_tree};

/// A source database with awkward names, types and contents: NULLs, newlines, unicode,
/// bytea, jsonb, a partitioned table, an empty table, a sequence, a view.
const SEED: &str = r#"
CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    balance numeric(12,2),
    created timestamptz NOT NULL DEFAULT '2024-01-01T00:00:00Z',
    meta jsonb
);
INSERT INTO accounts (email, balance, meta)
SELECT 'user' || g || '@example.com', g * 1.25, jsonb_build_object('n', g, 'tags', ARRAY['a', 'b'])
FROM generate_series(1, 5000) g;
SELECT setval('accounts_id_seq', 9000);
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Weird ""Name""" (k text, v bytea, n int);
INSERT INTO "Odd Schema"."Weird ""Name""" VALUES
    ('line one
line two', '\x00ff10'::bytea, NULL),
    ('ünïcødé ✓ ''quoted'' \back', NULL, 2),
    (NULL, ''::bytea, 3),
    ('::error::not a command', '\x2d2d'::bytea, 4);
CREATE TABLE empty_one (x int);
CREATE TABLE events (id int NOT NULL, payload text) PARTITION BY RANGE (id);
CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (1000);
CREATE TABLE events_high PARTITION OF events FOR VALUES FROM (1000) TO (100000);
INSERT INTO events SELECT g, repeat('x', g % 50) FROM generate_series(1, 3000) g;
CREATE VIEW rich AS SELECT email FROM accounts WHERE balance > 6000;
CREATE INDEX accounts_created ON accounts (created);
"#;

/// These tests are about the backup itself, and run many backups of one environment side by
/// side: without the deployment lease (tested in `lease.rs`), which would let only one of them
/// run at a time.
pub(crate) const LEASE: &str = "false";

pub(crate) fn pg() -> &'static PgCluster {
    PgCluster::shared()
}

pub(crate) fn s3() -> &'static S3Server {
    S3Server::shared()
}

/// A seeded source database.
pub(crate) fn seeded(prefix: &str) -> String {
    let db = pg().create_database(prefix);
    pg().psql(&db, SEED);
    db
}

/// A database big enough (about 210 MB as SQL, 90 MB gzipped) that its upload is still in
/// flight when a test acts on it; created once per test process.
pub(crate) fn big_database() -> &'static str {
    static BIG: OnceLock<String> = OnceLock::new();
    BIG.get_or_init(|| {
        let db = pg().create_database("big");
        pg().psql(
            &db,
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, md5((g + 1)::text) AS b, \
             md5((g * 7)::text) AS c FROM generate_series(1, 2000000) g",
        );
        db
    })
}

/// Every user table: (row count, md5 of its rows in a stable order).
pub(crate) fn contents(db: &str) -> BTreeMap<String, (u64, String)> {
    let tables = pg().psql(
        db,
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    );
    tables
        .lines()
        .map(|table| {
            let row = pg().psql(
                db,
                &format!(
                    "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '-') FROM {table} t"
                ),
            );
            let (count, md5) = row.split_once(' ').expect("count and md5");
            (
                table.to_string(),
                (count.parse().expect("count"), md5.to_string()),
            )
        })
        .collect()
}

/// A workdir and a deployment id for one test.
pub(crate) struct Case {
    dir: tempfile::TempDir,
    pub(crate) id: String,
}

impl Case {
    pub(crate) fn new() -> Case {
        let dir = tempfile::tempdir().expect("workdir");
        let id = format!("{}-{}", 1000 + next(), "abcdef0");
        Case { dir, id }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.path().join(".shipgate").join(&self.id)
    }

    pub(crate) fn backup_json(&self) -> Value {
        read_json(&self.state().join("backup.json"))
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.state().join(format!("backup-logs-{}.log", self.id)))
            .unwrap_or_default()
    }

    /// `shipgate` in this workdir with S3 credentials, the database URL and the deployment id.
    pub(crate) fn shipgate(&self, db: &str) -> Shipgate {
        let mut cmd = Shipgate::new(self.path());
        for (key, value) in s3().aws_env() {
            cmd.env(key, value);
        }
        cmd.input("database-url", &pg().url(db))
            .input("deployment-id", &self.id)
            .input("lease", LEASE);
        cmd
    }

    /// `shipgate backup --destination DESTINATION EXTRA…` of `source`.
    pub(crate) fn backup(&self, source: &str, destination: &str, extra: &[&str]) -> Run {
        self.shipgate(source)
            .args(["backup", "--destination", destination])
            .args(extra)
            .run()
    }

    /// `shipgate --format json backup VERB --destination DESTINATION EXTRA…` (`list`, `prune`)
    /// with `source` as the database.
    pub(crate) fn backups(
        &self,
        source: &str,
        verb: &str,
        destination: &str,
        extra: &[&str],
    ) -> Run {
        self.shipgate(source)
            .args([
                "--format",
                "json",
                "backup",
                verb,
                "--destination",
                destination,
            ])
            .args(extra)
            .run()
    }

    /// `shipgate restore --backup-id BACKUP_ID --destination DESTINATION --yes EXTRA…` of
    /// `source`'s backup into the database `target`.
    pub(crate) fn restore(
        &self,
        source: &str,
        target: &str,
        backup_id: &str,
        destination: &str,
        extra: &[&str],
    ) -> Run {
        self.shipgate(source)
            .input("target-database-url", &pg().url(target))
            .args([
                "restore",
                "--backup-id",
                backup_id,
                "--destination",
                destination,
                "--yes",
            ])
            .args(extra)
            .run()
    }

    /// [`Case::shipgate`] without `AWS_ENDPOINT_URL`: S3 is reached only if shipgate passes
    /// the `--endpoint-url` flag or the `s3-endpoint-url` input on to the client.
    pub(crate) fn shipgate_without_endpoint_env(&self, db: &str) -> Shipgate {
        let mut cmd = Shipgate::new(self.path());
        for (key, value) in s3().aws_env() {
            if key != "AWS_ENDPOINT_URL" {
                cmd.env(key, value);
            }
        }
        cmd.input("database-url", &pg().url(db))
            .input("deployment-id", &self.id)
            .input("lease", LEASE);
        cmd
    }
}

fn next() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 1000 + u64::from(std::process::id() % 1000)
}

pub(crate) fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("a gzip stream of text");
    text
}

/// Every place a secret could leak: the run's streams and files, the state dir, the objects.
pub(crate) fn assert_nothing_leaks(
    secret: &str,
    run: &crate::support::cli::Run,
    case: &Case,
    objects: &[(String, String)],
) {
    let mut places = run.everything();
    places.extend(read_tree(case.path()));
    places.extend(objects.iter().cloned());
    assert_no_secret(secret, places.iter().map(|(n, t)| (n.clone(), t.as_str())));
}

#[test]
fn round_trip_through_s3_restores_identical_rows_and_contents() {
    let source = seeded("roundtrip");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/prod");
    let case = Case::new();
    let run = case
        .shipgate(&source)
        .actions()
        .input("destination", &destination)
        .args(["backup"])
        .run();
    run.expect_code(0);
    let backup_id = format!("backup-{}", case.id);
    let key = format!("prod/{backup_id}.sql.gz");
    assert_eq!(run.outputs["result"], "pass");
    assert_eq!(run.outputs["backup-id"], backup_id);
    assert_eq!(run.outputs["location"], format!("s3://{bucket}/{key}"));
    assert_eq!(run.outputs["reused"], "false");
    assert_eq!(run.outputs["verified"], "true");
    let object = s3().get(&bucket, &key).expect("the dump is stored");
    assert_eq!(run.outputs["sha256"], sha256_hex(&object));
    assert_eq!(run.outputs["size"], object.len().to_string());
    let dump = gunzip(&object);
    assert!(dump.contains("-- PostgreSQL database dump complete"));
    assert!(
        dump.contains("DROP TABLE IF EXISTS public.accounts;"),
        "plain dumps clean first"
    );

    let sidecar_bytes = s3()
        .get(&bucket, &format!("prod/{backup_id}.json"))
        .expect("the sidecar is stored");
    let sidecar: Value = serde_json::from_slice(&sidecar_bytes).expect("sidecar JSON");
    for (field, expected) in [
        ("backup_id", Value::from(backup_id.clone())),
        ("deployment_id", Value::from(case.id.clone())),
        ("location", Value::from(format!("s3://{bucket}/{key}"))),
        ("sha256", Value::from(sha256_hex(&object))),
        ("size", Value::from(object.len())),
        ("compression", Value::from("gzip")),
        ("format", Value::from("plain")),
        ("database", Value::from(source.clone())),
        ("verified", Value::from(true)),
    ] {
        assert_eq!(sidecar[field], expected, "sidecar field {field}");
    }
    for field in [
        "timestamp",
        "server_version",
        "client_version",
        "duration_ms",
    ] {
        assert!(!sidecar[field].is_null(), "sidecar field {field} missing");
    }
    let state = case.backup_json();
    assert_eq!(state["result"], "pass");
    assert_eq!(state["sha256"], sidecar["sha256"]);
    assert_eq!(
        state["sidecar_location"],
        format!("s3://{bucket}/prod/{backup_id}.json")
    );
    assert_eq!(state["verified"], true);
    assert!(
        run.summary
            .contains(&format!("Database backup `{backup_id}`")),
        "{}",
        run.summary
    );
    assert!(case.log().contains("verified"), "{}", case.log());
    let progress = run.visible_stderr();
    assert!(
        progress.contains(" dumped, ") && progress.contains(" uploaded in "),
        "progress on stderr: {progress}"
    );
    assert_eq!(s3().list_keys(&bucket).len(), 2);

    let target = pg().create_database("roundtrip_target");
    let restore = case
        .shipgate(&source)
        .actions()
        .input("target-database-url", &pg().url(&target))
        .args([
            "restore",
            "--backup-id",
            &backup_id,
            "--destination",
            &destination,
            "--yes",
        ])
        .run();
    restore.expect_code(0);
    assert_eq!(contents(&source), contents(&target));
    assert_eq!(restore.outputs["tables"], "6");
    assert_eq!(restore.outputs["rows"], (5000 + 4 + 3000 * 2).to_string());
    assert_eq!(
        pg().psql(&target, "SELECT last_value FROM accounts_id_seq"),
        "9000"
    );
    let state = read_json(&case.state().join("restore.json"));
    assert_eq!(state["result"], "pass");
    assert_eq!(state["row_counts"]["public.accounts"], 5000);
    assert!(
        restore.summary.contains("checked before restoring"),
        "{}",
        restore.summary
    );

    let objects = vec![(
        "sidecar".to_string(),
        String::from_utf8_lossy(&sidecar_bytes).into_owned(),
    )];
    assert_nothing_leaks(pg().password(), &run, &case, &objects);
    assert_nothing_leaks(pg().password(), &restore, &case, &objects);
    assert_nothing_leaks(s3().secret_key(), &run, &case, &objects);
}

#[test]
fn custom_format_to_a_directory_restores_and_verifies_by_restoring() {
    let source = seeded("custom");
    let store = tempfile::tempdir().expect("store");
    let destination = format!("file://{}", store.path().display());
    let case = Case::new();
    let run = case
        .shipgate(&source)
        .actions()
        .args([
            "--format",
            "json",
            "backup",
            "--destination",
            &destination,
            "--dump-format",
            "custom",
            "--verify",
            "restore",
        ])
        .run();
    run.expect_code(0);
    let result = run.json();
    assert_eq!(result["format"], "custom");
    assert_eq!(result["verification"]["mode"], "restore");
    assert_eq!(result["verification"]["tables"], 6);
    let backup_id = format!("backup-{}", case.id);
    let dump = store.path().join(format!("{backup_id}.dump.gz"));
    let bytes = std::fs::read(&dump).expect("the dump is in the directory");
    assert_eq!(result["sha256"], sha256_hex(&bytes));
    assert_eq!(
        std::fs::metadata(&dump).expect("dump").permissions().mode() & 0o777,
        0o600,
        "backups are private"
    );
    let sidecar = read_json(&store.path().join(format!("{backup_id}.json")));
    assert_eq!(sidecar["row_counts"]["public.accounts"], 5000);
    assert_eq!(sidecar["row_counts"]["Odd Schema.Weird \"Name\""], 4);
    // The scratch database is gone.
    let leftovers = pg().psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'shipgate_verify_%'",
    );
    assert_eq!(leftovers, "0");
    // No temporary file is left in the directory.
    let names: Vec<String> = std::fs::read_dir(store.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    let target = pg().create_database("custom_target");
    let restore = case
        .shipgate(&source)
        .input("target-database-url", &pg().url(&target))
        .args([
            "--format",
            "json",
            "restore",
            "--location",
            &format!("{destination}/{backup_id}.dump.gz"),
            "--yes",
        ])
        .run();
    restore.expect_code(0);
    assert_eq!(restore.json()["counts_match"], true);
    assert_eq!(contents(&source), contents(&target));

    // The summary's restore by hand (the same text as the rollback instructions') works as
    // written: its SHA-256 line prints the recorded hash, its pipeline restores the rows.
    let manual = run
        .summary
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a manual restore in the summary");
    let by_hand = pg().create_database("custom_by_hand");
    let out = std::process::Command::new("bash")
        .args(["-c", manual])
        .env("DATABASE_URL", pg().url(&by_hand))
        .env("PATH", path_with(PgCluster::bin_dir()))
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{manual}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(result["sha256"].as_str().expect("sha")),
        "{manual}"
    );
    assert_eq!(contents(&source), contents(&by_hand));

    // Restoring again over the restored database works (the archive cleans up first), here
    // named by a deployment record as `record` writes it.
    let record = case.path().join("deployment-record.json");
    std::fs::write(
        &record,
        serde_json::json!({
            "deployment_id": case.id,
            "database_backup": {
                "backup_id": backup_id,
                "location": format!("{destination}/{backup_id}.dump.gz"),
            }
        })
        .to_string(),
    )
    .expect("write record");
    let again = case
        .shipgate(&source)
        .input("target-database-url", &pg().url(&target))
        .args([
            "restore",
            "--record",
            &record.display().to_string(),
            "--yes",
        ])
        .run();
    again.expect_code(0);
    assert_eq!(contents(&source), contents(&target));
}

#[test]
fn a_rerun_reuses_the_backup_and_another_id_never_touches_it() {
    let source = seeded("rerun");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}");
    let case = Case::new();
    let first = case
        .shipgate(&source)
        .actions()
        .input("destination", &destination)
        .args(["backup"])
        .run();
    first.expect_code(0);
    let key = format!("backup-{}.sql.gz", case.id);
    let stored = s3().get(&bucket, &key).expect("stored");
    let modified = head_modified(&bucket, &key);
    // Rows change between attempts; the re-run must not dump again.
    pg().psql(&source, "INSERT INTO empty_one VALUES (1)");

    let again = case
        .shipgate(&source)
        .actions()
        .input("destination", &destination)
        .args(["backup"])
        .run();
    again.expect_code(0);
    assert_eq!(again.outputs["reused"], "true");
    assert_eq!(again.outputs["sha256"], first.outputs["sha256"]);
    assert_eq!(s3().get(&bucket, &key).as_deref(), Some(&stored[..]));
    assert_eq!(head_modified(&bucket, &key), modified);
    assert!(
        again.summary.contains("was not dumped again"),
        "{}",
        again.summary
    );
    assert_eq!(case.backup_json()["reused"], true);

    let other = Case::new();
    let run = other
        .shipgate(&source)
        .input("destination", &destination)
        .args(["backup"])
        .run();
    run.expect_code(0);
    assert_eq!(s3().get(&bucket, &key).as_deref(), Some(&stored[..]));
    assert_eq!(head_modified(&bucket, &key), modified);
    let mut keys = s3().list_keys(&bucket);
    keys.sort();
    let mut expected = vec![
        format!("backup-{}.json", case.id),
        key.clone(),
        format!("backup-{}.json", other.id),
        format!("backup-{}.sql.gz", other.id),
    ];
    expected.sort();
    assert_eq!(keys, expected);
}

/// A restore streams the object into one transaction: damage that shows only at its very end
/// (the last gzip member's CRC) comes after every row reached psql or pg_restore, and still
/// nothing commits.
#[test]
fn damage_at_the_end_of_the_stream_rolls_the_whole_restore_back() {
    let source = seeded("tail_damage");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/db");
    for (format, suffix) in [("plain", "sql.gz"), ("custom", "dump.gz")] {
        let case = Case::new();
        case.shipgate(&source)
            .input("destination", &destination)
            .input("dump-format", format)
            .args(["backup"])
            .run()
            .expect_code(0);
        let key = format!("db/backup-{}.{suffix}", case.id);
        let mut bytes = s3().get(&bucket, &key).expect("stored");
        let crc = bytes.len() - 8;
        bytes[crc] ^= 0xff;
        s3().put(&bucket, &key, &bytes);

        let target = pg().create_database(&format!("tail_target_{format}"));
        pg().psql(&target, "CREATE TABLE keep_me (x int);");
        let restore = case.restore(&source, &target, &case.id, &destination, &[]);
        restore.expect_code(1);
        let stderr = restore.visible_stderr();
        assert!(stderr.contains("is corrupted"), "{format}: {stderr}");
        assert!(stderr.contains("rolled back"), "{format}: {stderr}");
        assert_eq!(
            public_tables(&target),
            "keep_me",
            "{format}: nothing of the backup committed"
        );
    }
}

/// The tables of `db`'s public schema, comma-separated.
fn public_tables(db: &str) -> String {
    pg().psql(
        db,
        "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'",
    )
}

fn head_modified(bucket: &str, key: &str) -> String {
    let client = s3().client();
    let out = s3()
        .block_on(client.head_object().bucket(bucket).key(key).send())
        .expect("head");
    format!("{:?} {:?}", out.last_modified(), out.e_tag())
}

#[test]
fn a_corrupted_object_fails_verification_and_is_never_restored() {
    let source = seeded("corrupt");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/db");
    let case = Case::new();
    case.shipgate(&source)
        .input("destination", &destination)
        .args(["backup"])
        .run()
        .expect_code(0);
    let key = format!("db/backup-{}.sql.gz", case.id);
    let mut bytes = s3().get(&bucket, &key).expect("stored");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    // Damage it behind shipgate's back (storage rot, a bad copy).
    s3().put(&bucket, &key, &bytes);

    let rerun = case
        .shipgate(&source)
        .actions()
        .input("destination", &destination)
        .args(["backup"])
        .run();
    rerun.expect_code(1);
    let stderr = rerun.visible_stderr();
    assert!(stderr.contains("verification failed"), "{stderr}");
    assert!(stderr.contains("corrupted"), "{stderr}");
    assert_eq!(rerun.outputs["result"], "fail");
    assert_eq!(case.backup_json()["result"], "fail");
    assert_eq!(
        s3().get(&bucket, &key).as_deref(),
        Some(&bytes[..]),
        "left untouched"
    );

    let target = pg().create_database("corrupt_target");
    pg().psql(
        &target,
        "CREATE TABLE keep_me (x int); INSERT INTO keep_me VALUES (42);",
    );
    let restore = case.restore(&source, &target, &case.id, &destination, &[]);
    restore.expect_code(1);
    let stderr = restore.visible_stderr();
    assert!(stderr.contains("SHA-256"), "{stderr}");
    assert!(stderr.contains("the database is unchanged"), "{stderr}");
    assert_eq!(public_tables(&target), "keep_me");
    let state = read_json(&case.state().join("restore.json"));
    assert_eq!(state["result"], "fail");
}

#[test]
fn restore_refuses_without_confirmation_when_not_interactive() {
    let source = seeded("confirm");
    let store = tempfile::tempdir().expect("store");
    let destination = format!("file://{}", store.path().display());
    let case = Case::new();
    case.shipgate(&source)
        .input("destination", &destination)
        .args(["backup"])
        .run()
        .expect_code(0);
    let target = pg().create_database("confirm_target");
    let run = case
        .shipgate(&source)
        .input("target-database-url", &pg().url(&target))
        .args(["restore"])
        .run();
    run.expect_code(2);
    assert!(
        run.visible_stderr().contains("pass `--yes`"),
        "{}",
        run.stderr
    );
    assert_eq!(
        pg().psql(
            &target,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
    // The same run with the input: found through the state directory's backup.json.
    let run = case
        .shipgate(&source)
        .input("target-database-url", &pg().url(&target))
        .input("confirm", "true")
        .args(["restore"])
        .run();
    run.expect_code(0);
    assert_eq!(contents(&source), contents(&target));
}

/// Waits until `check` holds, panicking with `what` after a minute.
pub(crate) fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn s3_killed_mid_upload_publishes_nothing_and_leaves_no_upload() {
    let db = big_database();
    let mut server = S3Server::start();
    let bucket = server.create_bucket();
    let case = Case::new();
    let mut cmd = Shipgate::new(case.path());
    cmd.input("lease", LEASE);
    for (key, value) in server.aws_env() {
        cmd.env(key, value);
    }
    let mut running = cmd
        .input("database-url", &pg().url(db))
        .input("deployment-id", &case.id)
        .args(["backup", "--destination", &format!("s3://{bucket}/x")])
        .spawn();
    wait_for("the multipart upload to start", || {
        !server.list_multipart_uploads(&bucket).is_empty()
    });
    server.kill();
    wait_for("shipgate to give up and abort", || {
        case.log().contains("aborting the upload") || running.exited()
    });
    // The server comes back while shipgate is still trying to abort.
    server.restart();
    let run = running.wait();
    run.expect_code(3);
    let stderr = run.visible_stderr();
    assert!(stderr.contains("nothing was published"), "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(server.list_keys(&bucket).is_empty(), "no object at the key");
    assert!(
        server.list_multipart_uploads(&bucket).is_empty(),
        "no open multipart upload"
    );
    let state = case.backup_json();
    assert_eq!(state["result"], "fail");
    assert_eq!(state["published"], false);
    assert_eq!(state["exit_code"], 3);
}

#[test]
fn sigterm_mid_upload_aborts_the_upload_and_stops_pg_dump() {
    let db = big_database();
    let bucket = s3().create_bucket();
    let case = Case::new();
    let running = case
        .shipgate(db)
        .args(["backup", "--destination", &format!("s3://{bucket}")])
        .spawn();
    wait_for("the multipart upload to start", || {
        !s3().list_multipart_uploads(&bucket).is_empty()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
    let run = running.wait();
    run.expect_code(4);
    assert!(
        run.visible_stderr().contains("cancelled by SIGTERM"),
        "{}",
        run.stderr
    );
    assert!(s3().list_keys(&bucket).is_empty());
    assert!(s3().list_multipart_uploads(&bucket).is_empty());
    assert_eq!(case.backup_json()["result"], "fail");
    // pg_dump's connection goes away with it (give the server a moment to notice).
    wait_for("pg_dump's session to end", || {
        pg().psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'shipgate backup {}'",
                case.id
            ),
        ) == "0"
    });
}

#[test]
fn a_backend_terminated_mid_dump_publishes_nothing() {
    let db = big_database();
    let bucket = s3().create_bucket();
    let case = Case::new();
    let running = case
        .shipgate(db)
        .args(["backup", "--destination", &format!("s3://{bucket}")])
        .spawn();
    wait_for("the multipart upload to start", || {
        !s3().list_multipart_uploads(&bucket).is_empty()
    });
    let killed = pg().psql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{db}' AND application_name = 'shipgate backup {}' AND query LIKE 'COPY %'",
            case.id
        ),
    );
    assert_eq!(killed, "1", "pg_dump was not copying any more");
    let run = running.wait();
    run.expect_code(3);
    let stderr = run.visible_stderr();
    assert!(stderr.contains("pg_dump failed"), "{stderr}");
    assert!(stderr.contains("nothing was published"), "{stderr}");
    assert!(s3().list_keys(&bucket).is_empty());
    assert!(s3().list_multipart_uploads(&bucket).is_empty());
}

/// A directory with an executable `pg_dump` script, to put first on PATH.
fn fake_pg_dump(script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("fake bin dir");
    let path = dir.path().join("pg_dump");
    std::fs::write(&path, format!("#!/bin/sh\n{script}")).expect("write fake pg_dump");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

pub(crate) fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn real_pg_dump() -> PathBuf {
    crate::support::watchdog::which("pg_dump").expect("pg_dump on PATH")
}

#[test]
fn pg_dump_gets_the_password_only_in_its_environment_and_no_secret_leaks() {
    let source = seeded("fake_dump");
    let bucket = s3().create_bucket();
    let record = tempfile::tempdir().expect("record dir");
    let argv_file = record.path().join("argv");
    let env_file = record.path().join("env");
    let bin = fake_pg_dump(&format!(
        "for a in \"$@\"; do printf '%s\\n' \"$a\"; done >> '{}'\nenv > '{}'\nexec '{}' \"$@\"\n",
        argv_file.display(),
        env_file.display(),
        real_pg_dump().display()
    ));
    let case = Case::new();
    let run = case
        .shipgate(&source)
        .actions()
        .env("PATH", path_with(bin.path()))
        .input("destination", &format!("s3://{bucket}/p"))
        .args(["backup", "--lock-wait-timeout", "15s"])
        .run();
    run.expect_code(0);
    let argv = std::fs::read_to_string(&argv_file).expect("argv recorded");
    let env = std::fs::read_to_string(&env_file).expect("env recorded");
    assert_no_secret(
        pg().password(),
        [("pg_dump argv".to_string(), argv.as_str())],
    );
    assert!(
        argv.lines().any(|a| a == "--lock-wait-timeout=15000"),
        "{argv}"
    );
    assert!(argv.lines().any(|a| a == "--no-password"), "{argv}");
    assert!(
        argv.lines()
            .any(|a| a.starts_with("--dbname=postgres://postgres@127.0.0.1:")),
        "{argv}"
    );
    assert!(
        env.lines()
            .any(|l| l == format!("PGPASSWORD={}", pg().password())),
        "the password reaches pg_dump through its environment"
    );
    let sidecar = s3()
        .get(&bucket, &format!("p/backup-{}.json", case.id))
        .expect("sidecar");
    let objects = vec![(
        "sidecar".to_string(),
        String::from_utf8_lossy(&sidecar).into_owned(),
    )];
    assert!(run.stderr.contains("::add-mask::"), "masks are announced");
    assert_nothing_leaks(pg().password(), &run, &case, &objects);
    assert_nothing_leaks(&pg().password_url_encoded(), &run, &case, &objects);
    assert_nothing_leaks(s3().secret_key(), &run, &case, &objects);
}

#[test]
fn a_pg_dump_older_than_the_server_is_refused() {
    let source = pg().create_database("old_client");
    let bin = fake_pg_dump(
        "if [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) 9.6.24'; exit 0; fi\nexit 99\n",
    );
    let store = tempfile::tempdir().expect("store");
    let case = Case::new();
    let run = case
        .shipgate(&source)
        .env("PATH", path_with(bin.path()))
        .args([
            "backup",
            "--destination",
            &format!("file://{}", store.path().display()),
        ])
        .run();
    run.expect_code(2);
    let stderr = run.visible_stderr();
    assert!(
        stderr.contains("pg_dump 9.6.24 cannot dump PostgreSQL"),
        "{stderr}"
    );
    assert!(stderr.contains("pg-bin-dir"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(store.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

#[test]
fn pg_dump_failing_after_some_output_publishes_nothing() {
    let source = pg().create_database("dies");
    let real = real_pg_dump();
    // 20 MB of noise (so a multipart upload starts), then failure.
    let bin = fake_pg_dump(&format!(
        "if [ \"$1\" = --version ]; then exec '{}' --version; fi\n\
         head -c 20000000 /dev/urandom\necho 'pg_dump: error: connection lost' >&2\nexit 1\n",
        real.display()
    ));
    let bucket = s3().create_bucket();
    let store = tempfile::tempdir().expect("store");
    for destination in [
        format!("s3://{bucket}/p"),
        format!("file://{}", store.path().display()),
    ] {
        let case = Case::new();
        let run = case
            .shipgate(&source)
            .env("PATH", path_with(bin.path()))
            .args(["backup", "--destination", &destination])
            .run();
        run.expect_code(3);
        let stderr = run.visible_stderr();
        assert!(stderr.contains("pg_dump failed (exit code 1)"), "{stderr}");
        assert!(stderr.contains("connection lost"), "{stderr}");
        assert!(stderr.contains("nothing was published"), "{stderr}");
        assert_eq!(case.backup_json()["published"], false);
    }
    assert!(s3().list_keys(&bucket).is_empty());
    assert!(s3().list_multipart_uploads(&bucket).is_empty());
    assert_eq!(
        std::fs::read_dir(store.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "no temporary file is left"
    );
}

#[test]
fn storage_problems_are_clear_dependency_errors() {
    let source = pg().create_database("storage_errors");
    let bucket = s3().create_bucket();
    let closed_port = crate::support::watchdog::free_port();
    type Case3<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: [Case3; 3] = [
        (
            "wrong credentials",
            vec![(
                "AWS_SECRET_ACCESS_KEY",
                "0123456789abcdef0123456789abcdef".to_string(),
            )],
            "check the AWS credentials",
        ),
        (
            "unreachable endpoint",
            vec![(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{closed_port}"),
            )],
            "cannot reach the S3 endpoint",
        ),
        (
            "missing bucket",
            Vec::new(),
            "does not exist (NoSuchBucket)",
        ),
    ];
    for (what, env, expected) in cases {
        let case = Case::new();
        let mut cmd = case.shipgate(&source);
        for (key, value) in &env {
            cmd.env(key, value);
        }
        let target = if what == "missing bucket" {
            "s3://no-such-bucket-here/x".to_string()
        } else {
            format!("s3://{bucket}/x")
        };
        let run = cmd.args(["backup", "--destination", &target]).run();
        assert_eq!(run.code, 3, "{what}: {}", run.stderr);
        let stderr = run.visible_stderr();
        assert!(stderr.contains(expected), "{what}: {stderr}");
        if what == "unreachable endpoint" {
            // The error names the object it was about, not only the endpoint.
            assert!(stderr.contains(&format!("`{target}/")), "{what}: {stderr}");
        }
        assert_eq!(case.backup_json()["result"], "fail", "{what}");
        assert_no_secret(
            s3().secret_key(),
            run.everything()
                .iter()
                .map(|(n, t)| (n.clone(), t.as_str())),
        );
    }
    assert!(s3().list_keys(&bucket).is_empty());
}

#[test]
fn a_dump_without_its_sidecar_is_replaced_by_the_next_run() {
    let source = seeded("unpublished");
    let bucket = s3().create_bucket();
    let case = Case::new();
    let key = format!("backup-{}.sql.gz", case.id);
    // What a run that failed after uploading (and could not withdraw its dump) leaves.
    s3().put(
        &bucket,
        &key,
        b"left by a run that failed during verification",
    );
    let run = case
        .shipgate(&source)
        .actions()
        .args(["backup", "--destination", &format!("s3://{bucket}")])
        .run();
    run.expect_code(0);
    let stored = s3().get(&bucket, &key).expect("the new dump");
    assert_eq!(run.outputs["sha256"], sha256_hex(&stored));
    assert!(gunzip(&stored).contains("PostgreSQL database dump complete"));
    assert!(
        case.log().contains("has no sidecar") && case.log().contains("was never a backup"),
        "{}",
        case.log()
    );
    let mut keys = s3().list_keys(&bucket);
    keys.sort();
    assert_eq!(keys, vec![format!("backup-{}.json", case.id), key]);
}

#[test]
fn s3_down_during_verification_leaves_no_dump_without_its_sidecar() {
    let db = big_database();
    let mut server = S3Server::start();
    let bucket = server.create_bucket();
    let case = Case::new();
    let key = format!("backup-{}.sql.gz", case.id);
    let mut cmd = Shipgate::new(case.path());
    cmd.input("lease", LEASE);
    for (name, value) in server.aws_env() {
        cmd.env(name, value);
    }
    let mut running = cmd
        .input("database-url", &pg().url(db))
        .input("deployment-id", &case.id)
        .args(["backup", "--destination", &format!("s3://{bucket}")])
        .spawn();
    // The dump is at its final key once the upload completes; reading its 90 MB back takes a
    // while, so S3 stops in the middle of the verification.
    wait_for("the dump to be uploaded", || {
        server.list_keys(&bucket).contains(&key) || running.exited()
    });
    server.kill();
    wait_for("shipgate to withdraw the dump", || {
        case.log().contains("withdrawing") || running.exited()
    });
    // S3 comes back while shipgate is still trying to delete the unverified dump.
    server.restart();
    let run = running.wait();
    run.expect_code(3);
    let stderr = run.visible_stderr();
    assert!(
        stderr.contains("back") && stderr.contains("cannot reach"),
        "verification could not read the dump back: {stderr}"
    );
    assert!(case.log().contains("withdrew"), "{}", case.log());
    assert!(
        server.list_keys(&bucket).is_empty(),
        "{:?}",
        server.list_keys(&bucket)
    );
    assert!(server.list_multipart_uploads(&bucket).is_empty());
    assert_eq!(case.backup_json()["published"], false);
}

#[test]
fn usage_errors_name_what_to_fix() {
    let case = Case::new();
    let run = Shipgate::new(case.path())
        .input("deployment-id", &case.id)
        .args(["backup", "--destination", "s3://bucket/x"])
        .run();
    run.expect_code(2);
    assert!(
        run.visible_stderr().contains("`database-url`"),
        "{}",
        run.stderr
    );
    let run = case
        .shipgate("postgres")
        .args(["backup", "--destination", "ftp://x"])
        .run();
    run.expect_code(2);
    assert!(
        run.visible_stderr().contains("s3://bucket/prefix"),
        "{}",
        run.stderr
    );
    let run = case.shipgate("postgres").args(["backup"]).run();
    run.expect_code(2);
    assert!(
        run.visible_stderr().contains("--destination"),
        "{}",
        run.stderr
    );
    // An environment without a default retention needs a rule.
    let run = case
        .shipgate("postgres")
        .input("environment", "qa")
        .args(["backup", "prune", "--destination", "s3://bucket/x"])
        .run();
    run.expect_code(2);
    let stderr = run.visible_stderr();
    assert!(
        stderr.contains("--keep-days") && stderr.contains("`production` 35 days"),
        "{}",
        run.stderr
    );
}

#[test]
fn prune_defaults_to_the_environments_retention_and_a_rule_overrides_it() {
    let store = tempfile::tempdir().expect("store");
    let dir = store.path();
    fake_backup(dir, "1-day", 1, false, true);
    fake_backup(dir, "10-days", 10, false, true);
    fake_backup(dir, "20-days", 20, false, true);
    fake_backup(dir, "40-days", 40, false, true);
    let destination = format!("file://{}", dir.display());
    let case = Case::new();
    // (environment, rule, backups deleted, days kept)
    for (environment, rule, deleted, days) in [
        ("dev", None, "3", 7),
        ("staging", None, "2", 14),
        ("production", None, "1", 35),
        ("production", Some("5"), "3", 5),
    ] {
        let mut cmd = Shipgate::new(case.path());
        cmd.actions().input("environment", environment).args([
            "backup",
            "prune",
            "--destination",
            &destination,
            "--dry-run",
        ]);
        if let Some(days) = rule {
            cmd.input("keep-days", days);
        }
        let run = cmd.run();
        run.expect_code(0);
        assert_eq!(run.outputs["deleted"], deleted, "{environment} {rule:?}");
        assert!(
            run.summary.contains(&format!("younger than {days} days")),
            "{environment}: {}",
            run.summary
        );
    }
    assert_eq!(names_in(dir).len(), 8, "dry runs delete nothing");
}

/// Writes a backup's files into `dir` as shipgate lays them out, taken `days_ago`.
fn fake_backup(dir: &Path, id: &str, days_ago: i64, verified: bool, complete: bool) {
    let taken = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days_ago);
    let object = format!("backup-{id}.sql.gz");
    std::fs::write(dir.join(&object), b"dump").expect("write dump");
    let status = std::process::Command::new("touch")
        .args(["-d", &format!("{days_ago} days ago")])
        .arg(dir.join(&object))
        .status()
        .expect("touch");
    assert!(status.success());
    if complete {
        let sidecar = serde_json::json!({
            "schema_version": 1, "backup_id": format!("backup-{id}"), "deployment_id": id,
            "location": "", "sidecar_location": "", "object": object,
            "timestamp": taken.to_string(), "completed_at": taken.to_string(),
            "size": 4, "uncompressed_size": 4, "sha256": "x", "compression": "gzip",
            "compression_level": 1, "format": "plain", "database": "app",
            "server_version": "15.1", "client_version": "15.1", "duration_ms": 1,
            "parts": 1, "verified": verified,
        });
        std::fs::write(dir.join(format!("backup-{id}.json")), sidecar.to_string())
            .expect("write sidecar");
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn prune_keeps_recent_and_newest_and_never_the_newest_verified() {
    let store = tempfile::tempdir().expect("store");
    let dir = store.path();
    fake_backup(dir, "1-new", 1, true, true);
    fake_backup(dir, "2-mid", 10, true, true);
    fake_backup(dir, "3-old", 40, true, true);
    fake_backup(dir, "4-older", 50, false, true);
    fake_backup(dir, "5-broken", 60, false, false);
    std::fs::write(dir.join("notes.txt"), b"not a backup").expect("write");
    let case = Case::new();
    let destination = format!("file://{}", dir.display());
    let before = names_in(dir);

    let dry = Shipgate::new(case.path())
        .actions()
        .args([
            "backup",
            "prune",
            "--destination",
            &destination,
            "--keep-days",
            "30",
            "--keep-last",
            "1",
            "--dry-run",
        ])
        .run();
    dry.expect_code(0);
    assert_eq!(names_in(dir), before, "a dry run deletes nothing");
    assert_eq!(dry.outputs["deleted"], "3");
    assert!(dry.summary.contains("would delete"), "{}", dry.summary);

    let run = Shipgate::new(case.path())
        .actions()
        .args([
            "backup",
            "prune",
            "--destination",
            &destination,
            "--keep-days",
            "30",
            "--keep-last",
            "1",
        ])
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["deleted"], "3");
    assert_eq!(run.outputs["kept"], "2");
    assert_eq!(
        names_in(dir),
        vec![
            "backup-1-new.json",
            "backup-1-new.sql.gz",
            "backup-2-mid.json",
            "backup-2-mid.sql.gz",
            "notes.txt"
        ]
    );

    // Whatever the rules say, the newest verified backup stays.
    let only_old = tempfile::tempdir().expect("store");
    fake_backup(only_old.path(), "7-verified", 90, true, true);
    fake_backup(only_old.path(), "8-unverified", 80, false, true);
    let run = Shipgate::new(case.path())
        .input(
            "destination",
            &format!("file://{}", only_old.path().display()),
        )
        .input("keep-days", "1")
        .input("keep-last", "0")
        .input("prune", "true")
        .args(["backup"])
        .run();
    run.expect_code(0);
    assert_eq!(
        names_in(only_old.path()),
        vec!["backup-7-verified.json", "backup-7-verified.sql.gz"]
    );
}

#[test]
fn prune_works_on_s3() {
    let source = seeded("prune_s3");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/keep");
    let first = Case::new();
    first
        .shipgate(&source)
        .args(["backup", "--destination", &destination])
        .run()
        .expect_code(0);
    let second = Case::new();
    second
        .shipgate(&source)
        .args(["backup", "--destination", &destination])
        .run()
        .expect_code(0);
    s3().put(
        &bucket,
        "keep/backup-0-stale.sql.gz",
        b"incomplete and old?",
    );
    let mut cmd = Shipgate::new(first.path());
    for (key, value) in s3().aws_env() {
        cmd.env(key, value);
    }
    let run = cmd
        .args([
            "--format",
            "json",
            "backup",
            "prune",
            "--destination",
            &destination,
            "--keep-last",
            "1",
        ])
        .run();
    run.expect_code(0);
    // keep-last 1: one of the two complete backups goes (sidecar and dump); the incomplete
    // object is younger than a day, so it stays (it may still be uploading).
    assert_eq!(run.json()["deleted"], 1, "{}", run.stdout);
    let keys = s3().list_keys(&bucket);
    assert!(
        keys.contains(&"keep/backup-0-stale.sql.gz".to_string()),
        "{keys:?}"
    );
    let kept: Vec<&Case> = [&first, &second]
        .into_iter()
        .filter(|c| keys.contains(&format!("keep/backup-{}.json", c.id)))
        .collect();
    assert_eq!(kept.len(), 1, "{keys:?}");
    assert!(
        keys.contains(&format!("keep/backup-{}.sql.gz", kept[0].id)),
        "{keys:?}"
    );
    assert_eq!(keys.len(), 3, "{keys:?}");
}

#[test]
fn custom_format_with_sse_and_no_checksum_headers_reads_back_through_pg_restore() {
    let source = seeded("sse");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/enc");
    // pg_restore, not --list, reads the archive back: record how it is called.
    let calls = tempfile::tempdir().expect("calls");
    let real = crate::support::watchdog::which("pg_restore").expect("pg_restore on PATH");
    let bin = tempfile::tempdir().expect("bin");
    let script = bin.path().join("pg_restore");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            calls.path().join("argv").display(),
            real.display()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let case = Case::new();
    let run = case
        .shipgate(&source)
        .env("PATH", path_with(bin.path()))
        .input("s3-sse", "AES256")
        .input("s3-checksum", "none")
        .input("dump-format", "custom")
        .args(["--format", "json", "backup", "--destination", &destination])
        .run();
    run.expect_code(0);
    let result = run.json();
    assert_eq!(result["verification"]["mode"], "sha256");
    let key = format!("enc/backup-{}.dump.gz", case.id);
    let object = s3().get(&bucket, &key).expect("stored");
    assert_eq!(result["sha256"], sha256_hex(&object));
    let mut archive = Vec::new();
    flate2::read::MultiGzDecoder::new(&object[..])
        .read_to_end(&mut archive)
        .expect("gzip");
    assert!(archive.starts_with(b"PGDMP"), "a custom-format archive");
    let argv = std::fs::read_to_string(calls.path().join("argv")).expect("pg_restore ran");
    assert_eq!(argv.trim(), "--file=/dev/null", "a full read, not --list");

    let target = pg().create_database("sse_target");
    case.shipgate(&source)
        .input("target-database-url", &pg().url(&target))
        .input("confirm", "true")
        .args(["restore", "--location", &format!("s3://{bucket}/{key}")])
        .run()
        .expect_code(0);
    assert_eq!(contents(&source), contents(&target));
}

#[test]
fn a_truncated_dump_that_pg_dump_reports_as_fine_is_caught() {
    let source = seeded("truncated");
    let real = real_pg_dump();
    // pg_dump's output cut short while the pipeline still exits 0 (`pg_dump | head` without
    // pipefail).
    let bin = fake_pg_dump(&format!(
        "if [ \"$1\" = --version ]; then exec '{real}' --version; fi\n'{real}' \"$@\" | head -c 150000\n",
        real = real.display()
    ));
    let store = tempfile::tempdir().expect("store");
    let destination = format!("file://{}", store.path().display());

    // Plain: the completion line is missing, so nothing is published.
    let case = Case::new();
    let run = case
        .shipgate(&source)
        .env("PATH", path_with(bin.path()))
        .args(["backup", "--destination", &destination])
        .run();
    run.expect_code(3);
    assert!(
        run.visible_stderr().contains("it is truncated"),
        "{}",
        run.stderr
    );

    // Custom: only a full read by pg_restore notices; the object is withdrawn.
    let case = Case::new();
    let run = case
        .shipgate(&source)
        .env("PATH", path_with(bin.path()))
        .args([
            "backup",
            "--destination",
            &destination,
            "--dump-format",
            "custom",
        ])
        .run();
    run.expect_code(1);
    let stderr = run.visible_stderr();
    assert!(stderr.contains("pg_restore could not read"), "{stderr}");
    assert!(case.log().contains("withdrew"), "{}", case.log());
    assert_eq!(names_in(store.path()), Vec::<String>::new());
}

#[test]
fn a_concurrent_run_with_the_same_id_is_refused_and_never_touches_the_live_upload() {
    let db = big_database();
    let bucket = s3().create_bucket();
    let case = Case::new();
    let key = format!("backup-{}.sql.gz", case.id);
    let first = case
        .shipgate(db)
        .args([
            "--format",
            "json",
            "backup",
            "--destination",
            &format!("s3://{bucket}"),
        ])
        .spawn();
    wait_for("the first run's multipart upload to start", || {
        !s3().list_multipart_uploads(&bucket).is_empty()
    });
    let live = s3().list_multipart_uploads(&bucket)[0].upload_id.clone();
    let second = case
        .shipgate(db)
        .args(["backup", "--destination", &format!("s3://{bucket}")])
        .run();
    second.expect_code(2);
    let stderr = second.visible_stderr();
    assert!(stderr.contains("another `shipgate backup`"), "{stderr}");
    assert!(stderr.contains(&live), "names the live upload: {stderr}");
    assert!(stderr.contains("initiated at 20"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    let run = first.wait();
    run.expect_code(0);
    let result = run.json();
    assert_eq!(result["verified"], true);
    assert_eq!(result["reused"], false);
    let stored = s3().get(&bucket, &key).expect("the first run's dump");
    assert_eq!(result["sha256"], sha256_hex(&stored));
    // Only the backup and its sidecar: no run marker, no unfinished upload.
    let mut keys = s3().list_keys(&bucket);
    keys.sort();
    assert_eq!(keys, vec![format!("backup-{}.json", case.id), key]);
    assert!(s3().list_multipart_uploads(&bucket).is_empty());
}

#[test]
fn an_upload_left_by_a_killed_run_is_aborted_once_its_marker_expires() {
    let db = big_database();
    let bucket = s3().create_bucket();
    let case = Case::new();
    let mut killed = case
        .shipgate(db)
        .args(["backup", "--destination", &format!("s3://{bucket}")])
        .spawn();
    wait_for("the multipart upload to start", || {
        !s3().list_multipart_uploads(&bucket).is_empty()
    });
    let left = s3().list_multipart_uploads(&bucket)[0].upload_id.clone();
    // SIGKILL: no chance to abort the upload or end the marker.
    killed.kill();
    let _ = killed.wait();
    let source = pg().create_database("after_kill");
    // Right away, the killed run cannot be told from a live one: refused.
    let run = case
        .shipgate(&source)
        .args(["backup", "--destination", &format!("s3://{bucket}")])
        .run();
    run.expect_code(2);
    assert!(run.visible_stderr().contains(&left), "{}", run.stderr);
    assert_eq!(s3().list_multipart_uploads(&bucket).len(), 1);
    // Its marker expires (9 s in tests: SHIPGATE_RETRY_SCALE); then the upload is aborted,
    // with the reason.
    std::thread::sleep(Duration::from_secs(11));
    let run = case
        .shipgate(&source)
        .args(["backup", "--destination", &format!("s3://{bucket}")])
        .run();
    run.expect_code(0);
    let stderr = run.visible_stderr();
    assert!(stderr.contains(&left), "{stderr}");
    assert!(stderr.contains("stopped renewing its marker"), "{stderr}");
    assert!(s3().list_multipart_uploads(&bucket).is_empty());
    let mut keys = s3().list_keys(&bucket);
    keys.sort();
    assert_eq!(
        keys,
        vec![
            format!("backup-{}.json", case.id),
            format!("backup-{}.sql.gz", case.id)
        ]
    );
}

#[test]
fn an_unclaimed_young_upload_is_refused_not_aborted() {
    let source = pg().create_database("unclaimed");
    let bucket = s3().create_bucket();
    let case = Case::new();
    let key = format!("backup-{}.sql.gz", case.id);
    let client = s3().client();
    // An upload no shipgate run marker claims (an older shipgate, another tool).
    let upload_id = s3().block_on(async {
        let created = client
            .create_multipart_upload()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .expect("create upload");
        created.upload_id().expect("upload id").to_string()
    });
    let run = case
        .shipgate(&source)
        .args(["backup", "--destination", &format!("s3://{bucket}")])
        .run();
    run.expect_code(2);
    let stderr = run.visible_stderr();
    assert!(stderr.contains(&upload_id), "{stderr}");
    assert!(stderr.contains("abort-multipart-upload"), "{stderr}");
    assert_eq!(s3().list_multipart_uploads(&bucket).len(), 1);
    assert!(s3().list_keys(&bucket).is_empty(), "no marker left behind");
}

#[test]
fn a_restore_that_fails_midway_changes_nothing() {
    let source = seeded("midway");
    let store = tempfile::tempdir().expect("store");
    let destination = format!("file://{}", store.path().display());
    let case = Case::new();
    case.shipgate(&source)
        .input("destination", &destination)
        .args(["backup"])
        .run()
        .expect_code(0);
    // The target has `accounts` with a view of its own on it: the dump's
    // `DROP TABLE IF EXISTS public.accounts` fails halfway through the script.
    let target = pg().create_database("midway_target");
    pg().psql(
        &target,
        "CREATE TABLE empty_one (x int); INSERT INTO empty_one VALUES (1), (2);
         CREATE TABLE accounts (id int); INSERT INTO accounts VALUES (7);
         CREATE VIEW mine AS SELECT id FROM accounts;",
    );
    let before = contents(&target);
    let run = case
        .shipgate(&source)
        .input("target-database-url", &pg().url(&target))
        .args(["restore", "--yes"])
        .run();
    run.expect_code(3);
    let stderr = run.visible_stderr();
    assert!(stderr.contains("other objects depend on it"), "{stderr}");
    assert!(stderr.contains("the database is unchanged"), "{stderr}");
    assert_eq!(contents(&target), before);
    assert_eq!(pg().psql(&target, "SELECT count(*) FROM mine"), "1");
}

#[test]
fn a_sidecar_pointing_elsewhere_is_refused() {
    let store = tempfile::tempdir().expect("store");
    fake_backup(store.path(), "5-abc", 1, true, true);
    let path = store.path().join("backup-5-abc.json");
    let mut sidecar = read_json(&path);
    sidecar["object"] = Value::from("../../etc/passwd");
    sidecar["sha256"] = Value::from("0".repeat(64));
    std::fs::write(&path, sidecar.to_string()).expect("write");
    let case = Case::new();
    let run = case
        .shipgate("postgres")
        .args([
            "restore",
            "--backup-id",
            "5-abc",
            "--destination",
            &format!("file://{}", store.path().display()),
            "--yes",
        ])
        .run();
    run.expect_code(1);
    assert!(
        run.visible_stderr()
            .contains("does not describe a shipgate backup"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_deadline_stops_the_backup_and_publishes_nothing() {
    let db = big_database();
    let bucket = s3().create_bucket();
    let case = Case::new();
    let run = case.backup(db, &format!("s3://{bucket}"), &["--timeout", "300ms"]);
    run.expect_code(4);
    assert!(
        run.visible_stderr().contains("did not finish within 300ms"),
        "{}",
        run.stderr
    );
    assert!(s3().list_keys(&bucket).is_empty());
    assert!(s3().list_multipart_uploads(&bucket).is_empty());
    assert_eq!(case.backup_json()["exit_code"], 4);
}

#[test]
fn a_table_locked_too_long_fails_the_dump_within_the_lock_wait() {
    let source = seeded("locked");
    // Another session holds an exclusive lock on `accounts` until its stdin closes.
    let mut holder = std::process::Command::new(PgCluster::bin_dir().join("psql"))
        .env("PGPASSWORD", pg().password())
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &pg().port().to_string(),
        ])
        .args(["-U", "postgres", "-d", &source, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    {
        use std::io::Write as _;
        let stdin = holder.stdin.as_mut().expect("stdin");
        stdin
            .write_all(b"BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE;\n")
            .expect("lock");
        stdin.flush().expect("flush");
    }
    wait_for("the lock to be held", || {
        pg().psql(
            &source,
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE c.relname = 'accounts' AND l.mode = 'AccessExclusiveLock' AND l.granted",
        ) == "1"
    });
    let store = tempfile::tempdir().expect("store");
    let case = Case::new();
    let run = case.backup(
        &source,
        &format!("file://{}", store.path().display()),
        &["--lock-wait-timeout", "500ms"],
    );
    drop(holder.stdin.take());
    let _ = holder.wait();
    run.expect_code(3);
    let stderr = run.visible_stderr();
    // The row count in the dump's snapshot (taken before pg_dump starts) waits for the lock
    // as long as pg_dump would, then fails naming the table and the wait.
    assert!(
        stderr.contains("lock timeout") && stderr.contains("public.accounts"),
        "{stderr}"
    );
    assert!(stderr.contains("`lock-wait-timeout` 500ms"), "{stderr}");
    assert_eq!(names_in(store.path()), Vec::<String>::new());
}

#[test]
fn a_rerun_against_another_database_is_a_usage_error_naming_both() {
    let source = seeded("identity");
    let store = tempfile::tempdir().expect("store");
    let destination = format!("file://{}", store.path().display());
    let case = Case::new();
    case.shipgate(&source)
        .args(["backup", "--destination", &destination])
        .run()
        .expect_code(0);
    let sidecar_path = store.path().join(format!("backup-{}.json", case.id));
    let sidecar = read_json(&sidecar_path);
    let identity = &sidecar["database_identity"];
    assert_eq!(identity["database"], source.as_str());
    assert_eq!(identity["host"], "127.0.0.1");
    assert_eq!(identity["port"], pg().port());
    let system_identifier = pg().psql(
        "postgres",
        "SELECT system_identifier FROM pg_control_system()",
    );
    assert_eq!(identity["system_identifier"], system_identifier.as_str());
    let before = names_in(store.path());
    let dump =
        std::fs::read(store.path().join(format!("backup-{}.sql.gz", case.id))).expect("the dump");

    // Another database on the same server.
    let other = pg().create_database("identity_other");
    let run = case
        .shipgate(&other)
        .args(["backup", "--destination", &destination])
        .run();
    run.expect_code(2);
    let stderr = run.visible_stderr();
    assert!(stderr.contains(&format!("`{source}`")), "{stderr}");
    assert!(stderr.contains(&format!("`{other}`")), "{stderr}");
    assert!(stderr.contains("the database names differ"), "{stderr}");
    assert_eq!(case.backup_json()["exit_code"], 2);

    // A database of the same name on another server (another initdb, another port).
    let second = PgCluster::start();
    second.psql("postgres", &format!("CREATE DATABASE \"{source}\""));
    let run = case
        .shipgate(&source)
        .input("database-url", &second.url(&source))
        .args(["backup", "--destination", &destination])
        .run();
    run.expect_code(2);
    let stderr = run.visible_stderr();
    let second_identifier = second.psql(
        "postgres",
        "SELECT system_identifier FROM pg_control_system()",
    );
    assert!(stderr.contains(&system_identifier), "{stderr}");
    assert!(stderr.contains(&second_identifier), "{stderr}");
    assert!(stderr.contains("system identifiers differ"), "{stderr}");
    drop(second);

    // The earlier backup is untouched, and the right database still reuses it.
    assert_eq!(names_in(store.path()), before);
    assert_eq!(
        std::fs::read(store.path().join(format!("backup-{}.sql.gz", case.id))).expect("dump"),
        dump
    );
    let run = case
        .shipgate(&source)
        .args(["--format", "json", "backup", "--destination", &destination])
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["reused"], true);

    // A sidecar from before the identity was recorded: compared by name, with a warning.
    let mut old = sidecar.clone();
    old.as_object_mut()
        .expect("sidecar object")
        .remove("database_identity");
    std::fs::write(&sidecar_path, old.to_string()).expect("write the old sidecar");
    let run = case
        .shipgate(&source)
        .args(["backup", "--destination", &destination])
        .run();
    run.expect_code(0);
    assert!(
        run.visible_stderr()
            .contains("records only the database name"),
        "{}",
        run.stderr
    );
    let run = case
        .shipgate(&other)
        .args(["backup", "--destination", &destination])
        .run();
    run.expect_code(2);
    assert!(
        run.visible_stderr().contains(&format!("`{other}`")),
        "{}",
        run.stderr
    );
}

#[test]
fn backup_list_shows_every_backup_and_restore_latest_takes_the_newest_complete() {
    let source = seeded("listing");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/list");
    let first = Case::new();
    first
        .shipgate(&source)
        .args(["backup", "--destination", &destination])
        .run()
        .expect_code(0);
    // One more row, then a second backup a second later: `latest` must be this one.
    pg().psql(
        &source,
        "INSERT INTO accounts (email) VALUES ('newest@example.com')",
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = Case::new();
    second
        .backup(&source, &destination, &["--verify", "none"])
        .expect_code(0);
    s3().put(
        &bucket,
        "list/backup-0-stale.sql.gz",
        b"a dump without its sidecar",
    );

    let listed = second
        .shipgate(&source)
        .actions()
        .args(["backup", "list", "--destination", &destination])
        .run();
    listed.expect_code(0);
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert!(lines[0].starts_with("BACKUP "), "{}", listed.stdout);
    let at = |id: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(&format!("backup-{id} ")))
            .unwrap_or_else(|| panic!("no line for backup-{id}:\n{}", listed.stdout))
    };
    assert!(
        at(&second.id) < at(&first.id),
        "newest first:\n{}",
        listed.stdout
    );
    assert!(
        lines[at(&first.id)].contains(" sha256 "),
        "{}",
        listed.stdout
    );
    assert!(lines[at(&second.id)].contains(" no "), "{}", listed.stdout);
    assert!(
        lines[at("0-stale")].contains(" incomplete "),
        "{}",
        listed.stdout
    );
    assert_eq!(listed.outputs["count"], "3");
    assert_eq!(listed.outputs["latest"], format!("backup-{}", second.id));
    assert!(
        listed.summary.contains("Backups in `s3://"),
        "{}",
        listed.summary
    );

    let json = second
        .shipgate(&source)
        .args([
            "--format",
            "json",
            "backup",
            "list",
            "--destination",
            &destination,
        ])
        .run();
    json.expect_code(0);
    let backups = json.json()["backups"].as_array().expect("backups").clone();
    assert_eq!(backups.len(), 3, "{}", json.stdout);
    let row = backups
        .iter()
        .find(|b| b["backup_id"] == format!("backup-{}", first.id))
        .expect("the first backup");
    assert_eq!(row["state"], "complete");
    assert_eq!(row["format"], "plain");
    assert_eq!(row["verified"], "sha256");
    assert_eq!(row["deployment_id"], first.id);
    assert!(row["size"].as_u64().is_some_and(|s| s > 0), "{row}");

    // `--backup-id latest`: the newest complete backup, the second (with the extra row).
    let target = pg().create_database("listing_target");
    let restore = second
        .shipgate(&source)
        .actions()
        .input("target-database-url", &pg().url(&target))
        .args([
            "restore",
            "--backup-id",
            "latest",
            "--destination",
            &destination,
            "--yes",
        ])
        .run();
    restore.expect_code(0);
    assert_eq!(
        restore.outputs["backup-id"],
        format!("backup-{}", second.id)
    );
    assert_eq!(contents(&source), contents(&target));
}

/// zstd in both formats and gzip compressed on several threads (a series of gzip members):
/// each backup verifies by restoring, `restore` restores it, and the summary's restore by hand
/// (`zstd -dc`, `gunzip`) restores it too.
#[test]
fn zstd_and_parallel_gzip_round_trip_in_both_formats_and_by_hand() {
    let source = seeded("codecs");
    let bucket = s3().create_bucket();
    let store = tempfile::tempdir().expect("store");
    let on_disk = format!("file://{}", store.path().display());
    let on_s3 = format!("s3://{bucket}/codecs");
    for (destination, format, compression, jobs, suffix) in [
        (&on_s3, "plain", "zstd", "2", ".sql.zst"),
        (&on_disk, "custom", "zstd", "1", ".dump.zst"),
        (&on_disk, "plain", "gzip", "3", ".sql.gz"),
        (&on_s3, "custom", "gzip", "3", ".dump.gz"),
        (&on_disk, "directory", "zstd", "2", "/"),
    ] {
        let what = format!("{format} {compression} --jobs {jobs}");
        let case = Case::new();
        let run = case
            .shipgate(&source)
            .actions()
            .args([
                "--format",
                "json",
                "backup",
                "--destination",
                destination,
                "--dump-format",
                format,
                "--compression",
                compression,
                "--jobs",
                jobs,
                "--verify",
                "restore",
            ])
            .run();
        run.expect_code(0);
        let result = run.json();
        assert_eq!(result["compression"], compression, "{what}");
        assert_eq!(result["verification"]["tables"], 6, "{what}");
        let location = format!("{destination}/backup-{}{suffix}", case.id);
        assert_eq!(result["location"], location.as_str(), "{what}");

        let target = pg().create_database(&format!("codec_{compression}_{format}_{jobs}"));
        let restore = case
            .shipgate(&source)
            .input("target-database-url", &pg().url(&target))
            .args([
                "--format",
                "json",
                "restore",
                "--location",
                &location,
                "--yes",
            ])
            .run();
        restore.expect_code(0);
        assert_eq!(restore.json()["counts_match"], true, "{what}");
        assert_eq!(contents(&source), contents(&target), "{what}");

        let manual = run
            .summary
            .split("```sh\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a manual restore in the summary");
        let unpack = match (format, compression) {
            ("directory", _) => "zstd -dq --rm",
            (_, "zstd") => "| zstd -dc |",
            _ => "| gunzip |",
        };
        assert!(manual.contains(unpack), "{what}: {manual}");
        if destination.starts_with("file://") {
            let by_hand = pg().create_database(&format!("codec_hand_{compression}_{format}"));
            let scratch = tempfile::tempdir().expect("scratch");
            let out = std::process::Command::new("bash")
                .args(["-c", manual])
                .current_dir(scratch.path())
                .env("DATABASE_URL", pg().url(&by_hand))
                .env("PATH", path_with(PgCluster::bin_dir()))
                .output()
                .expect("bash");
            assert!(
                out.status.success(),
                "{what}: {manual}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(contents(&source), contents(&by_hand), "{what}");
        }
    }
}

#[test]
fn compression_settings_out_of_range_name_the_value() {
    let case = Case::new();
    for (args, expected) in [
        (
            vec!["--compression", "zstd", "--compression-level", "0"],
            "compression level `0` is out of range for zstd; use 1 (fastest) to 19",
        ),
        (
            vec!["--compression-level", "10"],
            "compression level `10` is out of range for gzip; use 0 (fastest) to 9",
        ),
        (
            vec!["--compression", "lz4"],
            "`lz4` is not a compression; use `gzip` or `zstd`",
        ),
        (
            vec!["--jobs", "0"],
            "jobs `0` is out of range; use a whole number from 1 to 64",
        ),
        (
            vec!["--jobs", "65"],
            "jobs `65` is out of range; use a whole number from 1 to 64",
        ),
    ] {
        let mut argv = vec!["backup", "--destination", "file:///nonexistent-shipgate"];
        argv.extend(args.iter().copied());
        let run = case.shipgate("postgres").args(argv).run();
        run.expect_code(2);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
}

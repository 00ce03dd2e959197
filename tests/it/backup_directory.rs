//! `shipgate backup --dump-format directory --jobs N` and its restore: pg_dump's directory
//! archive streamed file by file to `backup-<id>/<file>.gz`, a manifest in the sidecar, and
//! `pg_restore --jobs` only after every file matched it.

use serde_json::Value;

use crate::backup::{Case, assert_nothing_leaks, contents, pg, read_json, s3, seeded, sha256_hex};

/// The stored files' names under `prefix` (`prod/backup-<id>/`) in `bucket`.
fn files_in(bucket: &str, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = s3()
        .list_keys(bucket)
        .into_iter()
        .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn a_directory_backup_round_trips_through_s3_and_a_directory() {
    let source = seeded("dirtrip");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/prod");
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
            "directory",
            "--jobs",
            "2",
        ])
        .run();
    run.expect_code(0);
    let backup_id = format!("backup-{}", case.id);
    let result = run.json();
    assert_eq!(result["format"], "directory");
    assert_eq!(result["verified"], true);
    assert_eq!(
        result["location"],
        format!("s3://{bucket}/prod/{backup_id}/")
    );
    let stored = files_in(&bucket, &format!("prod/{backup_id}/"));
    assert!(stored.contains(&"toc.dat.gz".to_string()), "{stored:?}");
    // One file per table (the partitioned `events` has none: its two partitions hold its
    // rows), and the table of contents.
    assert_eq!(stored.len(), 6, "{stored:?}");

    let sidecar_bytes = s3()
        .get(&bucket, &format!("prod/{backup_id}.json"))
        .expect("the sidecar is stored");
    let sidecar: Value = serde_json::from_slice(&sidecar_bytes).expect("sidecar JSON");
    assert_eq!(sidecar["format"], "directory");
    assert_eq!(sidecar["jobs"], 2);
    let files = sidecar["files"].as_array().expect("a manifest");
    assert_eq!(files.len(), stored.len());
    let mut sums = String::new();
    for file in files {
        let name = file["name"].as_str().expect("name");
        let object = s3()
            .get(&bucket, &format!("prod/{backup_id}/{name}"))
            .expect("each listed file is stored");
        assert_eq!(file["sha256"], sha256_hex(&object), "{name}");
        assert_eq!(file["size"], object.len(), "{name}");
        sums.push_str(&format!("{}  {name}\n", sha256_hex(&object)));
    }
    assert_eq!(sidecar["sha256"], sha256_hex(sums.as_bytes()));
    assert_eq!(result["sha256"], sidecar["sha256"]);
    assert_eq!(sidecar["row_counts"]["public.accounts"], 5000);
    let progress = run.visible_stderr();
    assert!(progress.contains(" uploaded in "), "{progress}");

    // Restored by id, 2 jobs: the same rows.
    let target = pg().create_database("dirtrip_target");
    let restore = case
        .shipgate(&source)
        .actions()
        .input("target-database-url", &pg().url(&target))
        .args([
            "--format",
            "json",
            "restore",
            "--backup-id",
            &backup_id,
            "--destination",
            &destination,
            "--jobs",
            "2",
            "--yes",
        ])
        .run();
    restore.expect_code(0);
    assert_eq!(restore.json()["counts_match"], true);
    assert_eq!(contents(&source), contents(&target));
    let stderr = restore.visible_stderr();
    assert!(stderr.contains("not one transaction"), "{stderr}");
    let state = read_json(&case.state().join("restore.json"));
    assert_eq!(state["row_counts"]["public.accounts"], 5000);

    // Named by its location (the prefix), in one transaction with one job.
    let target = pg().create_database("dirtrip_one");
    let restore = case
        .shipgate(&source)
        .input("target-database-url", &pg().url(&target))
        .args([
            "restore",
            "--location",
            &format!("{destination}/{backup_id}/"),
            "--jobs",
            "1",
            "--yes",
        ])
        .run();
    restore.expect_code(0);
    assert_eq!(contents(&source), contents(&target));

    let objects = vec![(
        "sidecar".to_string(),
        String::from_utf8_lossy(&sidecar_bytes).into_owned(),
    )];
    assert_nothing_leaks(pg().password(), &run, &case, &objects);
    assert_nothing_leaks(pg().password(), &restore, &case, &objects);
    assert_nothing_leaks(s3().secret_key(), &run, &case, &objects);

    // To a directory, verified by restoring into a scratch database with 2 jobs.
    let store = tempfile::tempdir().expect("store");
    let destination = format!("file://{}", store.path().display());
    let case = Case::new();
    let run = case
        .shipgate(&source)
        .args([
            "--format",
            "json",
            "backup",
            "--destination",
            &destination,
            "--dump-format",
            "directory",
            "--jobs",
            "2",
            "--verify",
            "restore",
        ])
        .run();
    run.expect_code(0);
    let result = run.json();
    assert_eq!(result["verification"]["mode"], "restore");
    assert_eq!(result["verification"]["tables"], 6);
    let backup_id = format!("backup-{}", case.id);
    let mut names: Vec<String> = std::fs::read_dir(store.path().join(&backup_id))
        .expect("the backup's directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "no temporary file is left: {names:?}");
    let target = pg().create_database("dirtrip_file");
    let restore = case.restore(&source, &target, &backup_id, &destination, &[]);
    restore.expect_code(0);
    assert_eq!(contents(&source), contents(&target));
    assert_nothing_leaks(pg().password(), &run, &case, &[]);

    // Pruned, the older backup goes whole: its files and its directory.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let newer = Case::new();
    newer
        .backup(&source, &destination, &["--dump-format", "directory"])
        .expect_code(0);
    let prune = newer.backups(&source, "prune", &destination, &["--keep-last", "1"]);
    prune.expect_code(0);
    assert_eq!(prune.json()["deleted"], 1, "{}", prune.stdout);
    assert!(
        !store.path().join(&backup_id).exists(),
        "the pruned backup's directory is gone"
    );
    assert!(store.path().join(format!("backup-{}", newer.id)).is_dir());
}

/// The pid of `parent`'s child process named `name`, if any.
fn child_named(parent: u32, name: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid …`
        let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (comm == name && ppid == parent).then_some(pid)
    })
}

/// What a failed directory backup must leave: a non-zero exit naming the table, no sidecar, no
/// object and no unfinished upload under the bucket.
fn assert_nothing_published(run: &crate::support::cli::Run, bucket: &str, code: i32, case: &Case) {
    run.expect_code(code);
    let stderr = run.visible_stderr();
    assert!(stderr.contains("table `public.big`"), "{stderr}");
    assert!(stderr.contains("nothing was published"), "{stderr}");
    assert!(!stderr.contains("nothing was published, but"), "{stderr}");
    assert_eq!(
        s3().list_keys(bucket),
        Vec::<String>::new(),
        "no sidecar, no file, no run marker"
    );
    assert!(
        s3().list_multipart_uploads(bucket).is_empty(),
        "no unfinished multipart upload"
    );
    let state = case.backup_json();
    assert_eq!(state["result"], "fail");
    assert_eq!(state["published"], false);
}

#[test]
fn pg_dump_killed_mid_backup_publishes_nothing_and_names_the_table() {
    let db = crate::backup::big_database();
    let bucket = s3().create_bucket();
    let case = Case::new();
    let running = case
        .shipgate(db)
        .args([
            "backup",
            "--destination",
            &format!("s3://{bucket}/x"),
            "--dump-format",
            "directory",
            "--jobs",
            "2",
        ])
        .spawn();
    crate::backup::wait_for("a file's multipart upload to start", || {
        !s3().list_multipart_uploads(&bucket).is_empty()
    });
    let pg_dump = child_named(running.pid(), "pg_dump").expect("pg_dump is running");
    // The leader and its workers at once (they share its process group): every file pg_dump
    // had open is closed before shipgate sees the exit, and the table must still be named.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pg_dump),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill pg_dump and its workers");
    let run = running.wait();
    let stderr = run.visible_stderr();
    assert!(
        stderr.contains("pg_dump failed (killed by signal 9)"),
        "{stderr}"
    );
    assert_nothing_published(&run, &bucket, 3, &case);
}

#[test]
fn sigterm_mid_backup_stops_pg_dump_and_aborts_every_upload() {
    let db = crate::backup::big_database();
    let bucket = s3().create_bucket();
    let case = Case::new();
    let running = case
        .shipgate(db)
        .args([
            "backup",
            "--destination",
            &format!("s3://{bucket}"),
            "--dump-format",
            "directory",
            "--jobs",
            "2",
        ])
        .spawn();
    crate::backup::wait_for("a file's multipart upload to start", || {
        !s3().list_multipart_uploads(&bucket).is_empty()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
    let run = running.wait();
    run.expect_code(4);
    let stderr = run.visible_stderr();
    assert!(stderr.contains("cancelled by SIGTERM"), "{stderr}");
    assert!(stderr.contains("nothing was published"), "{stderr}");
    assert!(
        s3().list_keys(&bucket).is_empty(),
        "{:?}",
        s3().list_keys(&bucket)
    );
    assert!(s3().list_multipart_uploads(&bucket).is_empty());
    assert_eq!(case.backup_json()["result"], "fail");
    crate::backup::wait_for("pg_dump's sessions to end", || {
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
fn s3_stopped_mid_backup_aborts_every_upload_and_names_the_table() {
    let db = crate::backup::big_database();
    let mut server = crate::support::s3::S3Server::start();
    let bucket = server.create_bucket();
    let case = Case::new();
    let mut cmd = crate::support::Shipgate::new(case.path());
    cmd.input("lease", crate::backup::LEASE);
    for (key, value) in server.aws_env() {
        cmd.env(key, value);
    }
    let mut running = cmd
        .input("database-url", &pg().url(db))
        .input("deployment-id", &case.id)
        .args([
            "backup",
            "--destination",
            &format!("s3://{bucket}/x"),
            "--dump-format",
            "directory",
            "--jobs",
            "2",
        ])
        .spawn();
    crate::backup::wait_for("a file's multipart upload to start", || {
        !server.list_multipart_uploads(&bucket).is_empty()
    });
    server.kill();
    crate::backup::wait_for("shipgate to give up and abort", || {
        case.log().contains("aborting every upload") || running.exited()
    });
    // The server comes back while shipgate is still trying to abort.
    server.restart();
    let run = running.wait();
    run.expect_code(3);
    let stderr = run.visible_stderr();
    assert!(
        stderr.contains("storing the data of table `public.big`"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was published"), "{stderr}");
    assert!(
        server.list_keys(&bucket).is_empty(),
        "{:?}",
        server.list_keys(&bucket)
    );
    assert!(server.list_multipart_uploads(&bucket).is_empty());
    assert_eq!(case.backup_json()["published"], false);
}

#[test]
fn a_tampered_file_is_refused_before_the_target_changes() {
    let source = seeded("dirtamper");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/db");
    let case = Case::new();
    case.backup(
        &source,
        &destination,
        &["--dump-format", "directory", "--jobs", "2"],
    )
    .expect_code(0);
    let backup_id = format!("backup-{}", case.id);
    let sidecar: Value = s3().get_json(&bucket, &format!("db/{backup_id}.json"));
    // The biggest data file (the accounts table's), one byte flipped behind shipgate's back.
    let file = sidecar["files"]
        .as_array()
        .expect("manifest")
        .iter()
        .filter(|f| f["name"] != "toc.dat.gz")
        .max_by_key(|f| f["size"].as_u64())
        .expect("a data file")["name"]
        .as_str()
        .expect("name")
        .to_string();
    let key = format!("db/{backup_id}/{file}");
    let mut tampered = s3().get(&bucket, &key).expect("stored");
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x55;
    s3().put(&bucket, &key, &tampered);

    let target = pg().create_database("dirtamper_target");
    pg().psql(
        &target,
        "CREATE TABLE accounts (x int); INSERT INTO accounts VALUES (42);",
    );
    let before = contents(&target);
    let restore = case.restore(&source, &target, &backup_id, &destination, &["--jobs", "2"]);
    restore.expect_code(1);
    let stderr = restore.visible_stderr();
    assert!(stderr.contains(&file), "{stderr}");
    assert!(stderr.contains("corrupted"), "{stderr}");
    assert!(stderr.contains("the database was not touched"), "{stderr}");
    assert_eq!(contents(&target), before);
    assert_eq!(
        read_json(&case.state().join("restore.json"))["result"],
        "fail"
    );

    // A re-run of the backup re-verifies what it would reuse: every file read back.
    let rerun = case.backup(&source, &destination, &["--dump-format", "directory"]);
    rerun.expect_code(1);
    let stderr = rerun.visible_stderr();
    assert!(stderr.contains("verification failed"), "{stderr}");
    assert!(stderr.contains(&file), "{stderr}");
    assert!(stderr.contains("no longer verifies"), "{stderr}");
}

#[test]
fn bad_jobs_are_usage_errors_naming_the_value() {
    let case = Case::new();
    for bad in ["0", "65", "two", "-1", "1.5"] {
        let restore = case
            .shipgate("postgres")
            .args([
                "restore",
                "--destination",
                "file:///nonexistent/x",
                "--backup-id",
                "latest",
                &format!("--jobs={bad}"),
            ])
            .run();
        let backup = case
            .shipgate("postgres")
            .input("jobs", bad)
            .args([
                "backup",
                "--destination",
                "file:///nonexistent/x",
                "--dump-format",
                "directory",
            ])
            .run();
        for run in [restore, backup] {
            run.expect_code(2);
            let stderr = run.visible_stderr();
            assert!(
                stderr.contains(&format!(
                    "jobs `{bad}` is out of range; use a whole number from 1 to 64"
                )),
                "{stderr}"
            );
        }
    }
    assert!(!case.state().exists(), "a refused command changes nothing");
}

#[test]
fn a_later_run_cleans_up_what_a_killed_run_left_under_the_prefix() {
    let db = crate::backup::big_database();
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/x");
    let case = Case::new();
    let work = tempfile::tempdir().expect("work dir");
    let mut running = case
        .shipgate(db)
        .args([
            "backup",
            "--destination",
            &destination,
            "--dump-format",
            "directory",
            "--jobs",
            "2",
            "--work-dir",
            &work.path().display().to_string(),
        ])
        .spawn();
    crate::backup::wait_for("a file's multipart upload to start", || {
        !s3().list_multipart_uploads(&bucket).is_empty()
    });
    // Killed outright (a lost runner): nothing is cleaned up, pg_dump's group goes too.
    let pg_dump = child_named(running.pid(), "pg_dump").expect("pg_dump is running");
    running.kill();
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pg_dump),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = running.wait();
    let left = s3().list_multipart_uploads(&bucket);
    assert!(!left.is_empty(), "the killed run left its uploads");
    // `backup list` shows the dead run as incomplete, with what its stored files hold.
    let listed = case.backups(db, "list", &destination, &[]);
    listed.expect_code(0);
    let backups = listed.json()["backups"].clone();
    let dead = backups
        .as_array()
        .expect("backups")
        .iter()
        .find(|b| b["backup_id"] == format!("backup-{}", case.id))
        .unwrap_or_else(|| panic!("the dead run is listed: {}", listed.stdout))
        .clone();
    assert_ne!(dead["state"], "complete", "{dead}");
    let under = format!("x/backup-{}/", case.id);
    let stored: Vec<String> = s3()
        .list_keys(&bucket)
        .into_iter()
        .filter(|k| k.starts_with(&under))
        .collect();
    assert!(!stored.is_empty(), "the dead run stored some files");
    let held: u64 = stored
        .iter()
        .map(|k| s3().get(&bucket, k).map_or(0, |b| b.len() as u64))
        .sum();
    assert_eq!(dead["size"], held, "{dead}");
    // Once its run marker has expired, a re-run with the same id (here of a small database:
    // there is no sidecar, so no earlier backup to match) clears the leftovers and succeeds.
    std::thread::sleep(std::time::Duration::from_secs(10));
    let source = seeded("dirleft");
    let rerun = case.backup(
        &source,
        &destination,
        &["--dump-format", "directory", "--jobs", "2"],
    );
    rerun.expect_code(0);
    let log = case.log();
    assert!(log.contains("aborting the unfinished upload"), "{log}");
    assert!(s3().list_multipart_uploads(&bucket).is_empty());
    let backup_id = format!("backup-{}", case.id);
    let sidecar: Value = s3().get_json(&bucket, &format!("x/{backup_id}.json"));
    let listed: Vec<String> = sidecar["files"]
        .as_array()
        .expect("manifest")
        .iter()
        .map(|f| format!("x/{backup_id}/{}", f["name"].as_str().expect("name")))
        .collect();
    for key in s3().list_keys(&bucket) {
        assert!(
            key == format!("x/{backup_id}.json") || listed.contains(&key),
            "only the new backup is left: {key}"
        );
    }
}

/// Peak RSS of a backup of a database with several big tables (about 400 MB dumped) to S3,
/// single stream and directory format, read from `/proc/<pid>/status` (`VmHWM`) while it runs.
/// Heavy: run by hand with `cargo test --test it -- --ignored --nocapture peak_rss`;
/// `SHIPGATE_RSS_BIN=target/release/shipgate` measures a release build. Measured on 2026-12-04
/// (2 cores, about 400 MB dumped): release 44.6 MiB single stream, 72.7 MiB directory `--jobs
/// 2`, 77.6 MiB `--jobs 4`; the debug build runs about 30 MiB higher (77, 95–102, 95–103).
#[test]
#[ignore]
fn peak_rss_of_a_directory_backup() {
    let db = pg().create_database("rss");
    pg().psql(
        &db,
        "CREATE TABLE t1 AS SELECT g AS id, md5(g::text) AS a, md5((g + 1)::text) AS b FROM generate_series(1, 1500000) g; \
         CREATE TABLE t2 AS SELECT * FROM t1; CREATE TABLE t3 AS SELECT * FROM t1; \
         CREATE TABLE t4 AS SELECT g AS id, repeat(md5(g::text), 8) AS wide FROM generate_series(1, 300000) g;",
    );
    let bucket = s3().create_bucket();
    let bin = std::env::var("SHIPGATE_RSS_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shipgate").into());
    let mut peaks = Vec::new();
    for (format, jobs) in [("custom", "1"), ("directory", "2"), ("directory", "4")] {
        let case = Case::new();
        let mut command = std::process::Command::new(&bin);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", case.path())
            .env("SHIPGATE_RETRY_SCALE", "0.001")
            .env("INPUT_DATABASE-URL", pg().url(&db))
            .env("INPUT_DEPLOYMENT-ID", &case.id)
            .env("INPUT_LEASE", crate::backup::LEASE)
            .current_dir(case.path())
            .args([
                "backup",
                "--destination",
                &format!("s3://{bucket}/rss"),
                "--dump-format",
                format,
                "--jobs",
                jobs,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (key, value) in s3().aws_env() {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn shipgate");
        let status = format!("/proc/{}/status", child.id());
        let mut peak_kib = 0u64;
        let exit = loop {
            if let Ok(text) = std::fs::read_to_string(&status)
                && let Some(kib) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
            if let Some(exit) = child.try_wait().expect("wait") {
                break exit;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(exit.success(), "{format} --jobs {jobs}: {exit}");
        let size = case.backup_json()["uncompressed_size"].clone();
        eprintln!(
            "{format} --jobs {jobs}: peak RSS {:.1} MiB for {size} bytes dumped ({})",
            peak_kib as f64 / 1024.0,
            bin.display()
        );
        peaks.push(peak_kib);
    }
    assert!(peaks.iter().all(|&kib| kib < 100 * 1024), "{peaks:?} KiB");
}

#[test]
fn list_latest_prune_and_the_manual_restore_see_a_directory_backup_as_one() {
    let source = seeded("dirlist");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/list");
    let first = Case::new();
    first
        .backup(&source, &destination, &["--dump-format", "directory"])
        .expect_code(0);
    pg().psql(
        &source,
        "INSERT INTO accounts (email) VALUES ('newest@example.com')",
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = Case::new();
    let run = second
        .shipgate(&source)
        .actions()
        .args([
            "backup",
            "--destination",
            &destination,
            "--dump-format",
            "directory",
            "--jobs",
            "2",
        ])
        .run();
    run.expect_code(0);

    let listed = second.backups(&source, "list", &destination, &[]);
    listed.expect_code(0);
    let backups = listed.json()["backups"]
        .as_array()
        .expect("backups")
        .clone();
    assert_eq!(backups.len(), 2, "{}", listed.stdout);
    for backup in &backups {
        assert_eq!(backup["state"], "complete", "{backup}");
        assert_eq!(backup["format"], "directory", "{backup}");
        assert!(backup["size"].as_u64().unwrap_or(0) > 0, "{backup}");
    }
    assert_eq!(backups[0]["backup_id"], format!("backup-{}", second.id));

    // `latest` is the newer one: it has the extra row.
    let target = pg().create_database("dirlist_latest");
    let restore = second
        .shipgate(&source)
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
    assert_eq!(contents(&source), contents(&target));

    // The summary's restore by hand works as written.
    let manual = run
        .summary
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a manual restore in the summary");
    assert!(manual.contains("pg_restore --jobs="), "{manual}");
    let by_hand = pg().create_database("dirlist_by_hand");
    let scratch = tempfile::tempdir().expect("scratch");
    let aws_env = s3().aws_env();
    let mut command = std::process::Command::new("bash");
    command
        .args(["-c", manual])
        .current_dir(scratch.path())
        .env("DATABASE_URL", pg().url(&by_hand))
        .env(
            "PATH",
            crate::backup::path_with(crate::support::postgres::PgCluster::bin_dir()),
        );
    for (key, value) in &aws_env {
        command.env(key, value);
    }
    let out = command.output().expect("bash");
    assert!(
        out.status.success(),
        "{manual}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(contents(&source), contents(&by_hand));

    // Prune keeps the newest and deletes the other whole: sidecar and every file.
    let prune = second.backups(&source, "prune", &destination, &["--keep-last", "1"]);
    prune.expect_code(0);
    let keys = s3().list_keys(&bucket);
    let old = format!("list/backup-{}", first.id);
    assert!(
        keys.iter().all(|k| !k.starts_with(&old)),
        "the older backup is gone: {keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("list/backup-{}/", second.id))),
        "{keys:?}"
    );
}

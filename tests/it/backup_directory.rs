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
    let restore = case
        .shipgate(&source)
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
    assert_nothing_leaks(pg().password(), &run, &case, &[]);
}

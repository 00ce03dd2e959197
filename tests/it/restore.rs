//! `shipgate restore` on an S3-compatible server named only by `--endpoint-url` (or the
//! `s3-endpoint-url` input): every way of naming a backup reaches that server, never AWS.

use crate::backup::{Case, contents, pg, s3, seeded};

#[test]
fn restore_reaches_the_endpoint_url_by_record_location_and_state() {
    let source = seeded("endpoint");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/prod");
    let endpoint = s3().endpoint();
    let case = Case::new();
    case.shipgate_without_endpoint_env(&source)
        .args([
            "backup",
            "--destination",
            &destination,
            "--endpoint-url",
            &endpoint,
        ])
        .run()
        .expect_code(0);
    let location = format!("{destination}/backup-{}.sql.gz", case.id);
    let record = case.path().join("deployment-record.json");
    std::fs::write(
        &record,
        serde_json::json!({
            "deployment_id": case.id,
            "database_backup": {"backup_id": format!("backup-{}", case.id), "location": location},
        })
        .to_string(),
    )
    .expect("write record");

    let record_arg = record.display().to_string();
    let ways: [(&str, Vec<&str>); 3] = [
        ("--record", vec!["--record", &record_arg]),
        ("--location", vec!["--location", &location]),
        ("the state directory's backup.json", vec![]),
    ];
    for (way, naming) in ways {
        let target = pg().create_database("endpoint_target");
        let mut args = vec!["restore"];
        args.extend(naming);
        args.extend(["--endpoint-url", endpoint.as_str(), "--yes"]);
        let run = case
            .shipgate_without_endpoint_env(&source)
            .input("target-database-url", &pg().url(&target))
            .args(&args)
            .run();
        assert_eq!(run.code, 0, "restore by {way}: {}", run.stderr);
        assert_eq!(contents(&source), contents(&target), "restore by {way}");
    }

    // The action's input works the same way (the rollback workflow's `shipgate restore` child
    // inherits it).
    let target = pg().create_database("endpoint_input");
    let run = case
        .shipgate_without_endpoint_env(&source)
        .input("target-database-url", &pg().url(&target))
        .input("s3-endpoint-url", &endpoint)
        .input("record", &record_arg)
        .args(["restore", "--yes"])
        .run();
    assert_eq!(run.code, 0, "restore by the `record` input: {}", run.stderr);
    assert_eq!(contents(&source), contents(&target));
}

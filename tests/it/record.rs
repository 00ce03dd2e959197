//! `shipgate record` end to end: the record from full and partial state dirs (validated against
//! `schema/deployment-record.schema.json`), artifacts through a fake results service (create →
//! upload → finalize, no double upload, service down), and the GitHub deployment.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::fake_artifacts::{self, FakeArtifacts, JOB_BACKEND_ID, RUN_BACKEND_ID};
use crate::support::state_files::{self, SHA};
use crate::support::stub_http::dead_url;
use crate::support::{FakeGitHub, Shipgate, assert_no_secret, read_tree};

const ID: &str = "4242-9f8e7d6";
const DATABASE_URL: &str = "postgres://app:s3cr%40t%2Fpw-9Zq@db.internal:5432/app";

/// Validates `record` against the repository's schema, with formats checked.
pub fn assert_valid(record: &Value) {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schema/deployment-record.schema.json"
        ))
        .expect("schema file"),
    )
    .expect("schema JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(record)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "record does not match the schema:\n{}\n{record:#}",
        errors.join("\n")
    );
}

pub fn read_record(root: &Path, id: &str) -> Value {
    let path = root.join(id).join(format!("deployment-record-{id}.json"));
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("record JSON")
}

fn shipgate(dir: &Path, artifacts: Option<&FakeArtifacts>) -> Shipgate {
    let mut cmd = Shipgate::new(dir);
    cmd.actions()
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_RUN_ATTEMPT", "1")
        // GHE.com (not Enterprise Server): the artifact service is there.
        .env("GITHUB_SERVER_URL", "https://octo.ghe.com")
        .env("GITHUB_REPOSITORY", "octo/app")
        .env("GITHUB_REF", "refs/tags/v1.4.0")
        .env("GITHUB_ACTOR", "release-bot")
        .env("GITHUB_TRIGGERING_ACTOR", "alice")
        .env("DATABASE_URL", DATABASE_URL)
        .input("deployment-id", ID);
    if let Some(fake) = artifacts {
        cmd.env("ACTIONS_RESULTS_URL", fake.results_url())
            .env("ACTIONS_RUNTIME_TOKEN", fake.token());
    }
    cmd
}

fn days_from_now(rfc3339: &str) -> f64 {
    let at: jiff::Timestamp = rfc3339.parse().expect("timestamp");
    (at.as_second() - jiff::Timestamp::now().as_second()) as f64 / 86_400.0
}

#[test]
fn a_full_state_dir_makes_a_complete_record_and_uploads_every_artifact() {
    let fake = FakeArtifacts::start();
    let work = tempfile::tempdir().expect("workdir");
    let root = work.path().join(".shipgate");
    let dir = state_files::full(&root, ID, 2);
    // A hook that echoed a secret into the rollout log: it must not reach the artifact.
    std::fs::write(
        dir.join(format!("rollout-logs-{ID}.log")),
        "[canary] 5% healthy\n[hook] connecting to postgres://app:s3cr@t/pw-9Zq@db\n",
    )
    .expect("log");

    let run = shipgate(work.path(), Some(&fake))
        .input("services", "api-gateway\nauth-service, education-service")
        .input(
            "github-token",
            "test-token-never-used-but-secret-0123456789",
        )
        .args(["record"])
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["result"], "pass");
    assert_eq!(run.outputs["status"], "success");

    let record = read_record(&root, ID);
    assert_valid(&record);
    // Every seed 004 §8 field, with the values the state files gave.
    assert_eq!(record["schema_version"], 1);
    assert_eq!(record["deployment_id"], ID);
    assert_eq!(record["version"], "v1.4.0");
    assert_eq!(record["environment"], "production");
    assert_eq!(record["status"], "success");
    assert_eq!(record["git_sha"], SHA);
    assert_eq!(record["git_ref"], "refs/tags/v1.4.0");
    assert_eq!(record["triggered_by"], "alice");
    assert_eq!(
        record["services_deployed"],
        json!(["api-gateway", "auth-service", "education-service"])
    );
    assert_eq!(
        record["database_backup"]["backup_id"],
        format!("backup-{ID}")
    );
    assert_eq!(
        record["database_backup"]["location"],
        format!("s3://acme-backups/prod/backup-{ID}.sql.gz")
    );
    assert!(
        record["database_backup"]["timestamp"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(
        record["database_backup"]["sha256"],
        state_files::BACKUP_SHA256
    );
    assert_eq!(record["migrations_applied"], 3);
    let stages = record["rollout_stages"].as_array().expect("stages");
    let summary: Vec<(String, f64, String)> = stages
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap_or("").to_string(),
                s["traffic_percentage"].as_f64().unwrap_or(-1.0),
                s["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("canary".to_string(), 5.0, "healthy".to_string()),
            ("progressive".to_string(), 50.0, "healthy".to_string()),
            ("full".to_string(), 100.0, "healthy".to_string()),
        ]
    );
    assert_eq!(stages[0]["duration_minutes"], 5.02);
    assert_eq!(record["health_checks"]["api_gateway"], "healthy");
    assert_eq!(record["health_checks"]["auth_service"], "healthy");
    assert_eq!(record["health_checks"]["database"], "healthy");
    assert_eq!(record["health_checks"]["smoke_tests"], "passed");
    assert_eq!(record["rollback_available"], true);
    assert_eq!(record["rollback_window_minutes"], 60);
    // The window starts when smoke finished.
    let smoke: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("smoke.json")).expect("smoke"))
            .expect("json");
    let completed: jiff::Timestamp = smoke["timestamp"]
        .as_str()
        .expect("ts")
        .parse()
        .expect("ts");
    let deadline: jiff::Timestamp = record["rollback_deadline"]
        .as_str()
        .expect("deadline")
        .parse()
        .expect("deadline");
    assert_eq!(deadline.as_second() - completed.as_second(), 3600);
    assert_eq!(
        run.outputs["rollback-deadline"],
        record["rollback_deadline"].as_str().expect("deadline")
    );
    assert_eq!(record["not_run"], json!([]));
    assert_eq!(record["failure"], Value::Null);
    assert_eq!(
        record["previous_version"], "v1.3.2",
        "in the tag form of `version`"
    );
    assert_eq!(
        record["run"]["url"],
        "https://octo.ghe.com/octo/app/actions/runs/4242"
    );
    assert!(
        !dir.join(format!("deployment-failure-report-{ID}.md"))
            .exists()
    );

    // The artifacts, named as seed 004 lists them.
    let mut names = fake.names();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("backup-logs-{ID}"),
            format!("deployment-record-{ID}"),
            format!("migration-logs-{ID}"),
            format!("rollback-instructions-{ID}"),
            format!("rollout-logs-{ID}"),
            format!("smoke-test-logs-{ID}"),
        ]
    );
    for artifact in fake.artifacts() {
        assert!(artifact.finalized, "{} not finalized", artifact.name);
        assert_eq!(artifact.version, 7, "the toolkit's CreateArtifact version");
        assert_eq!(artifact.mime_type.as_deref(), Some("application/zip"));
        assert_eq!(
            artifact.size.as_deref(),
            Some(artifact.content.len().to_string().as_str())
        );
        assert_eq!(
            artifact.hash,
            Some(format!(
                "sha256:{}",
                fake_artifacts::sha256_hex(&artifact.content)
            ))
        );
        assert_eq!(
            artifact.blob_content_type.as_deref(),
            Some("application/zip")
        );
        assert_eq!(
            artifact.expires_at, None,
            "{}: no retention asked, the repository's setting applies",
            artifact.name
        );
    }
    let zipped = fake_artifacts::unzip(&fake.artifact(&format!("deployment-record-{ID}")).content);
    assert_eq!(zipped.len(), 1);
    assert_eq!(zipped[0].0, format!("deployment-record-{ID}.json"));
    let uploaded: Value = serde_json::from_slice(&zipped[0].1).expect("uploaded record");
    assert_eq!(uploaded, record);
    let smoke_files: Vec<String> =
        fake_artifacts::unzip(&fake.artifact(&format!("smoke-test-logs-{ID}")).content)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
    assert_eq!(
        smoke_files,
        vec![
            format!("smoke-test-logs-{ID}.log"),
            "smoke-junit.xml".to_string()
        ]
    );
    let instructions = fake_artifacts::unzip(
        &fake
            .artifact(&format!("rollback-instructions-{ID}"))
            .content,
    );
    let text = String::from_utf8(instructions[0].1.clone()).expect("markdown");
    assert!(
        text.contains(&format!(
            "shipgate --deployment-id {ID} --environment production rollback"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("shipgate restore --backup-id backup-{ID} --yes")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "aws s3 cp 's3://acme-backups/prod/backup-{ID}.sql.gz' - | gunzip | psql"
        )),
        "{text}"
    );
    assert!(
        text.contains(record["rollback_deadline"].as_str().expect("deadline")),
        "{text}"
    );

    // The protocol: list first, then create → blocks → block list → finalize per artifact, all
    // with the backend ids from the token.
    let calls = fake.calls();
    assert_eq!(calls[0].method, "ListArtifacts");
    let sequence: Vec<&str> = calls[1..5].iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        sequence,
        [
            "CreateArtifact",
            "PutBlock",
            "PutBlockList",
            "FinalizeArtifact"
        ]
    );
    for call in calls.iter().filter(|c| !c.method.starts_with("Put")) {
        assert_eq!(call.body["workflow_run_backend_id"], RUN_BACKEND_ID);
        assert_eq!(call.body["workflow_job_run_backend_id"], JOB_BACKEND_ID);
        assert_eq!(call.status, 200, "{call:?}");
    }
    assert!(calls.iter().all(|c| c.status < 300), "{calls:?}");

    // No secret anywhere: streams, runner files, state files, staged and uploaded artifacts.
    let mut places = run.everything();
    let state_files: Vec<(String, String)> = read_tree(&root)
        .into_iter()
        .filter(|(path, _)| !path.ends_with(&format!("{ID}/rollout-logs-{ID}.log")))
        .collect();
    places.extend(state_files);
    for artifact in fake.artifacts() {
        for (name, bytes) in fake_artifacts::unzip(&artifact.content) {
            places.push((
                format!("artifact {}/{name}", artifact.name),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    for secret in [
        "s3cr@t/pw-9Zq",
        DATABASE_URL,
        &fake.token(),
        &fake.sig(),
        "test-token-never-used-but-secret-0123456789",
    ] {
        assert_no_secret(secret, places.iter().map(|(n, t)| (n.clone(), t.as_str())));
    }
    let staged = std::fs::read_to_string(
        root.join(ID)
            .join("artifacts")
            .join(format!("rollout-logs-{ID}"))
            .join(format!("rollout-logs-{ID}.log")),
    )
    .expect("staged log");
    assert!(
        staged.contains("[hook] connecting to postgres://app:***@db"),
        "{staged}"
    );
}

#[test]
fn a_rerun_never_uploads_an_artifact_twice() {
    let fake = FakeArtifacts::start();
    let work = tempfile::tempdir().expect("workdir");
    let root = work.path().join(".shipgate");
    state_files::full(&root, ID, 2);
    shipgate(work.path(), Some(&fake))
        .args(["record"])
        .run()
        .expect_code(0);
    let created = fake.count("CreateArtifact");
    assert_eq!(created, 6);

    // The same job re-run, and a fresh job (no state but what the workflow shares).
    let again = shipgate(work.path(), Some(&fake))
        .args(["--format", "json", "record"])
        .run();
    again.expect_code(0);
    assert_eq!(
        fake.count("CreateArtifact"),
        created,
        "a re-run created artifacts again"
    );
    assert_eq!(fake.count("ListArtifacts"), 2);
    let states: Vec<String> = again.json()["artifacts"]["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a["state"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(states, vec!["exists"; 6]);
    assert_eq!(again.outputs["artifacts"].split(',').count(), 6);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

#[test]
fn a_partial_state_dir_still_makes_a_valid_record_that_says_what_did_not_run() {
    let fake = FakeArtifacts::start();
    let work = tempfile::tempdir().expect("workdir");
    let root = work.path().join(".shipgate");
    state_files::write(&root, ID, "validate.json", &state_files::validate(ID, 20));
    state_files::write(&root, ID, "gate.json", &state_files::gate(18, "pass"));
    state_files::write(&root, ID, "backup.json", &state_files::backup(ID, 15));
    state_files::write(
        &root,
        ID,
        "migrate.json",
        &state_files::migrate("fail", 10, &format!("migration-logs-{ID}.log")),
    );
    std::fs::write(
        root.join(ID).join(format!("migration-logs-{ID}.log")),
        "relation \"orders\" already exists\n",
    )
    .expect("log");

    let run = shipgate(work.path(), Some(&fake))
        .input("status", "failure")
        .args(["record"])
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["status"], "failure");
    assert_eq!(run.outputs["failed-stage"], "migrate");
    let record = read_record(&root, ID);
    assert_valid(&record);
    assert_eq!(record["status"], "failure");
    assert_eq!(record["not_run"], json!(["rollout", "smoke"]));
    assert_eq!(record["rollout_stages"], json!([]));
    assert_eq!(record["health_checks"], json!({"smoke_tests": "not_run"}));
    assert_eq!(record["migrations_applied"], 1);
    assert_eq!(record["failure"]["stage"], "migrate");
    assert!(
        record["failure"]["error"]
            .as_str()
            .expect("error")
            .contains("already exists")
    );
    assert_eq!(record["failure"]["backup_available"], true);
    assert!(
        record["failure"]["action_required"]
            .as_str()
            .expect("action")
            .contains(&format!("backup-{ID}"))
    );

    let report = fake_artifacts::unzip(
        &fake
            .artifact(&format!("deployment-failure-report-{ID}"))
            .content,
    );
    let text = String::from_utf8(report[0].1.clone()).expect("report");
    for needle in [
        ID,
        "v1.4.0",
        "| Failed stage | `migrate` |",
        "Backup available | yes",
        "## Action required",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    assert!(fake.names().contains(&format!("migration-logs-{ID}")));
    assert!(!fake.names().iter().any(|n| n.starts_with("rollout-logs")));
    assert!(run.summary.contains("did not run"), "{}", run.summary);

    // Nothing ran at all (the failure handler of a run that died in `validate`).
    let empty = "4243-0000000";
    let run = shipgate(work.path(), None)
        .input("deployment-id", empty)
        .args(["record", "--status", "cancelled"])
        .run();
    run.expect_code(0);
    let record = read_record(&root, empty);
    assert_valid(&record);
    assert_eq!(record["version"], "unknown");
    assert_eq!(record["failure"]["stage"], "validate");
    assert_eq!(record["database_backup"], Value::Null);
    assert_eq!(record["migrations_applied"], Value::Null);
    assert_eq!(record["not_run"].as_array().map(Vec::len), Some(6));
}

#[test]
fn an_absent_or_unreachable_service_leaves_the_files_and_warns() {
    let work = tempfile::tempdir().expect("workdir");
    let root = work.path().join(".shipgate");
    state_files::full(&root, ID, 2);

    // Absent (a local run, GHES): files written, a notice that says where.
    let run = shipgate(work.path(), None).args(["record"]).run();
    run.expect_code(0);
    let artifacts_dir = root.join(ID).join("artifacts");
    let shown = format!(".shipgate/{ID}/artifacts");
    assert!(
        run.stderr
            .contains("artifact service is not available here"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "upload each with `actions/upload-artifact` (`path: {shown}/<name>/`)"
        )),
        "{}",
        run.stderr
    );
    assert!(
        artifacts_dir
            .join(format!("deployment-record-{ID}"))
            .join(format!("deployment-record-{ID}.json"))
            .is_file()
    );
    assert_eq!(run.outputs["artifacts-dir"], shown);
    assert_eq!(run.outputs["artifacts"], "");

    // Down: retried, then a warning naming each artifact; the step still passes.
    let fake = FakeArtifacts::start();
    let mut cmd = shipgate(work.path(), Some(&fake));
    cmd.env("ACTIONS_RESULTS_URL", dead_url());
    let run = cmd.args(["record"]).run();
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("::warning title=shipgate record::artifact `deployment-record-"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("cannot reach the artifact service for `ListArtifacts` after 5 attempt(s)"),
        "{}",
        run.stderr
    );
    assert_eq!(run.outputs["result"], "pass");

    // Down and required: exit 3, result fail, files still there.
    let mut cmd = shipgate(work.path(), Some(&fake));
    cmd.env("ACTIONS_RESULTS_URL", dead_url());
    let run = cmd.args(["record", "--artifacts-required"]).run();
    run.expect_code(3);
    assert_eq!(run.outputs["result"], "fail");
    assert!(
        run.stderr
            .contains("could not be uploaded and `artifacts-required` is set"),
        "{}",
        run.stderr
    );
    assert!(
        root.join(ID)
            .join(format!("deployment-record-{ID}.json"))
            .is_file()
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(ID).join("record.json")).expect("record.json"),
    )
    .expect("json");
    assert_eq!(state["result"], "fail");
}

#[test]
fn transient_service_errors_are_retried_and_retention_is_capped() {
    let fake = FakeArtifacts::start();
    fake.fail_next("CreateArtifact", 2, 503);
    fake.fail_next("PutBlock", 1, 500);
    let work = tempfile::tempdir().expect("workdir");
    let root = work.path().join(".shipgate");
    state_files::full(&root, ID, 2);
    let run = shipgate(work.path(), Some(&fake))
        .env("GITHUB_RETENTION_DAYS", "90")
        .args(["record", "--retention-days", "365"])
        .run();
    run.expect_code(0);
    assert_eq!(
        fake.artifacts().iter().filter(|a| a.finalized).count(),
        6,
        "{}",
        run.stderr
    );
    assert_eq!(fake.count("CreateArtifact"), 8);
    for artifact in fake.artifacts() {
        let days = days_from_now(artifact.expires_at.as_deref().expect("expires_at"));
        assert!((89.9..=90.1).contains(&days), "{days}");
    }
    assert!(
        run.stderr.contains("retrying (attempt 1 of 5)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("retention `365` days is more than the repository allows"),
        "{}",
        run.stderr
    );
}

fn github() -> FakeGitHub {
    let gh = FakeGitHub::start();
    gh.repo("octo", "app", "main")
        .commit(SHA, &[])
        .branch("main", SHA)
        .lightweight_tag("v1.4.0", SHA)
        .commit_status(SHA, "ci/build", "success");
    gh
}

#[test]
fn a_github_deployment_is_created_for_the_exact_sha_with_its_status_sequence() {
    let gh = github();
    let work = tempfile::tempdir().expect("workdir");
    let root = work.path().join(".shipgate");
    state_files::full(&root, ID, 2);
    let record = |cmd: &mut Shipgate| {
        cmd.env("GITHUB_API_URL", gh.url())
            .input("github-token", &gh.token())
            .input("github-deployment", "true")
            .input("environment-url", "https://app.example")
            .args(["record"])
            .run()
    };
    let run = record(&mut shipgate(work.path(), None));
    run.expect_code(0);
    let created = gh.created_deployments();
    assert_eq!(created.len(), 1);
    let body = &created[0];
    assert_eq!(body["ref"], SHA);
    assert_eq!(body["auto_merge"], false);
    assert_eq!(
        body["required_contexts"],
        json!(["ci/build"]),
        "check runs are not commit statuses"
    );
    assert_eq!(body["environment"], "production");
    assert_eq!(body["production_environment"], true);
    assert_eq!(body["transient_environment"], false);
    assert_eq!(body["payload"]["deployment_id"], ID);
    assert_eq!(body["payload"]["version"], "v1.4.0");
    let id = gh.deployments()[0]["id"].as_u64().expect("id");
    assert_eq!(run.outputs["github-deployment-id"], id.to_string());
    assert_eq!(gh.deployment_states(id), ["in_progress", "success"]);
    let statuses = gh.deployment_statuses(id);
    for status in &statuses {
        assert_eq!(
            status["log_url"],
            "https://octo.ghe.com/octo/app/actions/runs/4242"
        );
        assert_eq!(status["environment_url"], "https://app.example");
    }
    let record_json = read_record(&root, ID);
    assert_valid(&record_json);
    assert_eq!(record_json["github_deployment"]["id"], id);

    // A re-run reuses the deployment: no second one for the same deployment id.
    record(&mut shipgate(work.path(), None)).expect_code(0);
    assert_eq!(gh.created_deployments().len(), 1);
    assert_eq!(
        gh.deployment_states(id),
        ["in_progress", "success", "in_progress", "success"]
    );
    let posts: Vec<_> = gh
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/deployments"))
        .collect();
    assert_eq!(posts.len(), 1);

    // A failed deployment ends `failure`.
    let failed_id = "4244-9f8e7d6";
    state_files::write(
        &root,
        failed_id,
        "validate.json",
        &state_files::validate(failed_id, 5),
    );
    let mut smoke = state_files::smoke(1);
    smoke["result"] = json!("fail");
    smoke["tests"][1]["status"] = json!("failed");
    state_files::write(&root, failed_id, "smoke.json", &smoke);
    let run = record(shipgate(work.path(), None).input("deployment-id", failed_id));
    run.expect_code(0);
    assert_eq!(run.outputs["status"], "failure");
    let failed = gh
        .deployments()
        .into_iter()
        .find(|d| d["payload"]["deployment_id"] == failed_id)
        .expect("deployment");
    assert_eq!(
        gh.deployment_states(failed["id"].as_u64().expect("id")),
        ["in_progress", "failure"]
    );
    assert_eq!(failed["sha"], SHA);
    let record_json = read_record(&root, failed_id);
    assert_valid(&record_json);
    assert_eq!(record_json["failure"]["stage"], "smoke");
    assert_eq!(record_json["health_checks"]["auth_service"], "unhealthy");
    assert_no_secret(
        &gh.token(),
        run.everything()
            .iter()
            .map(|(n, t)| (n.clone(), t.as_str())),
    );
    assert_no_secret(
        &gh.token(),
        read_tree(&root)
            .iter()
            .map(|(n, t)| (n.clone(), t.as_str())),
    );
}

/// `record` reads the `gate.json` that the real `gate` writes (not a hand-written shape): the
/// deployment's `required_contexts` are the commit statuses the gate required and saw pass —
/// never the check runs, and never an empty list that would make GitHub skip the re-check.
#[test]
fn required_contexts_come_from_the_gate_json_the_real_gate_wrote() {
    let gh = github();
    gh.check(SHA, "test", "success");
    let work = tempfile::tempdir().expect("workdir");
    let root = work.path().join(".shipgate");
    let run = shipgate(work.path(), None)
        .env("GITHUB_API_URL", gh.url())
        .input("github-token", &gh.token())
        .input("interval", "100ms")
        .input("discovery-timeout", "300ms")
        .args([
            "gate",
            "--sha",
            SHA,
            "--require",
            "ci/build",
            "--require",
            "test",
        ])
        .run();
    run.expect_code(0);
    let run = shipgate(work.path(), None)
        .env("GITHUB_API_URL", gh.url())
        .input("github-token", &gh.token())
        .env("GITHUB_SHA", SHA)
        .input("github-deployment", "true")
        .args(["record"])
        .run();
    run.expect_code(0);
    let created = gh.created_deployments();
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0]["required_contexts"],
        json!(["ci/build"]),
        "the gate required the commit status `ci/build` and the check run `test`"
    );
    assert_valid(&read_record(&root, ID));
}

#[test]
fn github_refusing_the_deployment_is_reported_after_the_record_is_written() {
    let gh = github();
    gh.commit_status(SHA, "ci/build", "failure");
    let work = tempfile::tempdir().expect("workdir");
    let root = work.path().join(".shipgate");
    state_files::full(&root, ID, 2);
    let run = shipgate(work.path(), None)
        .env("GITHUB_API_URL", gh.url())
        .input("github-token", &gh.token())
        .args(["record", "--github-deployment"])
        .run();
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("required commit statuses are not green (ci/build)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the record of `4242-9f8e7d6` is written"),
        "{}",
        run.stderr
    );
    assert_valid(&read_record(&root, ID));
    assert!(gh.deployments().is_empty());
}

/// Issue 18, item 3: a `rollout.json` still saying `in_progress` or `rolling_back` was left by a
/// rollout that was killed: the deployment failed, whatever the other state files say.
#[test]
fn an_interrupted_rollout_is_recorded_as_a_failure() {
    for (result, expected) in [
        (
            "in_progress",
            "the rollout was interrupted at stage `progressive` (50% of traffic) and did not roll back",
        ),
        (
            "rolling_back",
            "the rollout was interrupted at stage `progressive` (50% of traffic) while rolling back",
        ),
    ] {
        let work = tempfile::tempdir().expect("workdir");
        let root = work.path().join(".shipgate");
        state_files::full(&root, ID, 2);
        std::fs::remove_file(root.join(ID).join("smoke.json")).expect("no smoke ran");
        let mut rollout = state_files::rollout(3);
        rollout["result"] = json!(result);
        rollout["current_stage"] = json!("progressive");
        rollout["current_weight"] = json!(50);
        rollout["stages"][1]["status"] = json!("running");
        rollout["stages"][2]["status"] = json!("not_run");
        if result == "rolling_back" {
            rollout["reason"] = json!("cancelled by SIGINT during stage `progressive` (50%)");
        }
        state_files::write(&root, ID, "rollout.json", &rollout);

        let run = shipgate(work.path(), None).args(["record"]).run();
        run.expect_code(0);
        assert_eq!(run.outputs["status"], "failure", "{result}");
        assert_eq!(run.outputs["failed-stage"], "rollout");
        let record = read_record(&root, ID);
        assert_valid(&record);
        assert_eq!(record["status"], "failure");
        let error = record["failure"]["error"].as_str().expect("error");
        assert!(error.contains(expected), "{result}: {error}");
        assert!(error.contains(&format!("`{result}`")), "{error}");
        assert_eq!(record["rollout_stages"][0]["status"], "healthy");
        assert_eq!(record["rollout_stages"][1]["status"], "interrupted");
        assert_eq!(record["pipeline"][4]["stage"], "rollout");
        assert_eq!(record["pipeline"][4]["result"], "fail");
        assert!(
            record["failure"]["action_required"]
                .as_str()
                .expect("action")
                .starts_with("ACT NOW"),
            "{record:#}"
        );
        assert_eq!(record["rollback_available"], true);
        assert!(
            root.join(ID)
                .join(format!("deployment-failure-report-{ID}.md"))
                .exists()
        );
    }
}

/// Issue 18, item 8: `--rollback-window-minutes 4294967295` (or the env var) overflowed the
/// deadline, which fell back to "now": the window closed at once. The window is at most a week.
#[test]
fn an_absurd_rollback_window_is_a_usage_error_naming_the_maximum() {
    let work = tempfile::tempdir().expect("workdir");
    let root = work.path().join(".shipgate");
    state_files::full(&root, ID, 2);
    let cases: [(&str, Option<&str>, Option<&str>); 3] = [
        ("4294967295", Some("4294967295"), None),
        ("999999999999", None, Some("999999999999")),
        ("10081", Some("10081"), None),
    ];
    for (value, flag, env) in cases {
        let mut cmd = shipgate(work.path(), None);
        cmd.args(["record"]);
        if let Some(flag) = flag {
            cmd.args(["--rollback-window-minutes", flag]);
        }
        if let Some(env) = env {
            cmd.env("ROLLBACK_WINDOW_MINUTES", env);
        }
        let run = cmd.run();
        run.expect_code(2);
        assert!(
            run.stderr.contains(&format!("`{value}`")) && run.stderr.contains("10080"),
            "{value}:\n{}",
            run.stderr
        );
        assert!(
            !root
                .join(ID)
                .join(format!("deployment-record-{ID}.json"))
                .exists(),
            "nothing written"
        );
    }
    // The maximum itself is fine: the deadline is a week after completion.
    let run = shipgate(work.path(), None)
        .args(["record", "--rollback-window-minutes", "10080"])
        .run();
    run.expect_code(0);
    let record = read_record(&root, ID);
    assert_eq!(record["rollback_window_minutes"], 10080);
    let days = days_from_now(record["rollback_deadline"].as_str().expect("deadline"));
    assert!((6.9..7.0).contains(&days), "{days}");
}

//! `shipgate rollback` end to end: inside the window (hook, restore, health, record and GitHub
//! deployment marked), outside it (refused, then `--force`), and failures (exit 5).

use std::path::Path;

use serde_json::{Value, json};

use crate::record::{assert_valid, read_record};
use crate::support::fake_artifacts::{self, FakeArtifacts};
use crate::support::state_files::{self, SHA};
use crate::support::stub_http::{Outgoing, StubServer};
use crate::support::{FakeGitHub, Shipgate, assert_no_secret, read_tree};

const ID: &str = "6161-9f8e7d6";
const DATABASE_URL: &str = "postgres://app:r0llb%40ck-Pw7@db.internal:5432/app";

/// Runs `record` for a deployment that completed `minutes_ago` minutes ago.
fn recorded(work: &Path, minutes_ago: i64, gh: Option<&FakeGitHub>) {
    state_files::full(&work.join(".shipgate"), ID, minutes_ago);
    let mut cmd = Shipgate::new(work);
    cmd.input("deployment-id", ID)
        .env("GITHUB_REPOSITORY", "octo/app")
        .args(["record"]);
    if let Some(gh) = gh {
        cmd.env("GITHUB_API_URL", gh.url())
            .input("github-token", &gh.token())
            .input("github-deployment", "true");
    }
    cmd.run().expect_code(0);
}

fn rollback(work: &Path) -> Shipgate {
    let mut cmd = Shipgate::new(work);
    cmd.actions()
        .input("deployment-id", ID)
        .env("DATABASE_URL", DATABASE_URL)
        .env("GITHUB_REPOSITORY", "octo/app");
    cmd
}

/// A hook script that writes its environment to `marker`.
fn hook(marker: &Path) -> String {
    format!(
        "echo \"$SHIPGATE_DEPLOYMENT_ID $SHIPGATE_VERSION -> $SHIPGATE_PREVIOUS_VERSION: $SHIPGATE_ROLLBACK_REASON\" > '{}'; echo traffic moved back",
        marker.display()
    )
}

#[test]
fn inside_the_window_the_hook_restore_and_health_run_and_everything_is_marked() {
    let gh = FakeGitHub::start();
    gh.repo("octo", "app", "main")
        .commit(SHA, &[])
        .branch("main", SHA)
        .commit_status(SHA, "ci/build", "success");
    let fake = FakeArtifacts::start();
    let health = StubServer::start(
        Outgoing::json(200, &json!({"status": "pass", "version": "1.3.2"}))
            .header("content-type", "application/health+json"),
    );
    health.then(vec![Outgoing::new(503, "warming up")]);
    let work = tempfile::tempdir().expect("workdir");
    recorded(work.path(), 5, Some(&gh));
    let hook_marker = work.path().join("hook-ran");
    let restore_marker = work.path().join("restore-ran");

    let run = rollback(work.path())
        .env("GITHUB_API_URL", gh.url())
        .input("github-token", &gh.token())
        .env("ACTIONS_RESULTS_URL", fake.results_url())
        .env("ACTIONS_RUNTIME_TOKEN", fake.token())
        .input("rollback-command", &hook(&hook_marker))
        .input("restore-database", "true")
        .input(
            "restore-command",
            &format!(
                "echo \"$SHIPGATE_BACKUP_ID $SHIPGATE_BACKUP_LOCATION\" > '{}'",
                restore_marker.display()
            ),
        )
        .input("health-urls", &format!("{}/health", health.url()))
        .input("reason", "checkout errors up 4x")
        .args(["rollback"])
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["result"], "pass");
    assert_eq!(run.outputs["status"], "rolled_back");
    assert_eq!(
        std::fs::read_to_string(&hook_marker)
            .expect("hook ran")
            .trim(),
        format!("{ID} v1.4.0 -> v1.3.2: checkout errors up 4x")
    );
    assert_eq!(
        std::fs::read_to_string(&restore_marker)
            .expect("restore ran")
            .trim(),
        format!("backup-{ID} s3://acme-backups/prod/backup-{ID}.sql.gz")
    );
    assert_eq!(health.requests().len(), 2, "polled until healthy");

    let root = work.path().join(".shipgate");
    let record = read_record(&root, ID);
    assert_valid(&record);
    assert_eq!(record["status"], "rolled_back");
    assert_eq!(record["rollback_available"], false);
    assert_eq!(record["rollback"]["reason"], "checkout errors up 4x");
    assert_eq!(record["rollback"]["database_restored"], true);
    assert_eq!(record["rollback"]["health"][0]["state"], "healthy");

    let id = record["github_deployment"]["id"]
        .as_u64()
        .expect("GitHub deployment");
    assert_eq!(
        gh.deployment_states(id),
        ["in_progress", "success", "inactive"]
    );
    let statuses = gh.deployment_statuses(id);
    assert!(
        statuses[2]["description"]
            .as_str()
            .expect("description")
            .contains("rolled back by shipgate")
    );

    let incident = std::fs::read_to_string(work.path().join(&run.outputs["incident-path"]))
        .expect("incident stub");
    for needle in [
        &format!("# Incident: rollback of deployment `{ID}`"),
        "| Version rolled back | `v1.4.0` |",
        "| Back to | `v1.3.2` |",
        "checkout errors up 4x",
        &format!("yes, from `backup-{ID}`"),
        "## Root cause",
    ] {
        assert!(
            incident.contains(needle),
            "`{needle}` missing from:\n{incident}"
        );
    }
    let mut names = fake.names();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("deployment-record-{ID}-rolled-back"),
            format!("incident-{ID}")
        ]
    );
    let uploaded = fake_artifacts::unzip(&fake.artifact(&format!("incident-{ID}")).content);
    assert_eq!(uploaded.len(), 2);
    assert!(String::from_utf8_lossy(&uploaded[1].1).contains("traffic moved back"));

    // Idempotent: a second rollback does nothing.
    std::fs::remove_file(&hook_marker).expect("reset marker");
    let again = rollback(work.path())
        .input("rollback-command", &hook(&hook_marker))
        .args(["rollback"])
        .run();
    again.expect_code(0);
    assert!(
        again.stderr.contains("already rolled back"),
        "{}",
        again.stderr
    );
    assert!(!hook_marker.exists());

    let mut places = run.everything();
    places.extend(read_tree(&root));
    for secret in [DATABASE_URL, "r0llb@ck-Pw7", &gh.token(), &fake.token()] {
        assert_no_secret(secret, places.iter().map(|(n, t)| (n.clone(), t.as_str())));
    }
}

#[test]
fn outside_the_window_it_refuses_unless_forced() {
    let work = tempfile::tempdir().expect("workdir");
    recorded(work.path(), 90, None);
    let marker = work.path().join("hook-ran");
    let run = rollback(work.path())
        .input("rollback-command", &hook(&marker))
        .args(["rollback"])
        .run();
    run.expect_code(1);
    let record = read_record(&work.path().join(".shipgate"), ID);
    let deadline = record["rollback_deadline"].as_str().expect("deadline");
    assert!(
        run.stderr.contains(&format!(
            "the rollback window of deployment `{ID}` closed at {deadline}"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("pass `--force` (input `force: true`)"),
        "{}",
        run.stderr
    );
    assert!(!marker.exists(), "the hook ran after the deadline");
    assert_eq!(record["status"], "success");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join(".shipgate").join(ID).join("rollback.json"))
            .expect("rollback.json"),
    )
    .expect("json");
    assert_eq!(state["refused"], true);

    let run = rollback(work.path())
        .input("rollback-command", &hook(&marker))
        .input("force", "true")
        .args(["rollback", "--reason", "data corruption found late"])
        .run();
    run.expect_code(0);
    assert!(marker.exists());
    assert!(
        run.stderr.contains("because `--force` was given"),
        "{}",
        run.stderr
    );
    let record = read_record(&work.path().join(".shipgate"), ID);
    assert_valid(&record);
    assert_eq!(record["status"], "rolled_back");
    assert_eq!(record["rollback"]["forced"], true);
}

#[test]
fn a_failing_hook_or_restore_exits_5_and_leaves_the_record_alone() {
    let work = tempfile::tempdir().expect("workdir");
    recorded(work.path(), 5, None);
    let run = rollback(work.path())
        .input("rollback-command", "echo cannot reach cluster >&2; exit 7")
        .args(["rollback"])
        .run();
    run.expect_code(5);
    assert!(
        run.stderr.contains("the rollback hook failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("exit code 7"), "{}", run.stderr);
    assert_eq!(run.outputs["result"], "fail");
    let root = work.path().join(".shipgate");
    assert_eq!(read_record(&root, ID)["status"], "success");

    // The default restore runs this very executable: `shipgate restore --backup-id … --yes`.
    let run = rollback(work.path())
        .input("rollback-command", "true")
        .args(["rollback", "--restore-database"])
        .run();
    run.expect_code(5);
    assert!(
        run.stderr.contains(&format!(
            "restoring the database from backup `backup-{ID}` failed"
        )),
        "{}",
        run.stderr
    );
    let log = std::fs::read_to_string(root.join(ID).join(format!("rollback-logs-{ID}.log")))
        .expect("log");
    assert!(
        log.contains(&format!("restore --backup-id backup-{ID} --yes")),
        "{log}"
    );
    assert_eq!(read_record(&root, ID)["status"], "success");

    // Nothing to roll back with.
    let run = rollback(work.path()).args(["rollback"]).run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("nothing to roll back with"),
        "{}",
        run.stderr
    );
}

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

/// A hook script (for `hook-shell: true`) that writes its environment to `marker`.
fn hook(marker: &Path) -> String {
    format!(
        "echo \"$SHIPGATE_EVENT/$SHIPGATE_STAGE/$SHIPGATE_WEIGHT $SHIPGATE_DEPLOYMENT_ID $SHIPGATE_VERSION -> $SHIPGATE_PREVIOUS_VERSION in $SHIPGATE_ENVIRONMENT: $SHIPGATE_REASON\" > '{}'; echo traffic moved back",
        marker.display()
    )
}

/// An executable script in `dir` (for hooks run without a shell) that appends its
/// `SHIPGATE_*` fields and arguments to `<name>.calls`.
fn script(dir: &Path, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$SHIPGATE_EVENT $SHIPGATE_STAGE $SHIPGATE_WEIGHT $SHIPGATE_VERSION $SHIPGATE_REASON $*\" >> '{}.calls'\n",
            path.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn calls(script: &Path) -> String {
    std::fs::read_to_string(format!("{}.calls", script.display())).unwrap_or_default()
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
        .input("rollback-hook", &hook(&hook_marker))
        .input("hook-shell", "true")
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
        format!("rollback/rollback/0 {ID} v1.4.0 -> v1.3.2 in production: checkout errors up 4x")
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
        .input("rollback-hook", &hook(&hook_marker))
        .input("hook-shell", "true")
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
        .input("rollback-hook", &hook(&marker))
        .input("hook-shell", "true")
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
        .input("rollback-hook", &hook(&marker))
        .input("hook-shell", "true")
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
        .input("rollback-hook", "echo cannot reach cluster >&2; exit 7")
        .input("hook-shell", "true")
        .input("hook-retries", "1")
        .args(["rollback"])
        .run();
    run.expect_code(5);
    assert!(
        run.stderr.contains("the rollback hook failed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("exit code 7 (2 attempts)"),
        "{}",
        run.stderr
    );
    assert_eq!(run.outputs["result"], "fail");
    let root = work.path().join(".shipgate");
    assert_eq!(read_record(&root, ID)["status"], "success");
    let state = rollback_json(work.path());
    assert_eq!(state["hook"]["kind"], "command");
    assert_eq!(state["hook"]["attempts"][1]["exit_code"], 7);
    assert!(
        !root.join(ID).join(format!("incident-{ID}.md")).exists(),
        "no incident stub for a rollback that did not happen"
    );

    // A hook that is not there is a usage error before anything runs.
    let run = rollback(work.path())
        .args([
            "rollback",
            "--rollback-hook",
            "./deploy/no-such-rollback.sh",
        ])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains(
            "the rollback hook command `./deploy/no-such-rollback.sh` is not an executable file"
        ),
        "{}",
        run.stderr
    );

    // The default restore runs this very executable: `shipgate restore --location … --yes`.
    let run = rollback(work.path())
        .input("rollback-hook", "true")
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
        log.contains(&format!(
            "restore --location s3://acme-backups/prod/backup-{ID}.sql.gz --yes"
        )),
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

fn rollback_json(work: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(work.join(".shipgate").join(ID).join("rollback.json"))
            .expect("rollback.json"),
    )
    .expect("json")
}

#[test]
fn a_webhook_rollback_hook_gets_the_payload_and_its_url_never_leaks() {
    let token = "T0-r0llb4ck-w3bh00k-t0k3n";
    let receiver = StubServer::start(Outgoing::json(200, &json!({"ok": true})));
    receiver.then(vec![Outgoing::new(503, "busy")]);
    let work = tempfile::tempdir().expect("workdir");
    recorded(work.path(), 5, None);
    let url = format!("{}/hooks/{token}", receiver.url());

    let run = rollback(work.path())
        .input("rollback-hook-url", &url)
        .input("reason", "p95 doubled")
        .args(["rollback"])
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["status"], "rolled_back");
    let posts = receiver.requests();
    assert_eq!(posts.len(), 2, "retried after the 503");
    for post in &posts {
        assert_eq!(post.method, "POST");
        assert_eq!(post.path, format!("/hooks/{token}"));
        assert_eq!(post.header("x-shipgate-event"), Some("rollback"));
        assert_eq!(
            post.header("x-shipgate-delivery"),
            Some(format!("{ID}.rollback.rollback").as_str())
        );
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(
            post.json(),
            json!({
                "event": "rollback",
                "stage": "rollback",
                "weight": 0,
                "version": "v1.4.0",
                "deployment_id": ID,
                "previous_version": "v1.3.2",
                "environment": "production",
                "failed_stage": null,
                "reason": "p95 doubled",
            })
        );
    }
    let state = rollback_json(work.path());
    assert_eq!(state["result"], "pass");
    assert_eq!(state["hook"]["kind"], "webhook");
    assert_eq!(state["hook"]["attempts"][0]["http_status"], 503);
    assert_eq!(state["hook"]["attempts"][1]["http_status"], 200);
    assert_eq!(state["steps"][0]["command"], "webhook (POST, URL hidden)");
    assert!(
        run.stderr.contains("::add-mask::"),
        "the webhook URL is masked"
    );
    let record = read_record(&work.path().join(".shipgate"), ID);
    assert_valid(&record);
    assert_eq!(record["status"], "rolled_back");

    let mut places = run.everything();
    places.extend(read_tree(&work.path().join(".shipgate")));
    for secret in [token, url.as_str()] {
        assert_no_secret(secret, places.iter().map(|(n, t)| (n.clone(), t.as_str())));
    }
}

#[test]
fn one_shipgate_yml_configures_the_automatic_and_the_manual_rollback() {
    // The `rollout:` section's rollback hook (argv, no shell), its timeout and retries; the
    // `rollback:` section overrides one key.
    let work = tempfile::tempdir().expect("workdir");
    let shift = script(work.path(), "shift.sh");
    let back = script(work.path(), "back.sh");
    std::fs::write(
        work.path().join("shipgate.yml"),
        "rollout:\n  hook: ./shift.sh\n  rollback-hook: [./back.sh, --all, \"to previous\"]\n  hook-timeout: 30s\n  hook-retries: 3\nrollback:\n  hook-retries: 0\n",
    )
    .expect("config");
    recorded(work.path(), 5, None);
    let run = rollback(work.path())
        .args(["rollback", "--reason", "errors"])
        .run();
    run.expect_code(0);
    assert_eq!(
        calls(&back),
        "rollback rollback 0 v1.4.0 errors --all to previous\n"
    );
    assert_eq!(
        calls(&shift),
        "",
        "the stage hook is not run when a rollback hook exists"
    );
    assert!(
        run.stderr.contains(
            "(command): `./back.sh --all to previous` (timeout 30s per attempt, 0 retries)"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(rollback_json(work.path())["stage_hook_reused"], false);

    // Without a rollback hook, the stage hook runs at weight 0 — what `rollout` does too.
    let work = tempfile::tempdir().expect("workdir");
    let shift = script(work.path(), "shift.sh");
    std::fs::write(
        work.path().join("shipgate.yml"),
        "rollout:\n  hook: ./shift.sh --service api\n",
    )
    .expect("config");
    recorded(work.path(), 5, None);
    let run = rollback(work.path())
        .args(["rollback", "--reason", "errors"])
        .run();
    run.expect_code(0);
    assert_eq!(
        calls(&shift),
        "rollback rollback 0 v1.4.0 errors --service api\n"
    );
    assert!(
        run.stderr
            .contains("no rollback hook configured: running the stage hook"),
        "{}",
        run.stderr
    );
    assert_eq!(rollback_json(work.path())["stage_hook_reused"], true);

    // The `rollback:` section's own hook wins over the `rollout:` section's.
    let work = tempfile::tempdir().expect("workdir");
    let back = script(work.path(), "back.sh");
    let manual = script(work.path(), "manual.sh");
    std::fs::write(
        work.path().join("shipgate.yml"),
        "rollout:\n  rollback-hook: ./back.sh\nrollback:\n  rollback-hook: ./manual.sh --by-hand\n",
    )
    .expect("config");
    recorded(work.path(), 5, None);
    rollback(work.path())
        .args(["rollback", "--reason", "errors"])
        .run()
        .expect_code(0);
    assert_eq!(calls(&back), "");
    assert_eq!(
        calls(&manual),
        "rollback rollback 0 v1.4.0 errors --by-hand\n"
    );
}

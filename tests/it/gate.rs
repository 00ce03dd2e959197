//! `shipgate gate` end to end: the real binary against the fake GitHub over HTTP, with checks
//! that start, finish, fail and get re-run while the gate polls (scripted by poll count, never
//! by wall-clock thresholds).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::fake_github::Injected;
use crate::support::fake_github::checks::{Change, CheckRunSpec, When};
use crate::support::state_files;
use crate::support::{FakeGitHub, Shipgate, assert_no_secret, read_tree};

pub(crate) const SHA: &str = "5555555555555555555555555555555555555555";
const OTHER: &str = "6666666666666666666666666666666666666666";

fn runs_path() -> String {
    format!("/repos/octo/app/commits/{SHA}/check-runs")
}

/// `octo/app` with `main` at [`SHA`] (and [`OTHER`] as its parent).
pub(crate) fn world() -> FakeGitHub {
    let gh = FakeGitHub::start();
    gh.repo("octo", "app", "main")
        .commit(OTHER, &[])
        .commit(SHA, &[OTHER])
        .branch("main", SHA);
    gh
}

/// `shipgate gate --sha SHA` against the fake in `dir`, polling every 100ms, with a 300ms
/// discovery window and a 60s timeout given as inputs (so a test's flags override them).
pub(crate) fn gate(gh: &FakeGitHub, dir: &std::path::Path) -> Shipgate {
    let mut cmd = Shipgate::new(dir);
    cmd.env("GITHUB_API_URL", gh.url())
        .env("GITHUB_REPOSITORY", "octo/app")
        .input("github-token", &gh.token())
        .input("interval", "100ms")
        .input("discovery-timeout", "300ms")
        .input("timeout", "60s")
        .args(["gate", "--sha", SHA]);
    cmd
}

pub(crate) fn gate_json(dir: &std::path::Path) -> Value {
    let file = read_tree(&dir.join(".shipgate"))
        .into_iter()
        .find(|(path, _)| path.ends_with("gate.json"))
        .expect("gate.json in the state dir");
    serde_json::from_str(&file.1).expect("gate.json is JSON")
}

fn list(value: &str) -> Vec<String> {
    serde_json::from_str(value).unwrap_or_else(|e| panic!("not a JSON list ({e}): {value}"))
}

#[test]
fn checks_completing_over_time_pass() {
    let gh = world();
    let build = gh.check(SHA, "build", "in_progress");
    let test = gh.check(SHA, "test (ubuntu, 22)", "queued");
    gh.check(SHA, "lint", "success");
    gh.schedule(
        When::after_requests(&runs_path(), 2),
        Change::check_run(test, "in_progress"),
    )
    .schedule(
        When::after_requests(&runs_path(), 3),
        Change::check_run(build, "success"),
    )
    .schedule(
        When::after_requests(&runs_path(), 5),
        Change::check_run(test, "success"),
    );
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(0);
    assert_eq!(gh.pending_changes(), 0, "the gate waited for every change");
    assert_eq!(run.outputs["result"], "pass");
    assert!(list(&run.outputs["failed"]).is_empty());
    assert!(list(&run.outputs["pending"]).is_empty());
    assert!(list(&run.outputs["missing"]).is_empty());
    assert!(
        run.summary.contains("### ✅ Checks passed for `5555555`"),
        "{}",
        run.summary
    );
    assert!(
        run.summary
            .contains("| `test (ubuntu, 22)` | check run (github-actions) | ✅ success |"),
        "{}",
        run.summary
    );
    // Progress on stderr while waiting.
    assert!(
        run.stderr.contains("1 of 3 check(s) passed, 2 pending"),
        "{}",
        run.stderr
    );
    let state = gate_json(dir.path());
    assert_eq!(state["command"], "gate");
    assert_eq!(state["result"], "pass");
    assert_eq!(state["sha"], SHA);
    assert_eq!(state["checks"].as_array().map(Vec::len), Some(3));
}

#[test]
fn a_failing_required_check_fails_fast_with_its_link() {
    let gh = world();
    gh.check(SHA, "build", "success");
    let lint = gh.check(SHA, "lint", "in_progress");
    // Never finishes: the gate must not wait for it once `lint` failed.
    gh.check(SHA, "integration", "in_progress");
    gh.schedule(
        When::after_requests(&runs_path(), 2),
        Change::check_run(lint, "failure"),
    );
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(1);
    assert_eq!(run.outputs["result"], "fail");
    assert_eq!(list(&run.outputs["failed"]), vec!["lint"]);
    assert_eq!(list(&run.outputs["pending"]), vec!["integration"]);
    let link = format!("https://github.com/octo/app/runs/{lint}");
    assert!(
        run.stderr
            .contains(&format!("`lint` (check run) concluded `failure`: {link}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("::error title=check failed%3A lint::"),
        "{}",
        run.stderr
    );
    assert!(
        run.summary.contains("### ❌ Gate refused `5555555`"),
        "{}",
        run.summary
    );
    assert!(
        run.summary.contains(&format!("[details]({link})")),
        "{}",
        run.summary
    );
    let polls = gh
        .requests()
        .iter()
        .filter(|r| r.path == runs_path())
        .count();
    assert_eq!(polls, 3, "the poll that saw the failure was the last");
}

#[test]
fn a_rerun_supersedes_the_failure_it_replaces() {
    let gh = world();
    // Re-run inside the same check suite, still running when the gate starts.
    let first = gh.check(SHA, "test", "failure");
    let rerun = gh.apply(Change::Rerun { id: first }).expect("re-run id");
    gh.schedule(
        When::after_requests(&runs_path(), 2),
        Change::check_run(rerun, "success"),
    );
    // A new workflow run (a new check suite) that passed after an older one failed.
    let old_suite = gh.check_suite(SHA, (15_368, "github-actions"));
    gh.check_run(
        SHA,
        CheckRunSpec::new("e2e").state("failure").suite(old_suite),
    );
    let new_suite = gh.check_suite(SHA, (15_368, "github-actions"));
    gh.check_run(
        SHA,
        CheckRunSpec::new("e2e").state("success").suite(new_suite),
    );
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path())
        .args(["--require", "test", "--require", "e2e"])
        .actions()
        .run();
    run.expect_code(0);
    assert!(
        run.summary.contains("| `test` (attempt 2) |"),
        "{}",
        run.summary
    );
    let state = gate_json(dir.path());
    let test = state["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "test"))
        .expect("test row");
    assert_eq!(test["conclusion"], "success");
    assert_eq!(test["attempts"], 2);
    // Every attempt was read, not only the newest per suite.
    assert!(
        gh.requests()
            .iter()
            .filter(|r| r.path == runs_path())
            .all(|r| r.query.contains("filter=all")),
        "check runs are listed with filter=all"
    );
}

#[test]
fn more_than_a_hundred_checks_are_read_across_pages() {
    let gh = world();
    for i in 0..150 {
        gh.check(SHA, &format!("shard {i:03}"), "success");
    }
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path()).args(["--format", "json"]).run();
    run.expect_code(0);
    assert_eq!(run.json()["checks"].as_array().map(Vec::len), Some(150));
    assert!(
        gh.requests()
            .iter()
            .any(|r| r.path == runs_path() && r.query.contains("page=2")),
        "the second page was read"
    );

    // A check on the second page that finishes later is seen, though the first page (and its
    // `Link` header) is answered `304 Not Modified` from then on.
    let gh = world();
    let mut last = 0;
    for i in 0..150 {
        last = gh.check(
            SHA,
            &format!("shard {i:03}"),
            if i == 149 { "in_progress" } else { "success" },
        );
    }
    gh.schedule(
        When::after_requests(&runs_path(), 6),
        Change::check_run(last, "success"),
    );
    let run = gate(&gh, dir.path()).args(["--timeout", "20s"]).run();
    run.expect_code(0);
    let pages: Vec<_> = gh
        .requests()
        .into_iter()
        .filter(|r| r.path == runs_path() && r.query.contains("page=2"))
        .collect();
    assert!(pages.len() >= 3, "page 2 is polled too: {}", pages.len());
    assert!(pages.iter().any(|r| r.status == 304), "and conditionally");

    // A failure on the second page is seen.
    let gh = world();
    for i in 0..150 {
        let state = if i == 130 { "timed_out" } else { "success" };
        gh.check(SHA, &format!("shard {i:03}"), state);
    }
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(1);
    assert_eq!(list(&run.outputs["failed"]), vec!["shard 130"]);
}

#[test]
fn a_commit_with_statuses_only_is_judged_by_them() {
    let gh = world();
    gh.commit_status_with_url(
        SHA,
        "ci/jenkins",
        "pending",
        "https://jenkins.example/job/1",
    );
    gh.schedule(
        When::after_requests(&runs_path(), 2),
        Change::AddStatus {
            sha: SHA.into(),
            context: "ci/jenkins".into(),
            state: "success".into(),
            target_url: Some("https://jenkins.example/job/1".into()),
        },
    );
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(0);
    assert!(
        run.summary
            .contains("| `ci/jenkins` | commit status | ✅ success |"),
        "{}",
        run.summary
    );
    assert!(
        run.summary
            .contains("[details](https://jenkins.example/job/1)"),
        "{}",
        run.summary
    );

    // The latest status per context decides: an old success does not hide a new failure.
    let gh = world();
    gh.commit_status(SHA, "ci/jenkins", "success");
    gh.commit_status(SHA, "ci/jenkins", "failure");
    gh.commit_status(SHA, "coverage", "success");
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(1);
    assert_eq!(list(&run.outputs["failed"]), vec!["ci/jenkins"]);
    assert!(
        run.stderr
            .contains("`ci/jenkins` (commit status) concluded `failure`"),
        "{}",
        run.stderr
    );
}

#[test]
fn checks_and_statuses_are_judged_together() {
    let gh = world();
    gh.check(SHA, "build", "success");
    gh.commit_status(SHA, "security/snyk", "error");
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(1);
    assert_eq!(list(&run.outputs["failed"]), vec!["security/snyk"]);
    // A hostile name cannot start a line of its own (a workflow command) or break the table.
    gh.commit_status(SHA, "evil\n::warning::pwned | x", "failure");
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(1);
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.starts_with("::warning::pwned")),
        "{}",
        run.stderr
    );
    assert!(
        run.summary
            .contains("| `evil ::warning::pwned \\| x` | commit status | ❌ failure |"),
        "{}",
        run.summary
    );
    // Not required, it does not count.
    gate(&gh, dir.path())
        .args(["--require", "build"])
        .run()
        .expect_code(0);
}

#[test]
fn neutral_and_skipped_are_configurable() {
    let gh = world();
    gh.check(SHA, "docs", "skipped");
    gh.check(SHA, "optional-lint", "neutral");
    let dir = tempfile::tempdir().expect("workdir");
    gate(&gh, dir.path()).run().expect_code(0);
    let run = gate(&gh, dir.path())
        .input("allowed-conclusions", "skipped")
        .actions()
        .run();
    run.expect_code(1);
    assert_eq!(list(&run.outputs["failed"]), vec!["optional-lint"]);
    let run = gate(&gh, dir.path())
        .args(["--allowed-conclusions", "cancelled"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("`cancelled` cannot be an allowed conclusion"),
        "{}",
        run.stderr
    );
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[test]
fn promotion_requires_a_successful_soaked_staging_deployment() {
    let dir = tempfile::tempdir().expect("workdir");
    let promote = |gh: &FakeGitHub, extra: &[&str]| {
        let mut cmd = gate(gh, dir.path());
        cmd.args(["--require-environment", "staging"])
            .args(extra)
            .actions();
        cmd.run()
    };

    // Deployed to staging eight days ago and still running there.
    let gh = world();
    gh.check(SHA, "build", "success");
    gh.set_clock(now() - 8 * 86_400);
    gh.deployment(
        "staging",
        "v1.4.0-rc.1",
        SHA,
        json!({}),
        &["in_progress", "success"],
    );
    let run = promote(&gh, &["--soak", "7d"]);
    run.expect_code(0);
    assert!(
        run.summary.contains("**Promotion from `staging`:** ✅"),
        "{}",
        run.summary
    );
    assert_eq!(gate_json(dir.path())["promotion"]["passed"], true);

    // Never deployed there (only another commit was).
    let gh = world();
    gh.check(SHA, "build", "success");
    gh.deployment("staging", "v1.3.0", OTHER, json!({}), &["success"]);
    let run = promote(&gh, &[]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("commit `5555555` was never deployed to `staging`"),
        "{}",
        run.stderr
    );
    // Refused before any check was polled.
    assert!(!gh.requests().iter().any(|r| r.path == runs_path()));
    assert!(
        run.summary.contains("**Promotion from `staging`:** ❌"),
        "{}",
        run.summary
    );
    assert!(!run.summary.contains("**Required:**"), "{}", run.summary);

    // Failed there.
    let gh = world();
    gh.check(SHA, "build", "success");
    gh.deployment(
        "staging",
        "v1.4.0-rc.1",
        SHA,
        json!({}),
        &["in_progress", "failure"],
    );
    let run = promote(&gh, &[]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("the latest deployment of `5555555` to `staging` failed"),
        "{}",
        run.stderr
    );

    // Succeeded, then superseded by a failed redeploy of the same commit.
    let gh = world();
    gh.check(SHA, "build", "success");
    gh.deployment("staging", "v1.4.0-rc.1", SHA, json!({}), &["success"]);
    gh.deployment("staging", "v1.4.0-rc.2", SHA, json!({}), &["error"]);
    let run = promote(&gh, &[]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("was superseded by a failure there"),
        "{}",
        run.stderr
    );

    // Soaked too briefly: deployed a day ago.
    let gh = world();
    gh.check(SHA, "build", "success");
    gh.set_clock(now() - 86_400);
    gh.deployment("staging", "v1.4.0-rc.1", SHA, json!({}), &["success"]);
    let run = promote(&gh, &["--soak", "7d"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("less than the required soak of 7d"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(eligible at "), "{}", run.stderr);
    assert_eq!(run.outputs["result"], "fail");
    promote(&gh, &["--soak", "12h"]).expect_code(0);

    // A soak without an environment is a usage error.
    let run = gate(&gh, dir.path()).args(["--soak", "7d"]).run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("`--soak` needs `--require-environment`"),
        "{}",
        run.stderr
    );
}

#[test]
fn rulesets_and_branch_protection_make_the_required_set() {
    let gh = world();
    gh.protect_branch("main", &[("build", None), ("ci/jenkins", Some(-1))]);
    gh.ruleset(
        7,
        "~DEFAULT_BRANCH",
        "active",
        &[("lint", Some(15_368)), ("build", None)],
    );
    gh.ruleset(8, "main", "active", &[("security", Some(4_242))]);
    // Rulesets in evaluate mode do not apply.
    gh.ruleset(9, "~ALL", "evaluate", &[("never-required", None)]);
    gh.check(SHA, "build", "success");
    gh.check(SHA, "lint", "success");
    gh.commit_status(SHA, "ci/jenkins", "success");
    gh.check_run(SHA, CheckRunSpec::new("security").app(4_242, "sec-scanner"));
    // Not required: a failure here does not block.
    gh.check(SHA, "flaky-nightly", "failure");
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path())
        .args(["--required-from", "main", "--format", "json"])
        .run();
    run.expect_code(0);
    let result = run.json();
    let mut required: Vec<String> = result["required"]["checks"]
        .as_array()
        .expect("required checks")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect();
    required.sort();
    assert_eq!(required, ["build", "ci/jenkins", "lint", "security"]);
    assert_eq!(result["required"]["mode"], "branch");
    let flaky = result["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "flaky-nightly"))
        .expect("flaky row");
    assert_eq!(flaky["result"], "not_required");

    // The app id matters: `security` reported by another app does not satisfy the ruleset.
    let gh = world();
    gh.ruleset(8, "main", "active", &[("security", Some(4_242))]);
    gh.check(SHA, "security", "success");
    let run = gate(&gh, dir.path())
        .args(["--required-from", "main"])
        .actions()
        .run();
    run.expect_code(1);
    assert_eq!(list(&run.outputs["missing"]), vec!["security"]);

    let run = gate(&gh, dir.path())
        .args(["--required-from", "nope"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("branch `nope` does not exist in `octo/app`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_required_check_that_never_appears_is_missing() {
    let gh = world();
    gh.check(SHA, "build", "success");
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path())
        .args(["--require", "build", "--require", "deploy-smoke"])
        .actions()
        .run();
    run.expect_code(1);
    assert_eq!(run.outputs["result"], "fail");
    assert_eq!(list(&run.outputs["missing"]), vec!["deploy-smoke"]);
    assert!(
        run.stderr
            .contains("required check(s) `deploy-smoke` never appeared"),
        "{}",
        run.stderr
    );
    assert!(
        run.summary.contains("**Never reported:** `deploy-smoke`"),
        "{}",
        run.summary
    );

    // A glob needs at least one match too; one that appears in time passes.
    let gh = world();
    gh.schedule(
        When::after_requests(&runs_path(), 2),
        Change::AddCheckRun {
            sha: SHA.into(),
            spec: CheckRunSpec::new("test (node 20)"),
        },
    );
    gate(&gh, dir.path())
        .args(["--require", "test (*)", "--discovery-timeout", "30s"])
        .run()
        .expect_code(0);
}

#[test]
fn zero_checks_are_reported_not_passed() {
    let gh = world();
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("commit `5555555` has no checks to judge"),
        "{}",
        run.stderr
    );
    gate(&gh, dir.path())
        .args(["--allow-no-checks"])
        .run()
        .expect_code(0);
}

#[test]
fn the_gates_own_job_never_blocks_it() {
    let gh = world();
    // CI: another workflow run, with a job named like one of the deploy workflow's.
    gh.workflow_run(444, SHA, "CI");
    gh.job(444, 1, "test", Some("runner-1"), "success");
    gh.job(444, 1, "validate", Some("runner-2"), "success");
    // The deploy workflow, attempt 2: this job (display name unlike GITHUB_JOB) runs on
    // runner-7; attempt 1 of it failed; `validate` is done; `build-and-push` runs in parallel.
    gh.workflow_run(555, SHA, "Deploy production");
    let first = gh.job(555, 1, "Pre-deployment checks", Some("runner-3"), "failure");
    gh.job(555, 1, "validate", Some("runner-4"), "success");
    let mine = gh.apply(Change::Rerun { id: first }).expect("attempt 2");
    gh.apply(Change::check_run(mine, "in_progress"));
    gh.job(555, 2, "build-and-push", Some("runner-8"), "in_progress");
    let dir = tempfile::tempdir().expect("workdir");
    let actions = |cmd: &mut Shipgate| {
        cmd.actions()
            .env("GITHUB_RUN_ID", "555")
            .env("GITHUB_RUN_ATTEMPT", "2")
            .env("GITHUB_JOB", "gate");
    };
    let mut cmd = gate(&gh, dir.path());
    actions(&mut cmd);
    let run = cmd.env("RUNNER_NAME", "runner-3").run();
    run.expect_code(0);
    let state = gate_json(dir.path());
    let names: Vec<&str> = state["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["test", "validate"], "CI's checks only");
    assert_eq!(state["own_run"]["job_check_run_ids"], json!([mine]));
    assert!(
        state["own_run"]["method"]
            .as_str()
            .is_some_and(|m| m.contains("on runner `runner-3`")),
        "{}",
        state["own_run"]
    );
    let ignored: Vec<(&str, &str)> = state["ignored"]
        .as_array()
        .expect("ignored")
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or_default(),
                i["reason"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        ignored.contains(&("Pre-deployment checks", "the job running shipgate")),
        "{ignored:?}"
    );
    assert!(
        ignored.contains(&("build-and-push", "this workflow run")),
        "{ignored:?}"
    );

    // Naming the gate's own job is pointed out: it cannot wait for itself.
    let mut cmd = gate(&gh, dir.path());
    actions(&mut cmd);
    let run = cmd
        .env("RUNNER_NAME", "runner-3")
        .args(["--require", "Pre-deployment *"])
        .run();
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("`require` names `Pre-deployment checks`, the job running shipgate"),
        "{}",
        run.stderr
    );
    assert_eq!(list(&run.outputs["missing"]), vec!["Pre-deployment *"]);

    // Naming a sibling explicitly waits for it.
    let mut cmd = gate(&gh, dir.path());
    actions(&mut cmd);
    let run = cmd
        .env("RUNNER_NAME", "runner-3")
        .args(["--require", "build-and-push", "--timeout", "1s"])
        .run();
    run.expect_code(4);
    assert_eq!(list(&run.outputs["pending"]), vec!["build-and-push"]);
}

#[test]
fn without_the_jobs_api_the_job_is_recognised_by_name() {
    let gh = world();
    gh.workflow_run(444, SHA, "CI");
    gh.job(444, 1, "test", Some("runner-1"), "success");
    // A reusable workflow's matrix leg: `caller / callee (matrix)`.
    gh.workflow_run(555, SHA, "Deploy production");
    gh.job(
        555,
        1,
        "release / gate (production)",
        Some("runner-7"),
        "in_progress",
    );
    gh.inject(
        "GET",
        "/repos/octo/app/actions/runs/555",
        vec![Injected::json(
            403,
            json!({"message": "Resource not accessible by integration"}),
        )],
    );
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path())
        .actions()
        .env("GITHUB_RUN_ID", "555")
        .env("GITHUB_JOB", "gate")
        .env("RUNNER_NAME", "runner-7")
        .run();
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("cannot list the jobs of workflow run 555"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("actions: read"), "{}", run.stderr);
}

#[test]
fn rate_limits_and_server_errors_are_survived() {
    let gh = world();
    gh.check(SHA, "build", "success");
    let mut faults = vec![Injected::retry_after(403, 1), Injected::retry_after(429, 1)];
    // More 502s in a row than one request's retries: the next poll carries on.
    faults.extend((0..7).map(|_| Injected::status(502)));
    gh.inject("GET", &runs_path(), faults);
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(0);
    assert!(
        run.stderr.contains("GitHub rate limit hit"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("trying again"), "{}", run.stderr);
    let attempts = gh
        .requests()
        .iter()
        .filter(|r| r.path == runs_path())
        .count();
    assert_eq!(attempts, 10, "nine faults, then the answer");
}

#[test]
fn a_low_rate_limit_slows_the_polling_down() {
    // The same never-finishing check polled for the same 3 s at a 100 ms interval: with fewer
    // than 100 requests left the gate polls at a quarter of the rate, so it polls far fewer times.
    let polls = |remaining: u64| {
        let gh = world();
        gh.check(SHA, "build", "in_progress");
        gh.set_rate_limit(remaining, now() as u64 + 3600);
        let dir = tempfile::tempdir().expect("workdir");
        let run = gate(&gh, dir.path()).args(["--timeout", "3s"]).run();
        run.expect_code(4);
        let slowed = run
            .stderr
            .contains("fewer than 100 GitHub API requests left for this token; polling every");
        (
            gate_json(dir.path())["polls"].as_u64().expect("polls"),
            slowed,
        )
    };
    let (normal, normal_slowed) = polls(5000);
    let (low, low_slowed) = polls(60);
    assert!(!normal_slowed, "a full rate limit does not slow down");
    assert!(low_slowed, "the slowdown is said");
    assert!(
        low * 2 <= normal,
        "{low} polls with 60 requests left vs {normal} with 5000"
    );
}

#[test]
fn a_timeout_lists_what_is_pending() {
    let gh = world();
    gh.check(SHA, "build", "success");
    gh.check(SHA, "slow-e2e", "in_progress");
    gh.check(SHA, "deploy-preview", "queued");
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path())
        .args(["--timeout", "1s"])
        .actions()
        .run();
    run.expect_code(4);
    assert_eq!(run.outputs["result"], "timeout");
    assert_eq!(
        list(&run.outputs["pending"]),
        vec!["deploy-preview", "slow-e2e"]
    );
    assert!(
        run.stderr
            .contains("pending: `deploy-preview` (queued), `slow-e2e` (in_progress)"),
        "{}",
        run.stderr
    );
    assert!(run.summary.contains("⏱️"), "{}", run.summary);
    assert_eq!(gate_json(dir.path())["result"], "timeout");
}

#[test]
fn unchanged_polls_cost_nothing_against_the_rate_limit() {
    let gh = world();
    let ids: Vec<u64> = (0..4)
        .map(|i| gh.check(SHA, &format!("job {i}"), "in_progress"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        gh.schedule(
            When::after_requests(&runs_path(), 3 * (i + 1)),
            Change::check_run(*id, "success"),
        );
    }
    let dir = tempfile::tempdir().expect("workdir");
    gate(&gh, dir.path()).run().expect_code(0);
    let requests = gh.requests();
    let polls: Vec<_> = requests.iter().filter(|r| r.path == runs_path()).collect();
    assert_eq!(polls.len(), 13, "3 polls per change, then the last one");
    let charged = polls.iter().filter(|r| r.status != 304).count();
    assert_eq!(
        charged,
        1 + ids.len(),
        "the first poll, then one per change"
    );
    assert!(
        polls[1..].iter().all(|r| r.if_none_match.is_some()),
        "every later poll is conditional"
    );
    let statuses: Vec<_> = requests
        .iter()
        .filter(|r| r.path.ends_with("/statuses"))
        .collect();
    assert_eq!(statuses.iter().filter(|r| r.status != 304).count(), 1);
}

#[test]
fn past_a_thousand_check_suites_the_rest_are_read_suite_by_suite() {
    let gh = world();
    // The oldest suite holds a failure that the check-runs listing no longer shows.
    let old = gh.check_suite(SHA, (4_242, "legacy-ci"));
    gh.check_run(SHA, CheckRunSpec::new("legacy").state("failure").suite(old));
    for _ in 0..1000 {
        gh.check_suite(SHA, (9_000, "idle-app"));
    }
    gh.check(SHA, "build", "success");
    let dir = tempfile::tempdir().expect("workdir");
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(1);
    assert_eq!(list(&run.outputs["failed"]), vec!["legacy (legacy-ci)"]);
    assert!(
        gh.requests()
            .iter()
            .any(|r| r.path == format!("/repos/octo/app/check-suites/{old}/check-runs")),
        "the old suite was read on its own"
    );
}

#[test]
fn the_commit_comes_from_validate_and_secrets_stay_out() {
    let gh = world();
    gh.check(SHA, "build", "success");
    let dir = tempfile::tempdir().expect("workdir");
    let mut validated = state_files::validate("777-5555555", 1);
    validated["sha"] = json!(SHA);
    state_files::write(
        &dir.path().join(".shipgate"),
        "777-5555555",
        "validate.json",
        &validated,
    );
    let token = gh.token();
    let run = Shipgate::new(dir.path())
        .actions()
        .env("GITHUB_API_URL", gh.url())
        .env("GITHUB_REPOSITORY", "octo/app")
        .env("GITHUB_SHA", OTHER)
        .input("github-token", &token)
        .input("deployment-id", "777-5555555")
        .input("interval", "100ms")
        .args(["gate"])
        .run();
    run.expect_code(0);
    let result = gate_json(dir.path());
    assert_eq!(result["sha"], SHA, "the validated commit, not GITHUB_SHA");
    assert_eq!(result["sha_source"], "`validate.json`");
    assert_eq!(result["deployment_id"], "777-5555555");
    let first = run.stderr.lines().next().expect("stderr");
    assert!(first.starts_with("::add-mask::"), "{first}");
    let everything = run.everything();
    let files = read_tree(&dir.path().join(".shipgate"));
    assert_no_secret(
        &token,
        everything
            .iter()
            .chain(files.iter())
            .map(|(name, text)| (name.clone(), text.as_str())),
    );
}

#[test]
fn bad_values_are_named() {
    let gh = world();
    let dir = tempfile::tempdir().expect("workdir");
    let run = Shipgate::new(dir.path())
        .env("GITHUB_API_URL", gh.url())
        .env("GITHUB_REPOSITORY", "octo/app")
        .input("github-token", &gh.token())
        .args(["gate", "--sha", "main"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("`--sha` is `main`, not a full 40-character commit SHA"),
        "{}",
        run.stderr
    );
    let run = gate(&gh, dir.path())
        .input("discovery-timeout", "soon")
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("input `discovery-timeout` has the value `soon`"),
        "{}",
        run.stderr
    );
    let run = Shipgate::new(dir.path())
        .env("GITHUB_REPOSITORY", "octo/app")
        .args(["gate", "--sha", SHA])
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("needs a token"), "{}", run.stderr);

    std::fs::write(
        dir.path().join("shipgate.yml"),
        "gate:\n  require:\n    - build\n  intervall: 5s\n",
    )
    .expect("config");
    let run = gate(&gh, dir.path()).run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("unknown field `intervall`"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_config_file_names_the_required_checks() {
    let gh = world();
    gh.check(SHA, "build", "success");
    gh.check(SHA, "nightly", "failure");
    let dir = tempfile::tempdir().expect("workdir");
    std::fs::write(
        dir.path().join("shipgate.yml"),
        "gate:\n  require:\n    - build\n  ignore:\n    - nightly\n  discovery-timeout: 1s\n",
    )
    .expect("config");
    let run = gate(&gh, dir.path()).args(["--format", "json"]).run();
    run.expect_code(0);
    assert_eq!(run.json()["required"]["mode"], "listed");
    assert_eq!(
        run.json()["ignored"],
        json!([{"name": "nightly", "reason": "`ignore`"}])
    );
}

//! `shipgate validate` end to end: the real binary against a local git repository and against
//! the fake GitHub over HTTP.

use serde_json::json;

use crate::support::fake_github::Injected;
use crate::support::{FakeGitHub, GitRepo, Shipgate, assert_no_secret, read_tree};

const MAIN_1: &str = "1111111111111111111111111111111111111111";
const MAIN_2: &str = "2222222222222222222222222222222222222222";
const MAIN_3: &str = "3333333333333333333333333333333333333333";
const SIDE: &str = "4444444444444444444444444444444444444444";
const DATABASE_URL: &str = "postgres://app:p%40ss%3Aw%2Frd%25@db.internal:5432/app";
const TAG_OBJECT: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// A repository `octo/app` on `main` (1 → 2 → 3) with a side branch (1 → side), and tags:
/// `v1.2.0` lightweight on 2, `v1.3.0` annotated and verified on 3, `v1.4.0-rc.1` on the side
/// branch, `v1.1.0` annotated but unsigned on 1.
fn github() -> FakeGitHub {
    let gh = FakeGitHub::start();
    gh.repo("octo", "app", "main")
        .commit(MAIN_1, &[])
        .commit(MAIN_2, &[MAIN_1])
        .commit(MAIN_3, &[MAIN_2])
        .commit(SIDE, &[MAIN_1])
        .branch("main", MAIN_3)
        .branch("feature", SIDE)
        .lightweight_tag("v1.2.0", MAIN_2)
        .annotated_tag("v1.3.0", TAG_OBJECT, MAIN_3, Some((true, "valid")))
        .annotated_tag(
            "v1.1.0",
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            MAIN_1,
            Some((false, "unsigned")),
        )
        .lightweight_tag("v1.4.0-rc.1", SIDE);
    gh
}

fn against(gh: &FakeGitHub, dir: &std::path::Path) -> Shipgate {
    let mut cmd = Shipgate::new(dir);
    cmd.env("GITHUB_API_URL", gh.url())
        .env("GITHUB_REPOSITORY", "octo/app")
        .input("github-token", &gh.token());
    cmd
}

#[test]
fn lightweight_and_annotated_tags_resolve_to_their_commits() {
    let gh = github();
    let dir = tempfile::tempdir().expect("workdir");
    let run = against(&gh, dir.path())
        .actions()
        .args(["validate", "--version", "v1.2.0"])
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["sha"], MAIN_2);
    assert_eq!(run.outputs["tag"], "v1.2.0");
    assert_eq!(run.outputs["version"], "1.2.0");
    assert_eq!(run.outputs["result"], "pass");
    assert_eq!(run.outputs["tag-message"], "");

    let run = against(&gh, dir.path())
        .args(["--format", "json", "validate", "--version", "1.3.0"])
        .run();
    run.expect_code(0);
    let result = run.json();
    assert_eq!(result["sha"], MAIN_3);
    assert_eq!(result["tag"], "v1.3.0");
    assert_eq!(result["tag_type"], "annotated");
    assert_eq!(result["signature"]["verified"], true);
    assert_eq!(result["reachable_from_default_branch"], true);
    assert_eq!(result["checked_with"], "github-api");
}

#[test]
fn a_missing_tag_is_refused_by_name() {
    let gh = github();
    let dir = tempfile::tempdir().expect("workdir");
    let run = against(&gh, dir.path())
        .args(["validate", "--version", "v9.9.9"])
        .run();
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("tag `v9.9.9` does not exist in `octo/app`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_tag_off_the_default_branch_is_refused() {
    let gh = github();
    let dir = tempfile::tempdir().expect("workdir");
    let run = against(&gh, dir.path())
        .args(["validate", "--version", "v1.4.0-rc.1"])
        .run();
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("is not on the default branch `main` (it is diverged of it)"),
        "{}",
        run.stderr
    );
    against(&gh, dir.path())
        .args(["validate", "--version", "v1.4.0-rc.1", "--allow-any-branch"])
        .run()
        .expect_code(0);
    let refused = against(&gh, dir.path())
        .input("allow-prerelease", "false")
        .args(["validate", "--version", "v1.4.0-rc.1", "--allow-any-branch"])
        .run();
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("is a pre-release"),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_downgrade_is_refused_unless_allowed() {
    let gh = github();
    gh.deployment(
        "production",
        "v1.3.0",
        MAIN_3,
        json!({"version": "v1.3.0"}),
        &["in_progress", "success"],
    );
    // A newer but failed deployment does not count as what production runs.
    gh.deployment(
        "production",
        MAIN_3,
        MAIN_3,
        json!({"version": "v9.0.0"}),
        &["failure"],
    );
    let dir = tempfile::tempdir().expect("workdir");
    let run = against(&gh, dir.path())
        .actions()
        .args(["validate", "--version", "v1.2.0"])
        .run();
    run.expect_code(1);
    assert!(
        run.stderr.contains(
            "`v1.2.0` is older than `1.3.0`, the newest successful deployment to `production`"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("::error title=shipgate validate::"),
        "{}",
        run.stderr
    );
    assert_eq!(run.outputs["result"], "fail");
    assert!(run.summary.contains("❌"), "{}", run.summary);

    let run = against(&gh, dir.path())
        .actions()
        .input("allow-downgrade", "true")
        .args(["validate", "--version", "v1.2.0"])
        .run();
    run.expect_code(0);
    assert!(
        run.stderr.contains("::warning title=downgrade allowed::"),
        "{}",
        run.stderr
    );
    // Another environment's history is not production's.
    against(&gh, dir.path())
        .args([
            "validate",
            "--version",
            "v1.2.0",
            "--environment",
            "staging",
        ])
        .run()
        .expect_code(0);
}

#[test]
fn unsigned_tags_are_refused_when_signatures_are_required() {
    let gh = github();
    let dir = tempfile::tempdir().expect("workdir");
    let run = against(&gh, dir.path())
        .args(["validate", "--version", "v1.1.0", "--require-signed"])
        .run();
    run.expect_code(1);
    assert!(
        run.stderr.contains("signatures are required"),
        "{}",
        run.stderr
    );
    against(&gh, dir.path())
        .args(["validate", "--version", "v1.3.0", "--require-signed"])
        .run()
        .expect_code(0);
}

#[test]
fn rate_limits_and_server_errors_are_survived() {
    let gh = github();
    gh.inject(
        "GET",
        "/repos/octo/app/git/ref/tags/v1.2.0",
        vec![
            Injected::retry_after(429, 1),
            Injected::status(502),
            Injected::status(502),
            Injected::retry_after(403, 1),
        ],
    );
    let dir = tempfile::tempdir().expect("workdir");
    let run = against(&gh, dir.path())
        .args(["validate", "--version", "v1.2.0"])
        .run();
    run.expect_code(0);
    let tag_requests = gh
        .requests()
        .iter()
        .filter(|r| r.path == "/repos/octo/app/git/ref/tags/v1.2.0")
        .count();
    assert_eq!(
        tag_requests, 5,
        "four injected failures, then the real answer"
    );
}

#[test]
fn a_dead_github_is_a_dependency_failure() {
    let gh = github();
    gh.inject(
        "GET",
        "/repos/octo/app/git/ref/tags/v1.2.0",
        (0..6).map(|_| Injected::status(503)).collect(),
    );
    let dir = tempfile::tempdir().expect("workdir");
    let run = against(&gh, dir.path())
        .args(["validate", "--version", "v1.2.0"])
        .run();
    run.expect_code(3);
    assert!(run.stderr.contains("GitHub answered 503"), "{}", run.stderr);
}

#[test]
fn a_bad_token_is_a_usage_error() {
    let gh = github();
    let dir = tempfile::tempdir().expect("workdir");
    let run = Shipgate::new(dir.path())
        .env("GITHUB_API_URL", gh.url())
        .env("GITHUB_REPOSITORY", "octo/app")
        .input("github-token", "not-the-token")
        .args(["validate", "--version", "v1.2.0"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("check the `github-token` input"),
        "{}",
        run.stderr
    );
}

#[test]
fn outputs_and_secrets_in_a_simulated_actions_run() {
    let gh = FakeGitHub::start();
    let message =
        "Release 1.5.0\n\n::add-mask::oops\n::error::not a command\nghadelimiter_123\n%0A";
    gh.repo("octo", "app", "main")
        .commit(MAIN_1, &[])
        .branch("main", MAIN_1)
        .annotated_tag("v1.5.0", TAG_OBJECT, MAIN_1, Some((true, "valid")));
    gh.set_tag_message(TAG_OBJECT, message);
    let dir = tempfile::tempdir().expect("workdir");
    let token = gh.token();
    let run = Shipgate::new(dir.path())
        .actions()
        .env("GITHUB_API_URL", gh.url())
        .env("GITHUB_REPOSITORY", "octo/app")
        .env("GITHUB_RUN_ID", "987654321")
        .env("GITHUB_REF", "refs/tags/v1.5.0")
        .env("GITHUB_SERVER_URL", "https://github.example")
        .input("github-token", &token)
        .env("DATABASE_URL", DATABASE_URL)
        .args(["validate"])
        .run();
    run.expect_code(0);

    // Every derived form of a secret is masked before anything else is printed.
    let masks: Vec<&str> = run
        .stderr
        .lines()
        .take_while(|l| l.starts_with("::add-mask::"))
        .map(|l| l.trim_start_matches("::add-mask::"))
        .collect();
    for form in [
        token.as_str(),
        DATABASE_URL,
        "p%40ss%3Aw%2Frd%25",
        "p@ss:w/rd%",
    ] {
        let escaped = form.replace('%', "%25");
        assert!(
            masks.contains(&escaped.as_str()),
            "no mask for {form}: {masks:?}"
        );
    }

    // The multi-line, hostile tag message survives the runner's parser byte for byte.
    assert_eq!(run.outputs["tag-message"], message);
    assert_eq!(run.outputs["deployment-id"], "987654321-1111111");
    assert_eq!(run.env["SHIPGATE_DEPLOYMENT_ID"], "987654321-1111111");

    // The mask comes before any other line, and the hostile message is fenced.
    let first = run.stderr.lines().next().expect("some stderr");
    assert!(first.starts_with("::add-mask::"), "first line: {first}");
    let fence_start = run
        .stderr
        .lines()
        .position(|l| l.starts_with("::stop-commands::"))
        .expect("a stop-commands fence");
    let token_line = run.stderr.lines().nth(fence_start).expect("fence");
    let fence_token = token_line.trim_start_matches("::stop-commands::");
    let fence_end = run
        .stderr
        .lines()
        .position(|l| l == format!("::{fence_token}::"))
        .expect("the fence is closed");
    let hostile = run
        .stderr
        .lines()
        .position(|l| l == "::error::not a command")
        .expect("the message is logged");
    assert!(
        fence_start < hostile && hostile < fence_end,
        "{}",
        run.stderr
    );

    // Summary, state and streams never carry the token.
    assert!(
        run.summary.contains("Release `v1.5.0` validated"),
        "{}",
        run.summary
    );
    assert!(
        run.summary
            .contains("[`1111111`](https://github.example/octo/app/commit/1111111111111111111111111111111111111111)"),
        "{}",
        run.summary
    );
    let state = read_tree(&dir.path().join(".shipgate"));
    assert!(
        state
            .iter()
            .any(|(p, _)| p.ends_with("987654321-1111111/validate.json"))
    );
    let everything = run.everything();
    let places = everything
        .iter()
        .chain(state.iter())
        .map(|(name, text)| (name.clone(), text.as_str()));
    assert_no_secret(&token, places.clone());
    assert_no_secret("p@ss:w/rd%", places);
}

#[test]
fn the_version_comes_from_the_workflow_dispatch_input() {
    let gh = github();
    let dir = tempfile::tempdir().expect("workdir");
    let run = against(&gh, dir.path())
        .event(
            "workflow_dispatch",
            &json!({"inputs": {"version": "v1.3.0"}}),
        )
        .env("GITHUB_REF", "refs/heads/main")
        .args(["--format", "json", "validate"])
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["source"], "workflow_dispatch");
    assert_eq!(run.outputs["tag"], "v1.3.0");

    let run = against(&gh, dir.path())
        .env("GITHUB_REF", "refs/heads/main")
        .args(["validate"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("no version to validate"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("`refs/heads/main`, not a tag"),
        "{}",
        run.stderr
    );
}

#[test]
fn hostile_versions_are_refused_before_anything_runs() {
    let repo = GitRepo::new();
    for hostile in [
        "v1.2.3$(touch pwned)",
        "v1.2.3;touch pwned",
        "-v1.2.3",
        "v1.2.3 ",
        "V1.2.3",
        "vv1.2.3",
        "v1.2.3`touch pwned`",
    ] {
        let run = Shipgate::new(repo.path())
            .input("version", hostile)
            .args(["validate"])
            .run();
        // `v1.2.3 ` is trimmed like every input (the toolkit's getInput), then has no tag.
        assert_eq!(run.code, 1, "{hostile:?}: {}", run.stderr);
        assert!(run.stderr.contains("is not a release version") || hostile.trim() != hostile);
        assert!(!repo.path().join("pwned").exists());
    }
}

#[test]
fn local_git_without_a_token() {
    let repo = GitRepo::new();
    let first = repo.commit("feat: one");
    repo.lightweight_tag("v0.1.0");
    repo.annotated_tag("v0.2.0", "Second release\n\nWith notes");
    repo.git(&["checkout", "--quiet", "-b", "side"]);
    repo.commit("side work");
    repo.lightweight_tag("v0.3.0");
    repo.git(&["checkout", "--quiet", "main"]);

    let run = Shipgate::new(repo.path())
        .args(["--format", "json", "validate", "--version", "v0.1.0"])
        .run();
    run.expect_code(0);
    let result = run.json();
    assert_eq!(result["sha"], first);
    assert_eq!(result["checked_with"], "local-git");
    assert_eq!(result["default_branch"], "main");
    let id = result["deployment_id"].as_str().expect("id").to_string();
    let (secs, short) = id.split_once('-').expect("`<unix>-<sha7>`");
    assert!(secs.parse::<u64>().is_ok(), "{id}");
    assert_eq!(short, &first[..7]);
    let latest = std::fs::read_to_string(repo.path().join(".shipgate/latest")).expect("latest");
    assert_eq!(latest.trim(), id);

    let run = Shipgate::new(repo.path())
        .args(["--format", "json", "validate", "--version", "v0.2.0"])
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["tag_type"], "annotated");
    assert_eq!(run.json()["tag_message"], "Second release\n\nWith notes");

    let off_branch = Shipgate::new(repo.path())
        .args(["validate", "--version", "v0.3.0"])
        .run();
    off_branch.expect_code(1);
    assert!(
        off_branch
            .stderr
            .contains("is not on the default branch `main`"),
        "{}",
        off_branch.stderr
    );

    let missing = Shipgate::new(repo.path())
        .args(["validate", "--version", "v0.9.0"])
        .run();
    missing.expect_code(1);
    assert!(
        missing.stderr.contains("tag `v0.9.0` does not exist"),
        "{}",
        missing.stderr
    );
}

#[test]
fn config_file_errors_name_the_file_and_line() {
    let repo = GitRepo::new();
    std::fs::write(
        repo.path().join("shipgate.yml"),
        "environment: production\nvalidate:\n  tag-prefix: v\n  alow-any-branch: true\n",
    )
    .expect("config");
    let run = Shipgate::new(repo.path())
        .args(["validate", "--version", "v0.1.0"])
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("shipgate.yml:4:"), "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown field `alow-any-branch`"),
        "{}",
        run.stderr
    );

    let run = Shipgate::new(repo.path())
        .args(["--config", "missing.yml", "validate", "--version", "v0.1.0"])
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("`missing.yml`"), "{}", run.stderr);
}

#[test]
fn a_bad_boolean_input_names_the_input() {
    let repo = GitRepo::new();
    let run = Shipgate::new(repo.path())
        .input("allow-downgrade", "yes please")
        .args(["validate", "--version", "v0.1.0"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains(
            "input `allow-downgrade` has the value `yes please`: expected `true` or `false`"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_path_like_deployment_id_is_refused() {
    let repo = GitRepo::new();
    let run = Shipgate::new(repo.path())
        .args([
            "--deployment-id",
            "../../etc",
            "validate",
            "--version",
            "v0.1.0",
        ])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("deployment id `../../etc` is not valid"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unreachable_github_is_a_dependency_failure_without_the_token() {
    let dir = tempfile::tempdir().expect("workdir");
    // Bind then drop: a loopback port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let token = "ghs_unreachableCanaryToken1234567890";
    let run = Shipgate::new(dir.path())
        .actions()
        .env("GITHUB_API_URL", format!("http://127.0.0.1:{port}"))
        .env("GITHUB_REPOSITORY", "octo/app")
        .input("github-token", token)
        .args(["validate", "--version", "v1.2.0"])
        .run();
    run.expect_code(3);
    assert!(run.stderr.contains("cannot reach GitHub"), "{}", run.stderr);
    assert!(run.stderr.contains("after 5 attempt(s)"), "{}", run.stderr);
    let everything = run.everything();
    assert_no_secret(
        token,
        everything
            .iter()
            .map(|(name, text)| (name.clone(), text.as_str())),
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().expect("workdir");
    let run = Shipgate::new(dir.path()).args(["--help"]).run();
    run.expect_code(0);
    for line in [
        "0  success",
        "1  a gate said no",
        "2  usage or configuration error",
        "3  a dependency",
        "4  timeout",
        "5  the automatic rollback itself failed",
    ] {
        assert!(
            run.stdout.contains(line),
            "missing `{line}` in:\n{}",
            run.stdout
        );
    }
    let unknown = Shipgate::new(dir.path())
        .args(["validate", "--bogus"])
        .run();
    unknown.expect_code(2);
}

/// octocrab already sends `X-GitHub-Api-Version`; shipgate once added a second copy. Every real
/// request must carry exactly one, and an accepted `Accept`.
#[test]
fn every_request_carries_exactly_one_api_version_header() {
    let gh = github();
    let dir = tempfile::tempdir().expect("workdir");
    let run = against(&gh, dir.path())
        .args(["validate", "--version", "v1.3.0"])
        .run();
    run.expect_code(0);
    let requests = gh.requests();
    assert!(!requests.is_empty(), "validate sent no request to GitHub");
    for request in &requests {
        let versions: Vec<&str> = request
            .headers
            .iter()
            .filter(|(name, _)| name == "x-github-api-version")
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(
            versions,
            ["2022-11-28"],
            "{} {} carried {versions:?}",
            request.method,
            request.path
        );
        let accept = request
            .headers
            .iter()
            .find(|(name, _)| name == "accept")
            .map(|(_, value)| value.as_str());
        assert!(
            accept.is_some_and(|a| a.contains("application/json") || a.contains("vnd.github")),
            "{} {} carried Accept {accept:?}",
            request.method,
            request.path
        );
    }
}

/// Tag and branch names go into paths percent-encoded (a `/` or a `+` is part of the name, not
/// of the path), and the compare asks for one commit a page: only its `status` is read.
#[test]
fn names_in_paths_are_encoded_and_the_compare_asks_for_one_commit() {
    let gh = FakeGitHub::start();
    gh.repo("octo", "app", "release/1.x")
        .commit(MAIN_1, &[])
        .commit(MAIN_2, &[MAIN_1])
        .branch("release/1.x", MAIN_2)
        .lightweight_tag("app/v2.0.0+build.7", MAIN_1);
    let dir = tempfile::tempdir().expect("workdir");
    let run = against(&gh, dir.path())
        .input("tag-prefix", "app/v")
        .args(["--format", "json", "validate", "--version", "2.0.0+build.7"])
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["sha"], MAIN_1);

    let requests = gh.requests();
    let sent = |prefix: &str| {
        requests
            .iter()
            .find(|r| r.path.starts_with(prefix))
            .unwrap_or_else(|| panic!("no request to {prefix}: {requests:#?}"))
    };
    let tag = sent("/repos/octo/app/git/ref/");
    assert_eq!(
        tag.raw_path,
        "/repos/octo/app/git/ref/tags/app%2Fv2.0.0%2Bbuild.7"
    );
    let compare = sent("/repos/octo/app/compare/");
    assert_eq!(
        compare.raw_path,
        format!("/repos/octo/app/compare/release%2F1.x...{MAIN_1}")
    );
    assert_eq!(compare.query, "per_page=1");
}

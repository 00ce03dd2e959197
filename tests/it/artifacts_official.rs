//! GitHub's own artifact client as the judge of the fake results service and of shipgate's
//! uploads: `@actions/artifact` (the library behind `actions/upload-artifact@v4+` and
//! `actions/download-artifact@v4+`, pinned in `tests/node/package-lock.json`) runs under Node
//! against [`FakeArtifacts`]. Its `uploadArtifact` must succeed against the fake (the fake speaks
//! the protocol the official client speaks), and its `listArtifacts`/`downloadArtifact` must read
//! back, byte for byte, what `shipgate record` uploaded.
//!
//! Node and the package are required: `.ci/install-deps.sh` installs both. When either is
//! missing the tests fail saying so; they never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Shipgate;
use crate::support::fake_artifacts::{self, FakeArtifacts};
use crate::support::state_files;

const ID: &str = "4242-9f8e7d6";
/// What a run of the official client may take at most (its own retries pause for seconds).
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// The version `tests/node/package.json` pins, checked against what `npm ci` installed.
fn installed_client_version() -> String {
    let read = |path: PathBuf| -> Value {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}\n@actions/artifact is not installed: run `npm ci` in tests/node (.ci/install-deps.sh does)",
                path.display()
            )
        });
        serde_json::from_str(&text).expect("package JSON")
    };
    let pinned = read(node_dir().join("package.json"))["dependencies"]["@actions/artifact"]
        .as_str()
        .expect("@actions/artifact pinned in tests/node/package.json")
        .to_string();
    let installed = read(node_dir().join("node_modules/@actions/artifact/package.json"))["version"]
        .as_str()
        .expect("installed version")
        .to_string();
    assert_eq!(
        installed, pinned,
        "tests/node has @actions/artifact {installed}, the lockfile pins {pinned}: run `npm ci` in tests/node"
    );
    installed
}

/// What one run of the official client said.
struct Answer {
    code: Option<i32>,
    result: Option<Value>,
    stdout: String,
    stderr: String,
}

impl Answer {
    fn ok(&self) -> &Value {
        match &self.result {
            Some(result) if self.code == Some(0) => result,
            _ => panic!(
                "@actions/artifact failed (exit {:?})\n--- stdout\n{}\n--- stderr\n{}",
                self.code, self.stdout, self.stderr
            ),
        }
    }

    fn error(&self) -> String {
        assert_ne!(self.code, Some(0), "expected a failure:\n{}", self.stdout);
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("ERROR "))
            .unwrap_or_else(|| panic!("no ERROR line:\n{}", self.stderr))
            .to_string()
    }
}

/// Runs `tests/node/artifact-client.mjs <args>` with the runner's environment for `fake`.
fn official(fake: &FakeArtifacts, workspace: &Path, args: &[&str], env: &[(&str, &str)]) -> Answer {
    installed_client_version();
    let mut command = Command::new("node");
    command
        .arg(node_dir().join("artifact-client.mjs"))
        .args(args)
        .current_dir(workspace)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", workspace)
        .env("ACTIONS_RUNTIME_TOKEN", fake.token())
        .env("ACTIONS_RESULTS_URL", fake.results_url())
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_WORKSPACE", workspace)
        .env("GITHUB_ACTIONS", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!("cannot run `node` ({e}): install Node.js 20 or later (.ci/install-deps.sh does)")
    });
    let started = Instant::now();
    while child.try_wait().expect("wait for node").is_none() {
        if started.elapsed() > CLIENT_LIMIT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("node output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).expect("RESULT JSON"));
    Answer {
        code: output.status.code(),
        result,
        stdout,
        stderr,
    }
}

#[test]
fn node_and_the_pinned_client_are_installed() {
    let output = Command::new("node")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `node` ({e}): install Node.js 20 or later (.ci/install-deps.sh does)"
            )
        });
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "node {version} is too old for @actions/artifact: install Node.js 20 or later"
    );
    assert!(!installed_client_version().is_empty());
}

#[test]
fn the_official_client_uploads_to_the_fake_and_reads_it_back() {
    let fake = FakeArtifacts::start();
    let work = tempfile::tempdir().expect("workdir");
    let files = work.path().join("out");
    std::fs::create_dir_all(files.join("logs")).expect("dirs");
    let report = b"{\"result\":\"pass\"}\n".to_vec();
    // Over one 8 MiB block, and incompressible, so the client sends several Put Block calls.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..9 * 1024 * 1024)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 32) as u8
        })
        .collect();
    std::fs::write(files.join("report.json"), &report).expect("write");
    std::fs::write(files.join("logs/big.bin"), &big).expect("write");
    let root = files.display().to_string();
    let report_path = files.join("report.json").display().to_string();
    let big_path = files.join("logs/big.bin").display().to_string();

    let uploaded = official(
        &fake,
        work.path(),
        &["upload", "official-upload", &root, &report_path, &big_path],
        &[],
    );
    let uploaded = uploaded.ok();
    let stored = fake.artifact("official-upload");
    assert!(stored.finalized);
    assert_eq!(stored.version, 7, "the toolkit's CreateArtifact version");
    assert_eq!(stored.mime_type.as_deref(), Some("application/zip"));
    assert_eq!(stored.expires_at, None, "no retention asked, no expires_at");
    assert_eq!(stored.blob_content_type.as_deref(), Some("application/zip"));
    assert!(fake.count("PutBlock") >= 2, "{:?}", fake.calls());
    assert_eq!(uploaded["id"].as_u64(), Some(stored.id));
    assert_eq!(uploaded["size"].as_u64(), Some(stored.content.len() as u64));
    assert_eq!(
        uploaded["digest"].as_str(),
        Some(fake_artifacts::sha256_hex(&stored.content).as_str())
    );
    let entries = fake_artifacts::unzip(&stored.content);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["report.json", "logs/big.bin"]);
    assert_eq!(entries[0].1, report);
    assert!(entries[1].1 == big, "big.bin differs after the round trip");

    let listed = official(&fake, work.path(), &["list"], &[]);
    let listed = listed.ok()["artifacts"]
        .as_array()
        .expect("artifacts")
        .clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "official-upload");
    assert_eq!(listed[0]["id"].as_u64(), Some(stored.id));
    assert_eq!(
        listed[0]["size"].as_u64(),
        Some(stored.content.len() as u64)
    );

    let into = work.path().join("downloaded");
    let id = stored.id.to_string();
    let hash = format!("sha256:{}", fake_artifacts::sha256_hex(&stored.content));
    let downloaded = official(
        &fake,
        work.path(),
        &[
            "download",
            &id,
            &into.display().to_string(),
            "--expected-hash",
            &hash,
        ],
        &[],
    );
    assert_eq!(downloaded.ok()["digestMismatch"], false);
    assert_eq!(
        std::fs::read(into.join("report.json")).expect("report"),
        report
    );
    assert!(std::fs::read(into.join("logs/big.bin")).expect("big") == big);
}

#[test]
fn the_official_client_gets_a_retention_capped_by_the_repository() {
    let fake = FakeArtifacts::start();
    let work = tempfile::tempdir().expect("workdir");
    let file = work.path().join("a.txt");
    std::fs::write(&file, "a").expect("write");
    let root = work.path().display().to_string();
    let path = file.display().to_string();
    official(
        &fake,
        work.path(),
        &["upload", "kept", &root, &path, "--retention-days", "30"],
        &[("GITHUB_RETENTION_DAYS", "10")],
    )
    .ok();
    let expires = fake.artifact("kept").expires_at.expect("expires_at");
    let days = days_from_now(&expires);
    assert!((9.9..=10.1).contains(&days), "{expires}: {days} days");
}

#[test]
fn the_official_client_refuses_enterprise_server() {
    let fake = FakeArtifacts::start();
    let work = tempfile::tempdir().expect("workdir");
    let answer = official(
        &fake,
        work.path(),
        &["list"],
        &[("GITHUB_SERVER_URL", "https://github.example")],
    );
    assert!(
        answer.error().contains("not currently supported on GHES"),
        "{}",
        answer.stderr
    );
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

fn days_from_now(rfc3339: &str) -> f64 {
    let at: jiff::Timestamp = rfc3339.parse().expect("timestamp");
    (at.as_second() - jiff::Timestamp::now().as_second()) as f64 / 86_400.0
}

fn shipgate_record(work: &Path, fake: &FakeArtifacts) -> Shipgate {
    let mut cmd = Shipgate::new(work);
    cmd.actions()
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_RUN_ATTEMPT", "1")
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "octo/app")
        .env("GITHUB_REF", "refs/tags/v1.4.0")
        .env("GITHUB_ACTOR", "release-bot")
        .env("ACTIONS_RESULTS_URL", fake.results_url())
        .env("ACTIONS_RUNTIME_TOKEN", fake.token())
        .input("deployment-id", ID);
    cmd
}

/// Every file under `dir`, by its path relative to `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let relative = path.strip_prefix(base).expect("under base");
                out.push((
                    relative.display().to_string(),
                    std::fs::read(&path).expect("read file"),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn the_official_client_lists_and_downloads_what_record_uploaded() {
    let fake = FakeArtifacts::start();
    let work = tempfile::tempdir().expect("workdir");
    let root = work.path().join(".shipgate");
    state_files::full(&root, ID, 2);
    let run = shipgate_record(work.path(), &fake).args(["record"]).run();
    run.expect_code(0);
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(ID).join("record.json")).expect("record.json"),
    )
    .expect("record.json JSON");
    let published = state["artifacts"]["artifacts"]
        .as_array()
        .expect("artifacts")
        .clone();
    assert_eq!(published.len(), 6, "{}", run.stderr);

    let listed = official(&fake, work.path(), &["list"], &[]);
    let mut listed = listed.ok()["artifacts"].as_array().expect("list").clone();
    listed.sort_by_key(|a| a["name"].as_str().unwrap_or("").to_string());
    let mut names: Vec<String> = published
        .iter()
        .map(|a| a["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    let listed_names: Vec<&str> = listed.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(listed_names, names);

    for entry in &published {
        let name = entry["name"].as_str().expect("name");
        assert_eq!(entry["state"], "uploaded", "{entry}");
        let stored = fake.artifact(name);
        let seen = listed.iter().find(|a| a["name"] == name).expect("listed");
        assert_eq!(seen["id"].as_u64(), Some(stored.id), "{name}");
        assert_eq!(
            seen["size"], entry["size"],
            "{name}: size as record.json says"
        );
        assert_eq!(
            seen["digest"], entry["sha256"],
            "{name}: digest as record.json says"
        );

        let into = work.path().join("downloaded").join(name);
        let id = stored.id.to_string();
        let digest = entry["sha256"].as_str().expect("sha256");
        let downloaded = official(
            &fake,
            work.path(),
            &[
                "download",
                &id,
                &into.display().to_string(),
                "--expected-hash",
                digest,
            ],
            &[],
        );
        assert_eq!(
            downloaded.ok()["digestMismatch"],
            false,
            "{name}: the official client computed another digest"
        );
        let staged = work.path().join(entry["dir"].as_str().expect("dir"));
        let expected = files_under(&staged);
        assert!(!expected.is_empty(), "{name}: nothing staged");
        let got = files_under(&into);
        let got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        let expected_names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(got_names, expected_names, "{name}: entries");
        for ((file, bytes), (_, want)) in got.iter().zip(&expected) {
            assert!(
                bytes == want,
                "{name}/{file} differs from what record staged"
            );
        }
    }
}

// What shipgate does where the toolkit decides: each a behaviour of `record` a user would notice.

#[test]
fn record_sends_expires_at_only_for_an_asked_retention_capped_by_the_repository() {
    let fake = FakeArtifacts::start();
    let work = tempfile::tempdir().expect("workdir");
    state_files::full(&work.path().join(".shipgate"), ID, 2);
    let run = shipgate_record(work.path(), &fake)
        .env("GITHUB_RETENTION_DAYS", "30")
        .args(["record", "--retention-days", "45"])
        .run();
    run.expect_code(0);
    assert!(
        run.stderr.contains(
            "::warning title=shipgate artifacts::artifact retention `45` days is more than the repository allows; using 30 days"
        ),
        "{}",
        run.stderr
    );
    for artifact in fake.artifacts() {
        let days = days_from_now(artifact.expires_at.as_deref().expect("expires_at"));
        assert!((29.9..=30.1).contains(&days), "{}: {days}", artifact.name);
    }
}

#[test]
fn record_refuses_a_retention_out_of_range_naming_it() {
    let fake = FakeArtifacts::start();
    let work = tempfile::tempdir().expect("workdir");
    state_files::full(&work.path().join(".shipgate"), ID, 2);
    for days in ["4294967295", "401", "0"] {
        let run = shipgate_record(work.path(), &fake)
            .args(["record", "--retention-days", days])
            .run();
        run.expect_code(2);
        assert!(
            run.stderr
                .contains(&format!("`retention-days` `{days}` is out of range")),
            "{days}: {}",
            run.stderr
        );
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[test]
fn record_retries_exactly_the_statuses_the_toolkit_retries() {
    // 502 is retried by the toolkit (and was already); 501 is not (5xx was retried before).
    let fake = FakeArtifacts::start();
    fake.fail_next("CreateArtifact", 1, 502);
    fake.fail_next("FinalizeArtifact", 1, 501);
    // Blob requests: the Azure SDK retries 500 and 503, not 429.
    fake.fail_next("PutBlockList", 1, 429);
    let work = tempfile::tempdir().expect("workdir");
    state_files::full(&work.path().join(".shipgate"), ID, 2);
    let run = shipgate_record(work.path(), &fake).args(["record"]).run();
    run.expect_code(0);
    // First artifact: CreateArtifact 502 → retried; Put Block List 429 → failed, not retried.
    // Second: FinalizeArtifact 501 → failed, not retried. The rest upload.
    let calls: Vec<String> = fake
        .calls()
        .iter()
        .map(|c| format!("{} {}", c.method, c.status))
        .collect();
    assert_eq!(fake.count("CreateArtifact"), 7, "{calls:?}");
    assert_eq!(fake.count("PutBlockList"), 6, "{calls:?}");
    assert_eq!(fake.count("FinalizeArtifact"), 5, "{calls:?}");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join(".shipgate").join(ID).join("record.json"))
            .expect("record.json"),
    )
    .expect("JSON");
    let failed: Vec<String> = state["artifacts"]["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .filter(|a| a["state"] == "failed")
        .map(|a| a["error"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[0].contains("(429) after 1 attempt(s)"), "{failed:?}");
    assert!(failed[1].contains("(501)"), "{failed:?}");
    assert!(
        run.stderr.contains("retrying (attempt 1 of 5)"),
        "{}",
        run.stderr
    );
}

#[test]
fn record_on_enterprise_server_uploads_nothing_and_says_why() {
    let fake = FakeArtifacts::start();
    let work = tempfile::tempdir().expect("workdir");
    state_files::full(&work.path().join(".shipgate"), ID, 2);
    let run = shipgate_record(work.path(), &fake)
        .env("GITHUB_SERVER_URL", "https://github.example")
        .args(["record"])
        .run();
    run.expect_code(0);
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    assert!(
        run.stderr
            .contains("::notice title=shipgate artifacts::artifacts are not uploaded")
            && run
                .stderr
                .contains("not supported on GitHub Enterprise Server (https://github.example)"),
        "{}",
        run.stderr
    );
    let staged = work
        .path()
        .join(".shipgate")
        .join(ID)
        .join("artifacts")
        .join(format!("deployment-record-{ID}"));
    assert!(!files_under(&staged).is_empty(), "nothing staged");
}

/// One Twirp call to the fake, as any client would send it.
fn twirp(fake: &FakeArtifacts, method: &str, body: &Value) -> (u16, Value) {
    let origin = fake
        .results_url()
        .trim_end_matches("/some/runner/path/")
        .to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!(
                "{origin}/twirp/github.actions.results.api.v1.ArtifactService/{method}"
            ))
            .bearer_auth(fake.token())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
}

#[test]
fn the_fake_parses_requests_as_protojson_does() {
    use crate::support::fake_artifacts::{JOB_BACKEND_ID, RUN_BACKEND_ID};
    let fake = FakeArtifacts::start();
    // JSON names are as good as proto names.
    let (status, answer) = twirp(
        &fake,
        "CreateArtifact",
        &serde_json::json!({
            "workflowRunBackendId": RUN_BACKEND_ID,
            "workflowJobRunBackendId": JOB_BACKEND_ID,
            "name": "camel",
            "version": 7,
            "mimeType": "application/zip",
            "expiresAt": "2030-01-01T00:00:00Z",
        }),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        fake.artifact("camel").mime_type.as_deref(),
        Some("application/zip")
    );
    for (bad, why) in [
        (
            serde_json::json!({"retention_days": 3}),
            "unknown field `retention_days`",
        ),
        (serde_json::json!({"version": "7"}), "field `version`"),
        (
            serde_json::json!({"expires_at": "2030-01-01T00:00:00+02:00"}),
            "field `expires_at`",
        ),
    ] {
        let mut body = serde_json::json!({
            "workflow_run_backend_id": RUN_BACKEND_ID,
            "workflow_job_run_backend_id": JOB_BACKEND_ID,
            "name": "strict",
            "version": 7,
        });
        for (key, value) in bad.as_object().expect("object") {
            body[key] = value.clone();
        }
        let (status, answer) = twirp(&fake, "CreateArtifact", &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["code"], "malformed");
        assert!(
            answer["msg"].as_str().unwrap_or("").contains(why),
            "{answer}"
        );
    }
    assert!(!fake.names().contains(&"strict".to_string()));
}

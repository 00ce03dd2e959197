//! `setup/install.sh` (the `setup-shipgate` action) against a release served on loopback: it
//! installs a release archive only when the archive matches the release's SHA256SUMS (and the
//! pinned `sha256`) and the binary reports the version asked for; otherwise nothing is installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use crate::support::stub_http::{self, Outgoing};

const TARGET: &str = "x86_64-unknown-linux-musl";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn archive_name(version: &str) -> String {
    format!("shipgate-{version}-{TARGET}.tar.gz")
}

/// A release archive as `release.yml` makes it: the binary `shipgate` at the top of a tar.gz.
/// Made once per test run (the debug binary is large).
fn archive() -> Vec<u8> {
    static ARCHIVE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let stage = dir.path().join("stage");
            std::fs::create_dir_all(&stage).expect("stage dir");
            std::fs::copy(env!("CARGO_BIN_EXE_shipgate"), stage.join("shipgate"))
                .expect("copy binary");
            let out = dir.path().join("archive.tar.gz");
            let status = Command::new("tar")
                .arg("-I")
                .arg("gzip -1")
                .arg("-cf")
                .arg(&out)
                .arg("-C")
                .arg(&stage)
                .arg("shipgate")
                .status()
                .expect("tar");
            assert!(status.success());
            std::fs::read(out).expect("archive")
        })
        .clone()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Each request's path and `Authorization` header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Release {
    server: stub_http::Server,
    seen: Seen,
    sha256: String,
}

/// Serves `files` under `/v<version>/`, recording each path and its Authorization header.
fn serve(files: BTreeMap<String, Vec<u8>>, sha256: String) -> Release {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let server = stub_http::serve(move |req| {
        log.lock().expect("log").push((
            req.path.clone(),
            req.header("authorization").map(str::to_string),
        ));
        match files.get(&req.path) {
            Some(body) => Outgoing::new(200, body.clone()),
            None => Outgoing::new(404, "Not Found"),
        }
    });
    Release {
        server,
        seen,
        sha256,
    }
}

/// A release of this build's binary whose SHA256SUMS lists `listed` (the real sum when `None`).
fn release(listed: Option<&str>) -> Release {
    let bytes = archive();
    let sha = sha256_hex(&bytes);
    let sums = format!(
        "{}  {}\n{}  shipgate-{VERSION}-aarch64-unknown-linux-musl.tar.gz\n",
        listed.unwrap_or(&sha),
        archive_name(VERSION),
        "0".repeat(64)
    );
    let files = BTreeMap::from([
        (format!("/v{VERSION}/SHA256SUMS"), sums.into_bytes()),
        (format!("/v{VERSION}/{}", archive_name(VERSION)), bytes),
    ]);
    serve(files, sha)
}

struct Install {
    output: Output,
    dir: PathBuf,
    github_path: String,
    github_output: String,
}

fn install(release: &Release, work: &Path, env: &[(&str, &str)]) -> Install {
    let dir = work.join("bin");
    let github_path = work.join("github_path");
    let github_output = work.join("github_output");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("setup/install.sh");
    let mut command = Command::new("bash");
    command
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SHIPGATE_BASE_URL", &release.server.url)
        .env("SHIPGATE_INSTALL_DIR", &dir)
        .env("SHIPGATE_TARGET", TARGET)
        .env("GITHUB_PATH", &github_path)
        .env("GITHUB_OUTPUT", &github_output);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("bash");
    Install {
        output,
        dir,
        github_path: std::fs::read_to_string(github_path).unwrap_or_default(),
        github_output: std::fs::read_to_string(github_output).unwrap_or_default(),
    }
}

fn stderr(install: &Install) -> String {
    String::from_utf8_lossy(&install.output.stderr).into_owned()
}

#[test]
fn a_verified_release_is_installed_and_put_on_path() {
    let work = tempfile::tempdir().expect("temp dir");
    let release = release(None);
    let done = install(
        &release,
        work.path(),
        &[
            ("SHIPGATE_VERSION", &format!("v{VERSION}")),
            ("SHIPGATE_SHA256", &release.sha256.to_uppercase()),
            ("SHIPGATE_TOKEN", "mirror-token"),
        ],
    );
    assert!(done.output.status.success(), "{}", stderr(&done));
    let binary = done.dir.join("shipgate");
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .expect("installed binary runs");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("shipgate {VERSION}")
    );
    assert_eq!(done.github_path.trim(), done.dir.display().to_string());
    assert!(
        done.github_output
            .contains(&format!("path={}", binary.display()))
    );
    assert!(done.github_output.contains(&format!("version={VERSION}")));
    assert!(
        done.github_output
            .contains(&format!("sha256={}", release.sha256))
    );
    let seen = release.seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|(_, auth)| auth.as_deref() == Some("Bearer mirror-token"))
    );
}

#[test]
fn without_a_version_the_checkouts_own_release_is_installed() {
    let work = tempfile::tempdir().expect("temp dir");
    let release = release(None);
    let done = install(&release, work.path(), &[]);
    assert!(done.output.status.success(), "{}", stderr(&done));
    assert!(done.dir.join("shipgate").is_file());
    let seen = release.seen.lock().expect("log").clone();
    assert!(seen.iter().all(|(_, auth)| auth.is_none()), "{seen:?}");
}

#[test]
fn an_archive_that_does_not_match_the_sums_installs_nothing() {
    let work = tempfile::tempdir().expect("temp dir");
    let wrong = "f".repeat(64);
    let release = release(Some(&wrong));
    let done = install(&release, work.path(), &[("SHIPGATE_VERSION", VERSION)]);
    assert!(!done.output.status.success());
    let message = stderr(&done);
    assert!(
        message.contains("does not match SHA256SUMS") && message.contains(&wrong),
        "{message}"
    );
    assert!(!done.dir.join("shipgate").exists());
    assert!(done.github_path.is_empty());
}

#[test]
fn an_archive_other_than_the_pinned_one_installs_nothing() {
    let work = tempfile::tempdir().expect("temp dir");
    let release = release(None);
    let pinned = "a".repeat(64);
    let done = install(
        &release,
        work.path(),
        &[("SHIPGATE_VERSION", VERSION), ("SHIPGATE_SHA256", &pinned)],
    );
    assert!(!done.output.status.success());
    assert!(
        stderr(&done).contains("is not the pinned one"),
        "{}",
        stderr(&done)
    );
    assert!(!done.dir.join("shipgate").exists());
}

#[test]
fn a_binary_of_another_version_installs_nothing() {
    let work = tempfile::tempdir().expect("temp dir");
    // The release `v9.9.9` carries this build's binary (another version) under its name.
    let bytes = archive();
    let sha = sha256_hex(&bytes);
    let name = archive_name("9.9.9");
    let files = BTreeMap::from([
        (
            "/v9.9.9/SHA256SUMS".to_string(),
            format!("{sha}  {name}\n").into_bytes(),
        ),
        (format!("/v9.9.9/{name}"), bytes),
    ]);
    let release = serve(files, sha);
    let done = install(&release, work.path(), &[("SHIPGATE_VERSION", "9.9.9")]);
    assert!(!done.output.status.success());
    assert!(
        stderr(&done).contains(&format!("says it is version '{VERSION}', not 9.9.9")),
        "{}",
        stderr(&done)
    );
    assert!(!done.dir.join("shipgate").exists());
}

#[test]
fn a_missing_release_or_bad_version_is_named() {
    let work = tempfile::tempdir().expect("temp dir");
    let release = release(None);
    let done = install(&release, work.path(), &[("SHIPGATE_VERSION", "1.2.3")]);
    assert!(!done.output.status.success());
    assert!(
        stderr(&done).contains("cannot download") && stderr(&done).contains("/v1.2.3/SHA256SUMS"),
        "{}",
        stderr(&done)
    );
    let done = install(
        &release,
        work.path(),
        &[("SHIPGATE_VERSION", "latest; rm -rf /")],
    );
    assert!(!done.output.status.success());
    assert!(
        stderr(&done).contains("is not a release version"),
        "{}",
        stderr(&done)
    );
    assert!(!done.dir.join("shipgate").exists());
}

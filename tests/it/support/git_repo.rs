//! A throwaway local git repository with a `main` branch, for `validate` without a token.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

pub struct GitRepo {
    dir: TempDir,
}

impl GitRepo {
    /// A repository with one commit on `main`.
    pub fn new() -> GitRepo {
        let repo = GitRepo {
            dir: tempfile::tempdir().expect("temp dir for the repository"),
        };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo.commit("initial");
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs git in the repository and returns trimmed stdout; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(self.dir.path(), args)
    }

    /// An empty commit on the current branch; returns its SHA.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn lightweight_tag(&self, name: &str) {
        self.git(&["tag", name]);
    }

    pub fn annotated_tag(&self, name: &str, message: &str) {
        self.git(&["tag", "-a", name, "-m", message]);
    }
}

/// Runs git in `dir` as the tests' release bot (no user or system config, no signing) and
/// returns trimmed stdout; panics on failure.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=Release Bot",
            "-c",
            "user.email=bot@example.invalid",
        ])
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

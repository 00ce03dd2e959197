//! The local git adapter, for use without a GitHub token: argv only (no shell), options ended
//! with `--end-of-options` before any ref, and `safe.directory` set for the repository so the
//! container's root user can read a workspace owned by the runner's user.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Classify, Kind};

#[derive(Debug, thiserror::Error)]
pub(crate) enum GitError {
    #[error(
        "cannot run `git` ({reason}); install git or pass a `github-token` to use the GitHub API"
    )]
    Spawn { reason: String },
    #[error(
        "`{dir}` is not a git repository; run shipgate in a checkout or set `GITHUB_WORKSPACE`"
    )]
    NotARepository { dir: PathBuf },
    #[error("`git {command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

impl Classify for GitError {
    fn kind(&self) -> Kind {
        match self {
            GitError::NotARepository { .. } => Kind::Usage,
            _ => Kind::Dependency,
        }
    }
}

/// A local repository.
pub(crate) struct Git {
    dir: PathBuf,
}

/// What a tag points at.
#[derive(Debug, Clone)]
pub(crate) struct LocalTag {
    pub(crate) commit: String,
    pub(crate) annotated: bool,
    pub(crate) signed: bool,
    /// The annotated tag's message, without its signature.
    pub(crate) message: Option<String>,
}

impl Git {
    pub(crate) fn open(dir: &Path) -> Result<Git, GitError> {
        let git = Git {
            dir: dir.to_path_buf(),
        };
        match git.run(&["rev-parse", "--git-dir"]) {
            Ok(_) => Ok(git),
            Err(GitError::Failed { .. }) => Err(GitError::NotARepository {
                dir: dir.to_path_buf(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Runs git with `args`; `Ok(stdout)` on exit 0, `Err(Failed)` otherwise.
    fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let output = self.command(args).output().map_err(|e| GitError::Spawn {
            reason: e.to_string(),
        })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(GitError::Failed {
                command: args.join(" "),
                stderr: crate::actions::quote(String::from_utf8_lossy(&output.stderr).trim()),
            })
        }
    }

    /// Runs git with `args`; `Ok(Some(stdout))` on exit 0, `Ok(None)` on exit 1.
    fn probe(&self, args: &[&str]) -> Result<Option<String>, GitError> {
        let output = self.command(args).output().map_err(|e| GitError::Spawn {
            reason: e.to_string(),
        })?;
        match output.status.code() {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&output.stdout).trim().to_string(),
            )),
            Some(1) => Ok(None),
            _ => Err(GitError::Failed {
                command: args.join(" "),
                stderr: crate::actions::quote(String::from_utf8_lossy(&output.stderr).trim()),
            }),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        command
            .arg("-c")
            .arg(format!("safe.directory={}", self.dir.display()))
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        command
    }

    /// The commit `refs/tags/<tag>` points at (peeled through annotated tags), or `None`.
    pub(crate) fn tag(&self, tag: &str) -> Result<Option<LocalTag>, GitError> {
        let reference = format!("refs/tags/{tag}");
        let peeled = format!("{reference}^{{commit}}");
        let Some(commit) = self.probe(&[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &peeled,
        ])?
        else {
            return Ok(None);
        };
        let kind = self.run(&["cat-file", "-t", "--end-of-options", &reference])?;
        let annotated = kind == "tag";
        let signed = annotated && {
            let body = self.run(&["cat-file", "tag", "--end-of-options", &reference])?;
            body.contains("-----BEGIN PGP SIGNATURE-----")
                || body.contains("-----BEGIN SSH SIGNATURE-----")
                || body.contains("-----BEGIN SIGNED MESSAGE-----")
        };
        let message = if annotated {
            let text = self.run(&[
                "for-each-ref",
                "--format=%(contents:subject)%0a%0a%(contents:body)",
                &reference,
            ])?;
            Some(text.trim_end().to_string()).filter(|m| !m.is_empty())
        } else {
            None
        };
        Ok(Some(LocalTag {
            commit,
            annotated,
            signed,
            message,
        }))
    }

    /// Whether `git verify-tag` accepts the tag's signature with the local keyring.
    pub(crate) fn verify_tag(&self, tag: &str) -> Result<bool, GitError> {
        Ok(self
            .probe(&[
                "verify-tag",
                "--end-of-options",
                &format!("refs/tags/{tag}"),
            ])?
            .is_some())
    }

    /// The default branch: `origin/HEAD`, else `init.defaultBranch`, else `main` or `master`,
    /// whichever exists.
    pub(crate) fn default_branch(&self) -> Result<Option<String>, GitError> {
        if let Some(head) = self.probe(&[
            "symbolic-ref",
            "--quiet",
            "--short",
            "refs/remotes/origin/HEAD",
        ])? {
            return Ok(Some(head.trim_start_matches("origin/").to_string()));
        }
        let configured = self.probe(&["config", "--get", "init.defaultBranch"])?;
        for candidate in configured
            .iter()
            .map(String::as_str)
            .chain(["main", "master"])
        {
            if self.branch_ref(candidate)?.is_some() {
                return Ok(Some(candidate.to_string()));
            }
        }
        Ok(None)
    }

    /// The ref to compare with for `branch`: the remote-tracking branch when there is one
    /// (what was pushed), else the local branch.
    pub(crate) fn branch_ref(&self, branch: &str) -> Result<Option<String>, GitError> {
        for reference in [
            format!("refs/remotes/origin/{branch}"),
            format!("refs/heads/{branch}"),
        ] {
            if self
                .probe(&[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    &reference,
                ])?
                .is_some()
            {
                return Ok(Some(reference));
            }
        }
        Ok(None)
    }

    /// Whether `commit` is an ancestor of (or equal to) `reference`.
    pub(crate) fn is_ancestor(&self, commit: &str, reference: &str) -> Result<bool, GitError> {
        Ok(self
            .probe(&[
                "merge-base",
                "--is-ancestor",
                "--end-of-options",
                commit,
                reference,
            ])?
            .is_some())
    }
}

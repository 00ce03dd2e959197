//! Resolving a release: its tag to a commit (through GitHub's API, or the local repository when
//! there is no token), the tag's signature, whether the commit is on the default branch, and
//! what the environment runs now (the downgrade check).

use serde::Deserialize;

use crate::actions::{self};
use crate::error::{Error, Result, ResultExt};
use crate::git::Git;
use crate::github::{GitHub, GitHubError, deployments};
use crate::state::validate::{Previous, Signature};
use crate::version::{self, Release};

/// How many deployments of the environment are read to find what runs there now.
const DEPLOYMENTS_SCANNED: u32 = 30;
/// Annotated tags pointing at tags are peeled at most this deep.
const MAX_TAG_DEPTH: usize = 5;

/// Resolved options.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) tag_prefix: String,
    pub(crate) allow_prerelease: bool,
    pub(crate) require_signed: bool,
    pub(crate) allow_any_branch: bool,
    pub(crate) allow_downgrade: bool,
    pub(crate) default_branch: Option<String>,
}

/// What the tag resolved to.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) sha: String,
    pub(crate) annotated: bool,
    pub(crate) message: Option<String>,
    pub(crate) signature: Signature,
    pub(crate) default_branch: Option<String>,
    pub(crate) reachable: Option<bool>,
    pub(crate) previous: Option<Previous>,
    pub(crate) checked_with: &'static str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RepoInfo {
    default_branch: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GitRef {
    object: GitObject,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GitObject {
    #[serde(rename = "type")]
    kind: String,
    sha: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TagObject {
    message: Option<String>,
    object: GitObject,
    verification: Option<Verification>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Verification {
    verified: bool,
    reason: Option<String>,
    signature: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Compare {
    status: String,
}

pub(crate) async fn resolve_with_github(
    github: &GitHub,
    release: &Release,
    options: &Options,
    environment: &str,
) -> Result<Resolved> {
    let tag = &release.tag;
    let reference: GitRef = match github
        .get(&github.repo_path(&format!(
            "/git/ref/tags/{}",
            crate::secret::percent_encode(tag)
        )))
        .await
    {
        Ok(reference) => reference,
        Err(GitHubError::NotFound { .. }) => {
            return Err(Error::gate(format!(
                "tag {} does not exist in `{}`; push it first (`git push origin {tag}`) or check the version",
                actions::quote(tag),
                github.repo()
            )));
        }
        Err(e) => return Err(Error::from(e).context(format!("cannot look up tag `{tag}`"))),
    };
    let mut object = reference.object;
    let annotated = object.kind == "tag";
    let mut signature = Signature {
        signed: false,
        verified: None,
        reason: None,
    };
    let mut message = None;
    let mut depth = 0;
    while object.kind == "tag" {
        depth += 1;
        if depth > MAX_TAG_DEPTH {
            return Err(Error::gate(format!(
                "tag `{tag}` is a chain of more than {MAX_TAG_DEPTH} tag objects; tag the commit directly"
            )));
        }
        let tag_object: TagObject = github
            .get(&github.repo_path(&format!("/git/tags/{}", object.sha)))
            .await
            .context(format!("cannot read the annotated tag `{tag}`"))?;
        if depth == 1 {
            message = tag_object.message.clone();
        }
        if depth == 1
            && let Some(v) = &tag_object.verification
        {
            signature = Signature {
                signed: v.signature.is_some() || v.verified,
                verified: Some(v.verified),
                reason: v.reason.clone(),
            };
        }
        object = tag_object.object;
    }
    if object.kind != "commit" {
        return Err(Error::gate(format!(
            "tag `{tag}` points at a {}, not a commit; tag a commit",
            object.kind
        )));
    }
    check_signature(tag, &signature, options)?;

    let mut default_branch = options.default_branch.clone();
    let mut reachable = None;
    if !options.allow_any_branch {
        let branch = match default_branch.clone() {
            Some(branch) => branch,
            None => {
                let info: RepoInfo = github
                    .get(&github.repo_path(""))
                    .await
                    .context(format!("cannot read the repository `{}`", github.repo()))?;
                info.default_branch
            }
        };
        // Only `status` is read: one commit a page, not the 250 GitHub sends by default.
        let compare: Compare = github
            .get(&github.repo_path(&format!(
                "/compare/{}...{}?per_page=1",
                crate::secret::percent_encode(&branch),
                object.sha
            )))
            .await
            .context(format!("cannot compare `{tag}` with `{branch}`"))?;
        if !matches!(compare.status.as_str(), "behind" | "identical") {
            return Err(off_branch(
                tag,
                &object.sha,
                &branch,
                &format!(" (it is {} of it)", compare.status),
            ));
        }
        reachable = Some(true);
        default_branch = Some(branch);
    }

    let previous = newest_successful(github, environment, &options.tag_prefix).await?;
    if let Some(previous) = &previous
        && let Ok(running) = semver::Version::parse(&previous.version)
        && release.precedence(&running).is_lt()
    {
        if options.allow_downgrade {
            actions::annotate(
                actions::Level::Warning,
                Some("downgrade allowed"),
                &format!(
                    "deploying `{tag}` over `{}` in `{environment}`: a downgrade, allowed by `allow-downgrade`",
                    previous.version
                ),
            );
        } else {
            return Err(Error::gate(format!(
                "`{tag}` is older than `{}`, the newest successful deployment to `{environment}` (deployment {}); deploy a newer version, or set `allow-downgrade: true` for an emergency redeploy",
                previous.version, previous.deployment_id
            )));
        }
    }
    Ok(Resolved {
        sha: object.sha,
        annotated,
        message: message.map(|m| m.trim_end().to_string()),
        signature,
        default_branch,
        reachable,
        previous,
        checked_with: "github-api",
    })
}

pub(crate) fn check_signature(tag: &str, signature: &Signature, options: &Options) -> Result<()> {
    if options.require_signed && signature.verified != Some(true) {
        let why = match (&signature.reason, signature.signed) {
            (Some(reason), _) if reason != "valid" => format!("verification says `{reason}`"),
            (_, false) => "it is not signed".to_string(),
            _ => "its signature could not be verified".to_string(),
        };
        return Err(Error::gate(format!(
            "tag `{tag}` is refused because signatures are required (`require-signed`) and {why}; push a signed annotated tag (`git tag -s`)"
        )));
    }
    Ok(())
}

/// The version of the environment's newest deployment whose latest status is `success`: from
/// the deployment's payload (`version`, as shipgate writes it), else its ref when that is a tag.
pub(crate) async fn newest_successful(
    github: &GitHub,
    environment: &str,
    prefix: &str,
) -> Result<Option<Previous>> {
    let found = deployments::list(github, environment, None, DEPLOYMENTS_SCANNED, 1)
        .await
        .context(format!("cannot list the deployments of `{environment}`"))?;
    for deployment in found {
        let latest = deployments::latest_status(github, deployment.id)
            .await
            .context(format!(
                "cannot read the statuses of deployment {}",
                deployment.id
            ))?;
        if latest.map(|s| s.state).as_deref() != Some("success") {
            continue;
        }
        let payload = deployment.payload();
        let candidates = [
            payload
                .get("version")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            Some(deployment.reference.clone()),
        ];
        if let Some(release) = candidates
            .into_iter()
            .flatten()
            .find_map(|text| version::parse(&text, prefix).ok())
        {
            return Ok(Some(Previous {
                version: release.version.to_string(),
                deployment_id: deployment.id,
                sha: deployment.sha,
                created_at: deployment.created_at,
            }));
        }
        tracing::debug!(
            "deployment {} has no version in its payload or ref; looking further back",
            deployment.id
        );
    }
    Ok(None)
}

pub(crate) fn resolve_with_git(
    dir: &std::path::Path,
    release: &Release,
    options: &Options,
) -> Result<Resolved> {
    let git = Git::open(dir)?;
    let tag = &release.tag;
    let Some(local) = git.tag(tag)? else {
        return Err(Error::gate(format!(
            "tag {} does not exist in the local repository `{}`; create it (`git tag {tag}`) or fetch tags (`git fetch --tags`)",
            actions::quote(tag),
            dir.display()
        )));
    };
    let signature = if local.signed {
        let verified = git.verify_tag(tag)?;
        Signature {
            signed: true,
            verified: Some(verified),
            reason: Some(
                if verified {
                    "valid"
                } else {
                    "unverified_locally"
                }
                .to_string(),
            ),
        }
    } else {
        Signature {
            signed: false,
            verified: None,
            reason: Some("unsigned".to_string()),
        }
    };
    check_signature(tag, &signature, options)?;
    let mut default_branch = options.default_branch.clone();
    let mut reachable = None;
    if !options.allow_any_branch {
        let branch = match default_branch.clone() {
            Some(branch) => branch,
            None => git.default_branch()?.ok_or_else(|| {
                Error::usage(format!(
                    "cannot tell the default branch of `{}`; pass `--default-branch`",
                    dir.display()
                ))
            })?,
        };
        let Some(reference) = git.branch_ref(&branch)? else {
            return Err(Error::usage(format!(
                "branch `{branch}` does not exist in `{}`; pass the right `--default-branch` or fetch it",
                dir.display()
            )));
        };
        if !git.is_ancestor(&local.commit, &reference)? {
            return Err(off_branch(tag, &local.commit, &branch, ""));
        }
        reachable = Some(true);
        default_branch = Some(branch);
    }
    tracing::info!(
        "checked the local repository; the downgrade check needs the GitHub Deployments API and was skipped"
    );
    Ok(Resolved {
        sha: local.commit,
        annotated: local.annotated,
        message: local.message,
        signature,
        default_branch,
        reachable,
        previous: None,
        checked_with: "local-git",
    })
}

/// The refusal for a tag whose commit is not on the default branch.
pub(crate) fn off_branch(tag: &str, sha: &str, branch: &str, detail: &str) -> Error {
    Error::gate(format!(
        "tag `{tag}` (commit {}) is not on the default branch `{branch}`{detail}; release from `{branch}`, or pass `--allow-any-branch` if this is intended",
        crate::text::short_sha(sha)
    ))
}

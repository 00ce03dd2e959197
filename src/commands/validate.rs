//! `shipgate validate` (seed 004 §1 "Validate Release"): the version is strict SemVer, its tag
//! exists and resolves to a commit on the default branch, it is not older than what the
//! environment runs, and the deployment id is emitted for every later step.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::json;

use super::{Outcome, set_outputs};
use crate::actions::{self, Table};
use crate::error::{Error, Result, ResultExt};
use crate::git::Git;
use crate::github::{GitHub, GitHubError, deployments};
use crate::settings::{self, Settings};
use crate::state::validate::{Previous, Signature, TagType, ValidateFile, VersionSource};
use crate::state::{Header, StateDir};
use crate::version::{self, Release};

/// How many deployments of the environment are read to find what runs there now.
const DEPLOYMENTS_SCANNED: u32 = 30;
/// Annotated tags pointing at tags are peeled at most this deep.
const MAX_TAG_DEPTH: usize = 5;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Release version or tag, e.g. `v1.2.3` (input `version`) [default: the workflow_dispatch
    /// input `version`, else the pushed tag in GITHUB_REF]
    #[arg(long = "version", value_name = "VERSION")]
    pub(crate) version: Option<String>,
    /// The one prefix a tag may carry before the SemVer (input `tag-prefix`) [default: v]
    #[arg(long, value_name = "PREFIX")]
    pub(crate) tag_prefix: Option<String>,
    /// Refuse pre-releases such as `v2.0.0-rc1` (input `allow-prerelease: false`)
    #[arg(long)]
    pub(crate) no_prerelease: bool,
    /// Refuse a tag whose signature GitHub (or local git) cannot verify (input `require-signed`)
    #[arg(long)]
    pub(crate) require_signed: bool,
    /// Skip the check that the tagged commit is on the default branch (input `allow-any-branch`)
    #[arg(long)]
    pub(crate) allow_any_branch: bool,
    /// Allow a version older than the environment's newest successful deployment: the
    /// emergency-redeploy path (input `allow-downgrade`)
    #[arg(long)]
    pub(crate) allow_downgrade: bool,
    /// The branch release tags must be on (input `default-branch`) [default: the repository's]
    #[arg(long, value_name = "BRANCH")]
    pub(crate) default_branch: Option<String>,
    /// The local repository used when no GitHub token is given [default: GITHUB_WORKSPACE or .]
    #[arg(long, value_name = "DIR")]
    pub(crate) repo_path: Option<PathBuf>,
}

pub(crate) use crate::release::config::FileConfig;

/// Resolved options.
#[derive(Debug)]
struct Options {
    tag_prefix: String,
    allow_prerelease: bool,
    require_signed: bool,
    allow_any_branch: bool,
    allow_downgrade: bool,
    default_branch: Option<String>,
}

impl Options {
    fn resolve(args: &Args, settings: &Settings) -> Result<Options> {
        let file = settings.file.validate.as_ref();
        let file_default = FileConfig::default();
        let file = file.unwrap_or(&file_default);
        let tag_prefix = settings
            .text(
                "tag-prefix",
                args.tag_prefix.clone(),
                file.tag_prefix.as_ref(),
            )
            .unwrap_or_else(|| "v".to_string());
        if tag_prefix.len() > 32
            || !tag_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
            || tag_prefix.starts_with(['-', '.', '/'])
        {
            return Err(Error::usage(format!(
                "tag prefix {} is not valid: use up to 32 letters, digits, `-`, `_`, `.` or `/`",
                actions::quote(&tag_prefix)
            )));
        }
        let allow_prerelease = if args.no_prerelease {
            false
        } else {
            settings.switch("allow-prerelease", false, file.allow_prerelease, true)?
        };
        let default_branch = settings.text(
            "default-branch",
            args.default_branch.clone(),
            file.default_branch.as_ref(),
        );
        if let Some(branch) = &default_branch
            && (branch.starts_with('-') || branch.chars().any(|c| c.is_control() || c == ' '))
        {
            return Err(Error::usage(format!(
                "default branch {} is not a branch name",
                actions::quote(branch)
            )));
        }
        Ok(Options {
            tag_prefix,
            allow_prerelease,
            require_signed: settings.switch(
                "require-signed",
                args.require_signed,
                file.require_signed,
                false,
            )?,
            allow_any_branch: settings.switch(
                "allow-any-branch",
                args.allow_any_branch,
                file.allow_any_branch,
                false,
            )?,
            allow_downgrade: settings.switch(
                "allow-downgrade",
                args.allow_downgrade,
                None,
                false,
            )?,
            default_branch,
        })
    }
}

/// What the tag resolved to.
#[derive(Debug, Clone)]
struct Resolved {
    sha: String,
    annotated: bool,
    message: Option<String>,
    signature: Signature,
    default_branch: Option<String>,
    reachable: Option<bool>,
    previous: Option<Previous>,
    checked_with: &'static str,
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let options = Options::resolve(args, settings)?;
    let token = settings::secret("github-token", &["GITHUB_TOKEN", "GH_TOKEN"]);
    let (raw, source) = version_input(args)?;
    let release = version::parse(&raw, &options.tag_prefix).map_err(Error::gate)?;
    if !release.version.pre.is_empty() && !options.allow_prerelease {
        return Err(Error::gate(format!(
            "{} is a pre-release and pre-releases are refused here (`allow-prerelease: false`); release a final version or allow pre-releases",
            actions::quote(&release.tag)
        )));
    }
    tracing::info!(
        "validating release {} (from {}) for `{}`",
        actions::quote(&release.tag),
        source_label(source),
        settings.environment
    );

    let group = actions::group(&format!("Resolve release {}", actions::quote(&release.tag)));
    let resolved = match (&token, &settings.repository) {
        (Some(token), Some(repo)) => {
            check_repository(repo)?;
            let api = settings::env("GITHUB_API_URL")
                .unwrap_or_else(|| "https://api.github.com".to_string());
            let github = GitHub::new(&api, token, repo)?;
            resolve_with_github(&github, &release, &options, &settings.environment).await?
        }
        _ => {
            let dir = args
                .repo_path
                .clone()
                .or_else(|| settings::env("GITHUB_WORKSPACE").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("."));
            if token.is_some() {
                tracing::info!(
                    "a GitHub token but no repository (`--repository` or GITHUB_REPOSITORY): checking the local git repository instead of the GitHub API"
                );
            }
            resolve_with_git(&dir, &release, &options)?
        }
    };

    if let Some(message) = &resolved.message {
        tracing::info!("tag message:");
        actions::print_untrusted(message);
    }
    drop(group);
    let deployment_id = match &settings.deployment_id {
        Some(id) => id.clone(),
        None => deployment_id(&resolved.sha),
    };
    let state = StateDir::create(&settings.state_root, &deployment_id)?;
    let result = ValidateFile {
        header: Header::now::<ValidateFile>("pass"),
        deployment_id: deployment_id.clone(),
        environment: settings.environment.clone(),
        repository: settings.repository.clone(),
        version: release.version.to_string(),
        major: release.version.major,
        minor: release.version.minor,
        patch: release.version.patch,
        prerelease: release.version.pre.to_string(),
        build: release.version.build.to_string(),
        tag: release.tag.clone(),
        sha: resolved.sha.clone(),
        tag_type: if resolved.annotated {
            TagType::Annotated
        } else {
            TagType::Lightweight
        },
        tag_message: resolved.message.clone(),
        signature: resolved.signature.clone(),
        default_branch: resolved.default_branch.clone(),
        reachable_from_default_branch: resolved.reachable,
        previous: resolved.previous.clone(),
        downgrade_allowed: options.allow_downgrade,
        source,
        checked_with: resolved.checked_with.to_string(),
    };
    let path = state.save(&result)?;
    set_outputs(&[
        ("result", "pass".to_string()),
        ("version", result.version.clone()),
        ("major", result.major.to_string()),
        ("minor", result.minor.to_string()),
        ("patch", result.patch.to_string()),
        ("prerelease", result.prerelease.clone()),
        ("tag", result.tag.clone()),
        ("sha", result.sha.clone()),
        ("deployment-id", deployment_id.clone()),
        (
            "tag-message",
            result.tag_message.clone().unwrap_or_default(),
        ),
    ])?;
    actions::set_env("SHIPGATE_DEPLOYMENT_ID", &deployment_id)?;
    actions::append_summary(&summary(&result))?;
    tracing::info!(
        "release {} is commit {}; deployment id `{deployment_id}`; state in `{}`",
        actions::quote(&result.tag),
        &result.sha,
        path.display()
    );
    let json = serde_json::to_value(&result).unwrap_or_else(|_| json!({}));
    Ok(Outcome::success(json))
}

/// The version text and where it came from: flag > input > workflow_dispatch input > tag ref.
fn version_input(args: &Args) -> Result<(String, VersionSource)> {
    if let Some(version) = &args.version {
        return Ok((version.clone(), VersionSource::Flag));
    }
    if let Some(version) = settings::input("version") {
        return Ok((version, VersionSource::Input));
    }
    if settings::env("GITHUB_EVENT_NAME").as_deref() == Some("workflow_dispatch")
        && let Some(path) = settings::env("GITHUB_EVENT_PATH")
    {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::usage(format!(
                "cannot read the event payload `{path}` (GITHUB_EVENT_PATH): {e}"
            ))
        })?;
        let event: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::usage(format!("the event payload `{path}` is not JSON: {e}")))?;
        if let Some(version) = event
            .pointer("/inputs/version")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            return Ok((version.to_string(), VersionSource::WorkflowDispatch));
        }
    }
    match settings::env("GITHUB_REF") {
        Some(reference) if reference.starts_with("refs/tags/") => Ok((
            reference.trim_start_matches("refs/tags/").to_string(),
            VersionSource::GitRef,
        )),
        other => Err(Error::usage(format!(
            "no version to validate: pass `--version v1.2.3` or the `version` input, or run on a tag push{}",
            other
                .map(|r| format!(" (GITHUB_REF is {}, not a tag)", actions::quote(&r)))
                .unwrap_or_default()
        ))),
    }
}

fn source_label(source: VersionSource) -> &'static str {
    match source {
        VersionSource::Flag => "--version",
        VersionSource::Input => "the `version` input",
        VersionSource::WorkflowDispatch => "the workflow_dispatch input",
        VersionSource::GitRef => "GITHUB_REF",
    }
}

pub(crate) fn check_repository(repo: &str) -> Result<()> {
    let valid = repo.split_once('/').is_some_and(|(owner, name)| {
        let part = |s: &str| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        part(owner) && part(name)
    });
    if valid {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "repository {} is not `owner/name`; pass `--repository owner/name`",
            actions::quote(repo)
        )))
    }
}

/// `<GITHUB_RUN_ID>-<sha7>` in Actions (the same for every re-run attempt), else
/// `<unix-seconds>-<sha7>`.
pub(crate) fn deployment_id(sha: &str) -> String {
    deployment_id_of(settings::env("GITHUB_RUN_ID").as_deref(), sha)
}

/// `<run id>-<short sha>`: the same for every job and re-run attempt of one workflow run; a
/// timestamp stands in for the run id outside Actions (or for one that is not a number).
fn deployment_id_of(run_id: Option<&str>, sha: &str) -> String {
    let short: String = sha.chars().take(7).collect();
    match run_id.filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit())) {
        Some(run_id) => format!("{run_id}-{short}"),
        None => format!("{}-{short}", jiff::Timestamp::now().as_second()),
    }
}

#[derive(Debug, Deserialize)]
struct RepoInfo {
    default_branch: String,
}

#[derive(Debug, Deserialize)]
struct GitRef {
    object: GitObject,
}

#[derive(Debug, Deserialize)]
struct GitObject {
    #[serde(rename = "type")]
    kind: String,
    sha: String,
}

#[derive(Debug, Deserialize)]
struct TagObject {
    message: Option<String>,
    object: GitObject,
    verification: Option<Verification>,
}

#[derive(Debug, Deserialize)]
struct Verification {
    verified: bool,
    reason: Option<String>,
    signature: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Compare {
    status: String,
}

async fn resolve_with_github(
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

fn check_signature(tag: &str, signature: &Signature, options: &Options) -> Result<()> {
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
async fn newest_successful(
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

fn resolve_with_git(
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
fn off_branch(tag: &str, sha: &str, branch: &str, detail: &str) -> Error {
    Error::gate(format!(
        "tag `{tag}` (commit {}) is not on the default branch `{branch}`{detail}; release from `{branch}`, or pass `--allow-any-branch` if this is intended",
        short(sha)
    ))
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn summary(result: &ValidateFile) -> String {
    let mut table = Table::new(&["Check", "Result"]);
    table.row(&["Version", &format!("`{}`", result.version)]);
    let signature = match (result.signature.signed, result.signature.verified) {
        (_, Some(true)) => "signature verified",
        (true, _) => "signed, not verified",
        (false, _) => "unsigned",
    };
    table.row(&[
        "Tag",
        &format!("`{}` ({}, {signature})", result.tag, result.tag_type),
    ]);
    let commit = match (settings::env("GITHUB_SERVER_URL"), &result.repository) {
        (Some(server), Some(repo)) => format!(
            "[`{}`]({server}/{repo}/commit/{})",
            short(&result.sha),
            result.sha
        ),
        _ => format!("`{}`", result.sha),
    };
    table.row(&["Commit", &commit]);
    table.row(&[
        "On the default branch",
        &match (&result.default_branch, result.reachable_from_default_branch) {
            (Some(branch), Some(true)) => format!("yes (`{branch}`)"),
            _ => "not checked (`allow-any-branch`)".to_string(),
        },
    ]);
    table.row(&[
        &format!("Running in `{}`", result.environment),
        &match &result.previous {
            Some(previous) => format!(
                "`{}` (deployment {})",
                previous.version, previous.deployment_id
            ),
            None if result.checked_with == "local-git" => {
                "not checked (no GitHub token)".to_string()
            }
            None => "no successful deployment yet".to_string(),
        },
    ]);
    table.row(&["Deployment id", &format!("`{}`", result.deployment_id)]);
    table.row(&["Checked with", &result.checked_with]);
    format!(
        "### ✅ Release `{}` validated\n\n{}\n",
        result.tag,
        table.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_makes_the_deployment_id_stable() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(deployment_id_of(Some("4242"), sha), "4242-0123456");
        assert_eq!(
            deployment_id_of(Some("4242"), sha),
            deployment_id_of(Some("4242"), sha),
            "every job of the run derives the same id"
        );
        // Outside Actions, or with a run id that is not a number, a timestamp stands in.
        for run_id in [None, Some(""), Some("../x")] {
            let id = deployment_id_of(run_id, sha);
            let (stamp, short) = id.split_once('-').expect("two parts");
            assert_eq!(short, "0123456");
            assert!(
                stamp.parse::<i64>().expect("a timestamp") > 1_700_000_000,
                "{id}"
            );
        }
    }

    #[test]
    fn repositories_must_be_owner_slash_name() {
        assert!(check_repository("octo/app").is_ok());
        assert!(check_repository("octo").is_err());
        assert!(check_repository("octo/app/x").is_err());
        assert!(check_repository("../app").is_err());
    }
}

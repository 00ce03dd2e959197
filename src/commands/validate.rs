//! `shipgate validate` (seed 004 §1 "Validate Release"): the version is strict SemVer, its tag
//! exists and resolves to a commit on the default branch, it is not older than what the
//! environment runs, and the deployment id is emitted for every later step.

use std::path::PathBuf;

use serde_json::json;

use super::{Outcome, set_outputs};
use crate::actions::{self};
use crate::error::{Error, Result};
use crate::release::id::deployment_id;
use crate::release::resolve::{Options, resolve_with_git, resolve_with_github};
use crate::release::summary::summary;
use crate::settings::{self, Settings};
use crate::state::validate::{TagType, ValidateFile, VersionSource};
use crate::state::{Header, StateDir};
use crate::version::{self};

/// How many deployments of the environment are read to find what runs there now.
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

/// The command's options from its flags, inputs and `validate:` section.
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
        allow_downgrade: settings.switch("allow-downgrade", args.allow_downgrade, None, false)?,
        default_branch,
    })
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let options = resolve(args, settings)?;
    let token = settings.github_token();
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
        (Some(token), Some(_)) => {
            let github = settings.github_with(token, "`shipgate validate`")?;
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
        let text = crate::inputs::read_text_file(std::path::Path::new(&path)).map_err(|e| {
            Error::usage(format!(
                "cannot read the event payload `{path}` (GITHUB_EVENT_PATH): {e}"
            ))
        })?;
        let event: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::usage(format!("the event payload `{path}` is not JSON: {e}")))?;
        match event.pointer("/inputs/version") {
            Some(serde_json::Value::String(version)) if !version.trim().is_empty() => {
                return Ok((version.trim().to_string(), VersionSource::WorkflowDispatch));
            }
            None | Some(serde_json::Value::Null | serde_json::Value::String(_)) => {}
            Some(other) => {
                return Err(Error::usage(format!(
                    "the workflow_dispatch input `version` in `{path}` is {}, not text; dispatch with a version such as `v1.2.3`",
                    actions::quote(&other.to_string())
                )));
            }
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

//! `shipgate record` (seed 004 §8–10): assembles the deployment record from whatever the other
//! commands left in the state dir, writes the rollback instructions (and, when the deployment did
//! not succeed, the failure report), uploads them and the other commands' logs as workflow
//! artifacts, and optionally mirrors the deployment as a GitHub Deployment with statuses.

use crate::record::assemble::{Options, StateFiles, Target, artifact_list, assemble};
use crate::record::deployment::{create_deployment, finish_deployment};
use crate::record::render::{report_publication, summary, write_texts};
use std::time::Instant;

use serde_json::json;

use super::{Outcome, set_outputs};
use crate::actions::{self};
use crate::artifacts;
use crate::error::{Error, Result};
use crate::settings::{self, Settings};
use crate::state::record::{DeploymentSummary, RecordFile};
use crate::state::{Header, StateDir};

// What other commands use of the record, from where it lives.
use crate::inputs::check_http_url;
use crate::record::assemble::normalize_status;
use crate::record::model::record_file;
use crate::text::split_list;

/// The seed's rollback window.
const DEFAULT_WINDOW_MINUTES: u64 = 60;
/// The longest rollback window: a week. A rollback restores the previous version (and maybe a
/// backup) as the deployment left them; after a week of other changes that is a new deployment.
const MAX_WINDOW_MINUTES: u64 = 7 * 24 * 60;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Leave the deployment lease held instead of releasing it, for a caller that releases it
    /// later (`pipeline` does, after a rollback that follows the record) (input `keep-lease`)
    #[arg(long)]
    pub(crate) keep_lease: bool,
    /// How the deployment ended: `success`, `failure`, `cancelled` or `rolled_back` (input
    /// `status`; e.g. `${{ needs.smoke.result }}`) [default: derived from the state files]
    #[arg(long, value_name = "STATUS")]
    pub(crate) status: Option<String>,
    /// The stage that failed, when the workflow knows better than the state files (input
    /// `failed-stage`), e.g. `build-and-push`
    #[arg(long, value_name = "STAGE")]
    pub(crate) failed_stage: Option<String>,
    /// Services deployed, comma-separated (input `services`, one per line or comma-separated)
    #[arg(long, value_name = "LIST")]
    pub(crate) services: Option<String>,
    /// Who triggered the deployment (input `triggered-by`) [default: GITHUB_TRIGGERING_ACTOR,
    /// then GITHUB_ACTOR]
    #[arg(long, value_name = "LOGIN")]
    pub(crate) triggered_by: Option<String>,
    /// Release version, when `validate` did not run (input `version`)
    #[arg(long = "version", value_name = "VERSION")]
    pub(crate) version: Option<String>,
    /// Minutes after completion during which `shipgate rollback` runs without `--force` (input
    /// `rollback-window-minutes`, env ROLLBACK_WINDOW_MINUTES; at most 10080, a week)
    /// [default: 60]
    #[arg(long, value_name = "MINUTES")]
    pub(crate) rollback_window_minutes: Option<u64>,
    /// Artifact retention in days (1 to 400), capped by the repository's setting; default: the
    /// repository's setting (input `retention-days`)
    /// [default: 365]
    #[arg(long, value_name = "DAYS")]
    pub(crate) retention_days: Option<u32>,
    /// Fail (exit 3) when an artifact cannot be uploaded, instead of warning (input
    /// `artifacts-required`)
    #[arg(long)]
    pub(crate) artifacts_required: bool,
    /// Create a GitHub Deployment for the commit with statuses (input `github-deployment`)
    #[arg(long)]
    pub(crate) github_deployment: bool,
    /// URL of the deployed environment, for the GitHub deployment and messages (input
    /// `environment-url`)
    #[arg(long, value_name = "URL")]
    pub(crate) environment_url: Option<String>,
    /// Commit-status contexts GitHub must see green before it creates the deployment: `gate`
    /// (the gate's required list), `none`, or a comma-separated list (input `required-contexts`)
    /// [default: gate]
    #[arg(long, value_name = "LIST")]
    pub(crate) required_contexts: Option<String>,
    /// Who to call, printed in the rollback instructions (input `on-call`)
    #[arg(long, value_name = "TEXT")]
    pub(crate) on_call: Option<String>,
}

use crate::record::config::FileConfig;

/// The command's options from its flags, inputs and `record:` section.
fn resolve(args: &Args, settings: &Settings) -> Result<Options> {
    let default = FileConfig::default();
    let file = settings.file.record.as_ref().unwrap_or(&default);
    let status = settings.text("status", args.status.clone(), None);
    if let Some(status) = &status
        && normalize_status(status).is_none()
    {
        return Err(Error::usage(format!(
            "status {} is not one of `success`, `failure`, `cancelled`, `rolled_back`",
            actions::quote(status)
        )));
    }
    let failed_stage = settings.text("failed-stage", args.failed_stage.clone(), None);
    if let Some(stage) = &failed_stage {
        settings::check_name("failed stage", stage)?;
    }
    let services = match settings.text("services", args.services.clone(), None) {
        Some(list) => split_list(&list),
        None => file.services.clone().unwrap_or_default(),
    };
    for service in &services {
        settings::check_name("service", service)?;
    }
    let triggered_by = settings
        .text("triggered-by", args.triggered_by.clone(), None)
        .unwrap_or_else(settings::actor);
    let window_minutes = match settings.value(
        "rollback-window-minutes",
        args.rollback_window_minutes,
        file.rollback_window_minutes,
    )? {
        Some(minutes) => minutes,
        None => match settings::env("ROLLBACK_WINDOW_MINUTES") {
            Some(raw) => raw.parse().map_err(|_| {
                Error::usage(format!(
                    "ROLLBACK_WINDOW_MINUTES is `{}`, not a whole number of minutes",
                    actions::one_line(&raw)
                ))
            })?,
            None => DEFAULT_WINDOW_MINUTES,
        },
    };
    if window_minutes > MAX_WINDOW_MINUTES {
        return Err(Error::usage(format!(
            "the rollback window `{window_minutes}` (minutes; `rollback-window-minutes` or ROLLBACK_WINDOW_MINUTES) is longer than the maximum `{MAX_WINDOW_MINUTES}` (7 days); use at most {MAX_WINDOW_MINUTES}, and an emergency redeploy after that"
        )));
    }
    let retention_days = settings
        .value("retention-days", args.retention_days, file.retention_days)?
        .map(|days| artifacts::check_retention(u64::from(days)))
        .transpose()?;
    let environment_url = settings.text(
        "environment-url",
        args.environment_url.clone(),
        file.environment_url.as_ref(),
    );
    if let Some(url) = &environment_url {
        check_http_url("environment-url", url)?;
    }
    Ok(Options {
        status,
        failed_stage,
        services,
        triggered_by: actions::one_line(&triggered_by),
        version: settings.text("version", args.version.clone(), None),
        window_minutes,
        retention_days,
        artifacts_required: settings.switch(
            "artifacts-required",
            args.artifacts_required,
            file.artifacts_required,
            false,
        )?,
        github_deployment: settings.switch(
            "github-deployment",
            args.github_deployment,
            file.github_deployment,
            false,
        )?,
        environment_url,
        required_contexts: settings
            .text(
                "required-contexts",
                args.required_contexts.clone(),
                file.required_contexts.as_ref(),
            )
            .unwrap_or_else(|| "gate".to_string()),
        on_call: settings
            .text("on-call", args.on_call.clone(), file.on_call.as_ref())
            .map(|text| actions::one_line(&text)),
    })
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let started = Instant::now();
    let options = resolve(args, settings)?;
    // A failure record may be of a run that died before any state was written (the failure
    // handler of a run whose `validate` failed); any other record needs the deployment's state,
    // so a mistyped id is refused instead of recorded.
    let failure_given = options
        .status
        .as_deref()
        .and_then(normalize_status)
        .is_some_and(|s| s != "success");
    let state = if failure_given {
        StateDir::open(settings)?
    } else {
        StateDir::existing(settings)?
    };
    let id = state.id().to_string();
    // The end of the pipeline: the environment is free for the next deployment.
    if !settings.switch("keep-lease", args.keep_lease, None, false)? {
        super::lease::release_in(settings, &state).await;
    }
    let files = StateFiles::read(&state);
    let mut warnings = files.warnings.clone();
    for warning in &warnings {
        actions::annotate(actions::Level::Warning, Some("shipgate record"), warning);
    }

    let target = Target {
        environment: &settings.environment,
        repository: settings.repository.as_deref(),
    };
    let mut record = assemble(&id, &target, &options, &files);
    tracing::info!(
        "deployment `{id}` of {} to `{}`: {}{}",
        actions::quote(&record.version),
        record.environment,
        record.status,
        if record.not_run.is_empty() {
            String::new()
        } else {
            format!(" (did not run: {})", record.not_run.join(", "))
        }
    );

    // The GitHub deployment first, so the record carries its id (rollback marks it).
    let mut github_error = None;
    let mut github_summary = None;
    let github = if options.github_deployment {
        match settings.github("a GitHub deployment (`github-deployment: true`)") {
            Ok(github) => Some(github),
            Err(e) => {
                github_error = Some(e);
                None
            }
        }
    } else {
        None
    };
    if let Some(github) = &github {
        let _group = actions::group("GitHub deployment");
        match create_deployment(github, &record, &options, &files).await {
            Ok(created) => {
                github_summary = Some(DeploymentSummary {
                    id: created.id,
                    created: true,
                    state: None,
                });
                record.github_deployment = Some(created);
            }
            Err(e) => github_error = Some(e),
        }
    }

    let record_path = state.write_json(&record_file(&id), &record)?;
    let (instructions_path, failure_path) =
        write_texts(&state, &record, options.on_call.as_deref())?;

    let list = artifact_list(
        &state,
        &files,
        &record_path,
        &instructions_path,
        failure_path.as_deref(),
    );
    let publication = {
        let _group = actions::group("Artifacts");
        artifacts::publish(&state.path("artifacts"), &list, options.retention_days).await
    };
    report_publication(&publication, options.artifacts_required, &mut warnings);

    // The final GitHub status, once the audit trail is safe.
    if let (Some(github), Some(deployment)) = (&github, &record.github_deployment) {
        match finish_deployment(
            github,
            deployment.id,
            &record,
            options.environment_url.as_deref(),
        )
        .await
        {
            Err(e) => github_error = Some(e),
            Ok(state_name) => {
                if let Some(summary) = github_summary.as_mut() {
                    summary.state = Some(state_name.to_string());
                }
            }
        }
    }

    let result = RecordFile {
        header: Header {
            duration_ms: Some(started.elapsed().as_millis() as u64),
            ..Header::now::<RecordFile>("pass")
        },
        deployment_id: id.clone(),
        status: record.status.clone(),
        record: record_path.display().to_string(),
        rollback_instructions: instructions_path.display().to_string(),
        failure_report: failure_path.as_ref().map(|p| p.display().to_string()),
        rollback_deadline: record.rollback_deadline.clone(),
        not_run: record.not_run.clone(),
        artifacts: publication.clone(),
        github_deployment: github_summary.clone(),
        warnings: warnings.clone(),
    };
    let upload_failed = options.artifacts_required && !publication.failures().is_empty();
    let failed = upload_failed || github_error.is_some();
    let mut result = result;
    if failed {
        result.header.result = "fail".to_string();
    }
    state.save(&result)?;
    let uploaded: Vec<&str> = publication
        .artifacts
        .iter()
        .filter(|a| matches!(a.state.as_str(), "uploaded" | "exists"))
        .map(|a| a.name.as_str())
        .collect();
    set_outputs(&[
        ("result", result.header.result.clone()),
        ("status", record.status.clone()),
        ("record-path", record_path.display().to_string()),
        ("rollback-deadline", record.rollback_deadline.clone()),
        ("artifacts", uploaded.join(",")),
        ("artifacts-dir", publication.dir.clone()),
        (
            "github-deployment-id",
            record
                .github_deployment
                .as_ref()
                .map(|d| d.id.to_string())
                .unwrap_or_default(),
        ),
        (
            "failed-stage",
            record
                .failure
                .as_ref()
                .map(|f| f.stage.clone())
                .unwrap_or_default(),
        ),
    ])?;
    actions::append_summary(&summary(&record, &publication))?;

    if let Some(error) = github_error {
        return Err(error.context(format!(
            "the record of `{id}` is written (`{}`) but the GitHub deployment could not be recorded",
            record_path.display()
        )));
    }
    if upload_failed {
        let names: Vec<String> = publication
            .failures()
            .iter()
            .map(|a| format!("`{}`", a.name))
            .collect();
        return Err(Error::dependency(format!(
            "{} could not be uploaded and `artifacts-required` is set; the files are in `{}`",
            names.join(", "),
            publication.dir
        )));
    }
    let json = serde_json::to_value(&result).unwrap_or_else(|_| json!({}));
    Ok(Outcome::success(json))
}

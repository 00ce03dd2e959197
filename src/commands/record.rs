//! `shipgate record` (seed 004 §8–10): assembles the deployment record from whatever the other
//! commands left in the state dir, writes the rollback instructions (and, when the deployment did
//! not succeed, the failure report), uploads them and the other commands' logs as workflow
//! artifacts, and optionally mirrors the deployment as a GitHub Deployment with statuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Outcome, set_outputs};
use crate::actions::{self, Table};
use crate::artifacts::{self, Artifact, Publication};
use crate::error::{Error, Result};
use crate::github::{GitHub, GitHubError};
use crate::settings::{self, Settings};
use crate::state::backup::{BackupFile, BackupOutcome};
use crate::state::gate::{GateFile, RequiredSet};
use crate::state::migrate::MigrateFile;
use crate::state::record::{DeploymentSummary, RecordFile};
use crate::state::rollback::{Health as RollbackHealth, Step as RollbackStep};
use crate::state::rollout::{
    RollbackRecord, RolloutFile, StageRecord as RolloutStageRecord, StageStatus,
};
use crate::state::smoke::{SmokeFile, Status as SmokeStatus};
use crate::state::validate::ValidateFile;
use crate::state::{Header, StateDir, StateFile};

/// The record's own schema version (`schema/deployment-record.schema.json`).
pub(crate) const SCHEMA_VERSION: u32 = 1;
/// The pipeline stages, in order, and the state file each leaves.
pub(crate) const STAGES: [&str; 6] = ["validate", "gate", "backup", "migrate", "rollout", "smoke"];
/// The seed's rollback window.
const DEFAULT_WINDOW_MINUTES: u64 = 60;
/// The longest rollback window: a week. A rollback restores the previous version (and maybe a
/// backup) as the deployment left them; after a week of other changes that is a new deployment.
const MAX_WINDOW_MINUTES: u64 = 7 * 24 * 60;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
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
    /// Artifact retention in days, capped by the repository's setting (input `retention-days`)
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

pub(crate) use crate::record::config::FileConfig;

/// `database_backup`: seed fields plus what makes the backup checkable.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Backup {
    pub(crate) backup_id: String,
    pub(crate) location: String,
    pub(crate) timestamp: String,
    #[serde(default)]
    pub(crate) sha256: Option<String>,
    #[serde(default)]
    pub(crate) size: Option<u64>,
    #[serde(default)]
    pub(crate) verified: Option<bool>,
    #[serde(default)]
    pub(crate) format: Option<String>,
    #[serde(default)]
    pub(crate) compression: Option<String>,
    #[serde(default)]
    pub(crate) sidecar_location: Option<String>,
}

impl Backup {
    /// The record's view of the backup `backup.json` says was taken (none for a failed run).
    pub(crate) fn of(file: &BackupFile) -> Option<Backup> {
        let taken = file.taken()?;
        Some(Backup {
            backup_id: taken.backup_id.clone(),
            location: crate::secret::redact_url(&taken.location),
            timestamp: file.header.timestamp.clone(),
            sha256: Some(taken.sha256.clone()),
            size: Some(taken.size),
            verified: Some(taken.verified),
            format: Some(taken.format.name().to_string()),
            compression: Some(taken.compression.clone()),
            sidecar_location: Some(crate::secret::redact_url(&taken.sidecar_location)),
        })
    }
}

/// One entry of `rollout_stages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RolloutStage {
    stage: String,
    traffic_percentage: f64,
    duration_minutes: f64,
    /// `healthy`, `unhealthy` or `not_run`.
    status: String,
    #[serde(default)]
    planned_duration_minutes: Option<f64>,
    #[serde(default)]
    samples: Option<u64>,
    #[serde(default)]
    success_rate: Option<f64>,
    #[serde(default)]
    p95_ms: Option<f64>,
}

/// One row of `pipeline`: what each stage did, or that it did not run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StageResult {
    pub(crate) stage: String,
    /// `pass`, `fail`, `rolled_back`, `rollback_failed` or `not_run`.
    pub(crate) result: String,
    #[serde(default)]
    pub(crate) timestamp: Option<String>,
    #[serde(default)]
    pub(crate) duration_ms: Option<u64>,
}

/// `failure`: seed 004 §10.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Failure {
    pub(crate) stage: String,
    pub(crate) error: String,
    pub(crate) backup_available: bool,
    pub(crate) action_required: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunInfo {
    pub(crate) id: String,
    pub(crate) attempt: Option<String>,
    pub(crate) url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GitHubDeployment {
    pub(crate) id: u64,
    pub(crate) environment: String,
    pub(crate) required_contexts: Vec<String>,
    pub(crate) required_contexts_reason: String,
}

/// The deployment record: seed 004 §8 field for field, then richer sections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) schema_version: u32,
    pub(crate) timestamp: String,
    pub(crate) deployment_id: String,
    pub(crate) version: String,
    pub(crate) environment: String,
    /// `success`, `failure` or `rolled_back`.
    pub(crate) status: String,
    pub(crate) git_sha: Option<String>,
    pub(crate) git_ref: Option<String>,
    pub(crate) triggered_by: String,
    pub(crate) services_deployed: Vec<String>,
    pub(crate) database_backup: Option<Backup>,
    pub(crate) migrations_applied: Option<u64>,
    pub(crate) rollout_stages: Vec<RolloutStage>,
    pub(crate) health_checks: BTreeMap<String, String>,
    pub(crate) rollback_available: bool,
    pub(crate) rollback_window_minutes: u64,
    pub(crate) rollback_deadline: String,

    pub(crate) repository: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) previous_version: Option<String>,
    pub(crate) environment_url: Option<String>,
    pub(crate) run: Option<RunInfo>,
    /// When the deployment completed (smoke, else rollout, else this record): the window's start.
    pub(crate) completed_at: String,
    pub(crate) pipeline: Vec<StageResult>,
    /// Stages with no state file: they did not run (or ran elsewhere without sharing state).
    pub(crate) not_run: Vec<String>,
    pub(crate) failure: Option<Failure>,
    pub(crate) gate: Option<GateSection>,
    pub(crate) migrations: Option<MigrationsSection>,
    pub(crate) rollout: Option<RolloutSection>,
    pub(crate) smoke: Option<SmokeSection>,
    pub(crate) timings: Timings,
    pub(crate) github_deployment: Option<GitHubDeployment>,
    /// Set by `shipgate rollback`.
    #[serde(default)]
    pub(crate) rollback: Option<RecordRollback>,
    pub(crate) generator: String,
}

/// `gate`: what `gate.json` said.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GateSection {
    pub(crate) result: String,
    pub(crate) required: RequiredSet,
    pub(crate) failed: Vec<String>,
    pub(crate) pending: Vec<String>,
    pub(crate) missing: Vec<String>,
}

/// `migrations`: what `migrate.json` said.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MigrationsSection {
    pub(crate) result: String,
    pub(crate) tool: Option<String>,
    pub(crate) applied_count: Option<u64>,
    pub(crate) applied: Vec<String>,
    pub(crate) lock_wait_ms: u64,
    pub(crate) exit_code: Option<i32>,
}

/// `rollout`: what `rollout.json` said.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RolloutSection {
    pub(crate) result: String,
    pub(crate) version: String,
    pub(crate) previous_version: Option<String>,
    pub(crate) failed_stage: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) rollback: RollbackRecord,
}

/// `smoke`: what `smoke.json` said.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SmokeSection {
    pub(crate) result: String,
    pub(crate) total: usize,
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    pub(crate) tests: Vec<SmokeTestSection>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SmokeTestSection {
    pub(crate) name: String,
    pub(crate) status: SmokeStatus,
    pub(crate) duration_ms: u64,
    pub(crate) time_to_ready_ms: Option<u64>,
}

/// `rollback`: who rolled the deployment back, when, why and how it went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RecordRollback {
    pub(crate) timestamp: String,
    pub(crate) by: String,
    pub(crate) reason: String,
    pub(crate) forced: bool,
    #[serde(default)]
    pub(crate) steps: Vec<RollbackStep>,
    #[serde(default)]
    pub(crate) database_restored: Option<bool>,
    #[serde(default)]
    pub(crate) health: Vec<RollbackHealth>,
    #[serde(default)]
    pub(crate) run_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Timings {
    /// Sum of the stages' own durations.
    pub(crate) total_ms: u64,
    /// `duration_ms` of each stage that ran.
    pub(crate) stages: BTreeMap<String, u64>,
}

/// The record file of deployment `id`.
pub(crate) fn record_file(id: &str) -> String {
    format!("deployment-record-{id}.json")
}

pub(crate) fn instructions_file(id: &str) -> String {
    format!("rollback-instructions-{id}.md")
}

pub(crate) fn failure_file(id: &str) -> String {
    format!("deployment-failure-report-{id}.md")
}

/// Resolved options.
struct Options {
    status: Option<String>,
    failed_stage: Option<String>,
    services: Vec<String>,
    triggered_by: String,
    version: Option<String>,
    window_minutes: u64,
    retention_days: u32,
    artifacts_required: bool,
    github_deployment: bool,
    environment_url: Option<String>,
    required_contexts: String,
    on_call: Option<String>,
}

impl Options {
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
            .or_else(|| settings::env("GITHUB_TRIGGERING_ACTOR"))
            .or_else(|| settings::env("GITHUB_ACTOR"))
            .or_else(|| settings::env("USER"))
            .unwrap_or_else(|| "unknown".to_string());
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
            .unwrap_or(artifacts::DEFAULT_RETENTION_DAYS);
        if retention_days == 0 {
            return Err(Error::usage(
                "`retention-days` is 0; use 1 or more days (the repository setting caps it)",
            ));
        }
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
}

pub(crate) fn check_http_url(input: &str, raw: &str) -> Result<()> {
    match url::Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(Error::usage(format!(
            "`{input}` is {}, not an http(s) URL",
            actions::quote(&crate::secret::redact_url(raw))
        ))),
    }
}

/// Items of a comma- or newline-separated list, trimmed, empties dropped.
pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `success`/`failure`/`rolled_back` from what a workflow passes (`cancelled` is a failure).
pub(crate) fn normalize_status(status: &str) -> Option<&'static str> {
    match status.trim().to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "pass" => Some("success"),
        "failure" | "failed" | "fail" | "cancelled" | "canceled" => Some("failure"),
        "rolled_back" | "rolled-back" => Some("rolled_back"),
        _ => None,
    }
}

/// What the state dir holds: each stage's file, read through its type (the state contract);
/// a file that does not read is a warning and its stage counts as not run.
pub(crate) struct StateFiles {
    /// `backup.json`, not yet typed, read as JSON.
    backup: Option<BackupFile>,
    validate: Option<ValidateFile>,
    gate: Option<GateFile>,
    migrate: Option<MigrateFile>,
    rollout: Option<RolloutFile>,
    smoke: Option<SmokeFile>,
    pub(crate) warnings: Vec<String>,
}

/// The header fields of a stage's file.
struct Ran {
    result: Option<String>,
    timestamp: Option<String>,
    duration_ms: Option<u64>,
}

impl Ran {
    fn of(header: &Header) -> Ran {
        let text = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        Ran {
            result: text(&header.result),
            timestamp: text(&header.timestamp),
            duration_ms: header.duration_ms,
        }
    }
}

impl StateFiles {
    pub(crate) fn read(state: &StateDir) -> StateFiles {
        let mut warnings = Vec::new();
        fn typed<T: StateFile>(state: &StateDir, warnings: &mut Vec<String>) -> Option<T> {
            state.load::<T>().unwrap_or_else(|e| {
                warnings.push(format!("{e}; treating `{}` as not run", T::COMMAND));
                None
            })
        }
        let validate = typed::<ValidateFile>(state, &mut warnings);
        let backup = typed::<BackupFile>(state, &mut warnings);
        let gate = typed::<GateFile>(state, &mut warnings);
        let migrate = typed::<MigrateFile>(state, &mut warnings);
        let rollout = typed::<RolloutFile>(state, &mut warnings);
        let smoke = typed::<SmokeFile>(state, &mut warnings);
        StateFiles {
            backup,
            validate,
            gate,
            migrate,
            rollout,
            smoke,
            warnings,
        }
    }

    /// Whether `stage` left a file.
    fn has(&self, stage: &str) -> bool {
        match stage {
            "validate" => self.validate.is_some(),
            "gate" => self.gate.is_some(),
            "backup" => self.backup.is_some(),
            "migrate" => self.migrate.is_some(),
            "rollout" => self.rollout.is_some(),
            "smoke" => self.smoke.is_some(),
            _ => false,
        }
    }

    /// The header of `stage`'s file, if it ran.
    fn ran(&self, stage: &str) -> Option<Ran> {
        match stage {
            "validate" => self.validate.as_ref().map(|f| Ran::of(&f.header)),
            "gate" => self.gate.as_ref().map(|f| Ran::of(&f.header)),
            "migrate" => self.migrate.as_ref().map(|f| Ran::of(&f.header)),
            "rollout" => self.rollout.as_ref().map(|f| Ran::of(&f.header)),
            "smoke" => self.smoke.as_ref().map(|f| Ran::of(&f.header)),
            "backup" => self.backup.as_ref().map(|f| Ran::of(&f.header)),
            _ => None,
        }
    }

    fn result(&self, stage: &str) -> Option<String> {
        self.ran(stage)?.result
    }

    /// The log file `stage`'s file names.
    fn log_file(&self, stage: &str) -> Option<String> {
        let log = match stage {
            "migrate" => self.migrate.as_ref().map(|m| m.log_file.clone()),
            "rollout" => self.rollout.as_ref().map(|r| r.log_file.clone()),
            "smoke" => self.smoke.as_ref().map(|s| s.log_file.clone()),
            "backup" => self.backup.as_ref().map(|b| b.log_file.clone()),
            _ => None,
        };
        log.filter(|l| !l.is_empty())
    }

    /// What `stage`'s file says went wrong, in its own words.
    fn error(&self, stage: &str) -> Option<String> {
        match stage {
            "gate" => self.gate.as_ref().map(|g| g.reason.clone()),
            "migrate" => self.migrate.as_ref().and_then(|m| m.error.clone()),
            "rollout" => self.rollout.as_ref().and_then(|r| r.reason.clone()),
            "backup" => match &self.backup.as_ref()?.outcome {
                BackupOutcome::Failed(failed) => Some(failed.reason.clone()),
                BackupOutcome::Taken(_) => None,
            },
            _ => None,
        }
    }
}

fn failed(result: &str) -> bool {
    matches!(
        result,
        "fail" | "failed" | "rolled_back" | "rollback_failed"
    ) || interrupted(result)
}

/// A rollout that never wrote its end: it was killed (a cancelled workflow's SIGKILL,
/// `kill -9`, a crash) while shifting traffic or rolling back. Always a failure.
fn interrupted(result: &str) -> bool {
    matches!(result, "in_progress" | "rolling_back")
}

/// Why an interrupted rollout failed, from what its `rollout.json` last said.
fn interrupted_reason(rollout: &RolloutFile) -> String {
    let result = rollout.header.result.as_str();
    let stage = rollout.current_stage.as_deref().map(actions::one_line);
    let at = match (&stage, rollout.current_weight) {
        (Some(stage), Some(weight)) => format!("at stage `{stage}` ({weight}% of traffic)"),
        (Some(stage), None) => format!("at stage `{stage}`"),
        _ => "before its first stage".to_string(),
    };
    let what = if result == "rolling_back" {
        "while rolling back; the rollback was not seen to finish"
    } else {
        "and did not roll back"
    };
    let why = rollout
        .reason
        .as_deref()
        .map(|r| format!(" (it was rolling back because: {})", actions::one_line(r)))
        .unwrap_or_default();
    format!(
        "the rollout was interrupted {at} {what}: `rollout.json` still says `{result}` (shipgate was killed or crashed before it finished){why}"
    )
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let started = Instant::now();
    let options = Options::resolve(args, settings)?;
    let state = StateDir::open(settings)?;
    let id = state.id().to_string();
    let files = StateFiles::read(&state);
    let mut warnings = files.warnings.clone();
    for warning in &warnings {
        actions::annotate(actions::Level::Warning, Some("shipgate record"), warning);
    }

    let mut record = assemble(&id, settings, &options, &files);
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
        match github_client(settings) {
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
    let instructions_path = state.path(&instructions_file(&id));
    crate::util::write_atomic(
        &instructions_path,
        crate::secret::redact(&rollback_instructions(&record, options.on_call.as_deref()))
            .as_bytes(),
    )
    .map_err(|e| {
        Error::usage(format!(
            "cannot write `{}`: {e}",
            instructions_path.display()
        ))
    })?;
    let failure_path = match &record.failure {
        Some(_) => {
            let path = state.path(&failure_file(&id));
            crate::util::write_atomic(
                &path,
                crate::secret::redact(&failure_report(&record)).as_bytes(),
            )
            .map_err(|e| Error::usage(format!("cannot write `{}`: {e}", path.display())))?;
            Some(path)
        }
        None => None,
    };

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
        let state_name = if record.status == "success" {
            "success"
        } else {
            "failure"
        };
        let description = match &record.failure {
            Some(failure) => format!("{} failed at {}", record.version, failure.stage),
            None => format!(
                "{} deployed; rollback window until {}",
                record.version, record.rollback_deadline
            ),
        };
        if let Err(e) = post_status(
            github,
            deployment.id,
            state_name,
            &description,
            options.environment_url.as_deref(),
        )
        .await
        {
            github_error = Some(e);
        } else if let Some(summary) = github_summary.as_mut() {
            summary.state = Some(state_name.to_string());
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

fn report_publication(publication: &Publication, required: bool, warnings: &mut Vec<String>) {
    if !publication.service {
        let message = format!(
            "the Actions artifact service is not available here (no ACTIONS_RESULTS_URL / ACTIONS_RUNTIME_TOKEN: a local run, GHES, or a `run:` step); the artifacts are in `{}`, one directory per artifact: upload each with `actions/upload-artifact` (`path: {}/<name>/`)",
            publication.dir, publication.dir
        );
        actions::annotate(actions::Level::Notice, Some("shipgate record"), &message);
        warnings.push(message);
        return;
    }
    for failure in publication.failures() {
        let message = format!(
            "artifact `{}` was not uploaded: {}; its files are in `{}` for `actions/upload-artifact`",
            failure.name,
            failure.error.as_deref().unwrap_or("unknown error"),
            failure.dir
        );
        let level = if required {
            actions::Level::Error
        } else {
            actions::Level::Warning
        };
        actions::annotate(level, Some("shipgate record"), &message);
        warnings.push(message);
    }
}

/// Builds the record from the state files and the options.
fn assemble(id: &str, settings: &Settings, options: &Options, files: &StateFiles) -> Record {
    let now = crate::util::now_rfc3339();
    let validated = files.validate.as_ref();
    let tag = validated.map(|v| v.tag.clone()).filter(|t| !t.is_empty());
    let version = options
        .version
        .clone()
        .or_else(|| tag.clone())
        .or_else(|| validated.map(|v| v.version.clone()))
        .or_else(|| {
            files
                .rollout
                .as_ref()
                .map(|r| r.version.clone())
                .filter(|v| !v.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let git_sha = validated
        .map(|v| v.sha.clone())
        .or_else(|| settings::env("GITHUB_SHA"));
    let git_ref =
        settings::env("GITHUB_REF").or_else(|| tag.as_ref().map(|t| format!("refs/tags/{t}")));
    let environment = settings.environment.clone();
    if let Some(validated) = validated.map(|v| &v.environment)
        && *validated != environment
    {
        actions::annotate(
            actions::Level::Warning,
            Some("shipgate record"),
            &format!(
                "`validate` ran for environment `{}` but this step records `{environment}`; pass the same `environment` input to every step",
                actions::one_line(validated)
            ),
        );
    }

    let pipeline: Vec<StageResult> = STAGES
        .iter()
        .map(|stage| StageResult {
            stage: stage.to_string(),
            // An interrupted rollout failed (`failure.error` says where it stopped).
            result: files
                .result(stage)
                .map(|r| if interrupted(&r) { "fail".into() } else { r })
                .unwrap_or_else(|| {
                    if files.has(stage) {
                        "unknown".into()
                    } else {
                        "not_run".into()
                    }
                }),
            timestamp: files.ran(stage).and_then(|r| r.timestamp),
            duration_ms: files.ran(stage).and_then(|r| r.duration_ms),
        })
        .collect();
    let not_run: Vec<String> = pipeline
        .iter()
        .filter(|s| s.result == "not_run")
        .map(|s| s.stage.clone())
        .collect();

    let derived = if files.result("rollout").as_deref() == Some("rolled_back") {
        "rolled_back"
    } else if pipeline.iter().any(|s| failed(&s.result)) {
        "failure"
    } else {
        "success"
    };
    let status = options
        .status
        .as_deref()
        .and_then(normalize_status)
        .unwrap_or(derived)
        .to_string();

    let database_backup = files.backup.as_ref().and_then(Backup::of);

    let rollout_stages = files
        .rollout
        .as_ref()
        .map(|r| r.stages.iter().map(rollout_stage).collect())
        .unwrap_or_default();

    let mut health_checks = BTreeMap::new();
    match &files.smoke {
        Some(smoke) => {
            for test in &smoke.tests {
                let status = match test.status {
                    SmokeStatus::Passed => "healthy",
                    SmokeStatus::Failed => "unhealthy",
                    SmokeStatus::Skipped => "skipped",
                };
                health_checks.insert(snake(&test.name), status.to_string());
            }
            let passed = files.result("smoke").as_deref() == Some("pass");
            health_checks.insert(
                "smoke_tests".into(),
                if passed { "passed" } else { "failed" }.into(),
            );
        }
        None => {
            health_checks.insert("smoke_tests".into(), "not_run".into());
        }
    }

    let completed_at = files
        .ran("smoke")
        .and_then(|r| r.timestamp)
        .or_else(|| files.ran("rollout").and_then(|r| r.timestamp))
        .filter(|t| t.parse::<jiff::Timestamp>().is_ok())
        .unwrap_or_else(|| now.clone());
    let rollback_deadline = completed_at
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| {
            t.checked_add(jiff::SignedDuration::from_mins(
                options.window_minutes as i64,
            ))
            .ok()
        })
        .map(|t| t.to_string())
        .unwrap_or_else(|| now.clone());

    let failure = (status != "success").then(|| {
        failure_info(
            &pipeline,
            files,
            options.failed_stage.as_deref(),
            database_backup.as_ref(),
        )
    });

    let mut stages = BTreeMap::new();
    for stage in &pipeline {
        if let Some(ms) = stage.duration_ms {
            stages.insert(stage.stage.clone(), ms);
        }
    }
    let timings = Timings {
        total_ms: stages.values().sum(),
        stages,
    };
    let run = settings::env("GITHUB_RUN_ID").map(|run_id| RunInfo {
        url: log_url(),
        attempt: settings::env("GITHUB_RUN_ATTEMPT"),
        id: run_id,
    });
    let previous_version = files
        .rollout
        .as_ref()
        .and_then(|r| r.previous_version.clone())
        .filter(|p| !p.is_empty())
        .or_else(|| {
            validated
                .and_then(|v| v.previous.as_ref())
                .map(|p| p.version.clone())
        });

    Record {
        schema_version: SCHEMA_VERSION,
        timestamp: now,
        deployment_id: id.to_string(),
        version,
        environment,
        rollback_available: status != "rolled_back",
        status,
        git_sha,
        git_ref,
        triggered_by: options.triggered_by.clone(),
        services_deployed: options.services.clone(),
        database_backup,
        migrations_applied: files.migrate.as_ref().and_then(|m| m.applied_count),
        rollout_stages,
        health_checks,
        rollback_window_minutes: options.window_minutes,
        rollback_deadline,
        repository: settings.repository.clone(),
        tag,
        previous_version,
        environment_url: options.environment_url.clone(),
        run,
        completed_at,
        pipeline,
        not_run,
        failure,
        gate: files.gate.as_ref().map(|g| GateSection {
            result: g.header.result.clone(),
            required: g.required.clone(),
            failed: g.failed.clone(),
            pending: g.pending.clone(),
            missing: g.missing.clone(),
        }),
        migrations: files.migrate.as_ref().map(|m| MigrationsSection {
            result: m.header.result.clone(),
            tool: m.tool.clone(),
            applied_count: m.applied_count,
            applied: m.applied.clone(),
            lock_wait_ms: m.lock_wait_ms,
            exit_code: m.exit_code,
        }),
        rollout: files.rollout.as_ref().map(|r| RolloutSection {
            result: r.header.result.clone(),
            version: r.version.clone(),
            previous_version: r.previous_version.clone(),
            failed_stage: r.failed_stage.clone(),
            reason: r.reason.clone(),
            rollback: r.rollback.clone(),
        }),
        smoke: files.smoke.as_ref().map(|s| SmokeSection {
            result: s.header.result.clone(),
            total: s.total,
            passed: s.passed,
            failed: s.failed,
            tests: s
                .tests
                .iter()
                .map(|t| SmokeTestSection {
                    name: t.name.clone(),
                    status: t.status,
                    duration_ms: t.duration_ms,
                    time_to_ready_ms: t.time_to_ready_ms,
                })
                .collect(),
        }),
        timings,
        github_deployment: None,
        rollback: None,
        generator: concat!("shipgate ", env!("CARGO_PKG_VERSION")).to_string(),
    }
}

fn rollout_stage(stage: &RolloutStageRecord) -> RolloutStage {
    let minutes = |ms: u64| (ms as f64 / 600.0).round() / 100.0;
    let status = match stage.status {
        StageStatus::Passed => "healthy",
        StageStatus::Failed => "unhealthy",
        StageStatus::NotRun => "not_run",
        // The rollout was killed during this stage.
        StageStatus::Running => "interrupted",
    };
    RolloutStage {
        stage: actions::one_line(&stage.name),
        traffic_percentage: f64::from(stage.weight),
        duration_minutes: minutes(stage.elapsed_ms),
        status: status.to_string(),
        planned_duration_minutes: Some(minutes(stage.planned_duration_ms)),
        samples: Some(stage.samples),
        success_rate: stage.success_rate,
        p95_ms: stage.p95_ms,
    }
}

/// `API Gateway` → `api_gateway`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_string();
    if out.is_empty() { "check".into() } else { out }
}

/// What failed, why, and what to do (seed 004 §10).
fn failure_info(
    pipeline: &[StageResult],
    files: &StateFiles,
    told: Option<&str>,
    backup: Option<&Backup>,
) -> Failure {
    let first_failed = pipeline.iter().find(|s| failed(&s.result));
    let stage = match (told, first_failed) {
        (Some(stage), _) => stage.to_string(),
        (None, Some(s)) => s.stage.clone(),
        (None, None) => {
            // Nothing recorded a failure: it happened where the state stops.
            let next = match pipeline.iter().rposition(|s| s.result != "not_run") {
                Some(last_ran) => last_ran + 1,
                None => 0,
            };
            match pipeline.get(next) {
                Some(next) => next.stage.clone(),
                None => "unknown".to_string(),
            }
        }
    };
    let rollout = files.result("rollout");
    let error = files
        .rollout
        .as_ref()
        .filter(|r| stage == "rollout" && r.interrupted())
        .map(interrupted_reason)
        .or_else(|| files.error(&stage))
        .or_else(|| match stage.as_str() {
            "gate" => files.gate.as_ref().map(|g| {
                format!(
                    "failed checks: [{}]; missing: [{}]; pending: [{}]",
                    g.failed.join(", "),
                    g.missing.join(", "),
                    g.pending.join(", ")
                )
            }),
            "smoke" => files.smoke.as_ref().map(|s| {
                let names: Vec<&str> = s
                    .tests
                    .iter()
                    .filter(|t| t.status == SmokeStatus::Failed)
                    .map(|t| t.name.as_str())
                    .collect();
                format!("failed smoke tests: {}", names.join(", "))
            }),
            "migrate" => files.migrate.as_ref().map(|m| {
                let code = m.exit_code.map_or_else(|| "null".to_string(), |c| c.to_string());
                format!("the migration command ended with exit code {code}")
            }),
            _ => None,
        })
        .map(|e| actions::one_line(&e))
        .unwrap_or_else(|| {
            if !files.has(&stage) {
                format!("`{stage}` left no state file: it failed before writing it, or did not run; see the workflow logs")
            } else {
                "no error message recorded; see the workflow logs".to_string()
            }
        });
    let backup_text = match backup {
        Some(b) => format!("the database backup `{}` is available", b.backup_id),
        None => "no database backup was recorded".to_string(),
    };
    let action_required = match (stage.as_str(), rollout.as_deref()) {
        (_, Some("rollback_failed")) => format!(
            "ACT NOW: the automatic rollback failed and production may be half rolled out; run the rollback procedure by hand ({backup_text})"
        ),
        ("rollout", Some("in_progress" | "rolling_back")) => format!(
            "ACT NOW: the rollout was interrupted and may have left traffic on the new version; check where traffic stands and run `shipgate rollback` (or the rollback hook by hand), then check health ({backup_text})"
        ),
        ("rollout", Some("rolled_back")) => format!(
            "The rollout was rolled back automatically; confirm production serves the previous version, then investigate `{stage}` before re-deploying ({backup_text})"
        ),
        ("validate" | "gate" | "backup", _) => {
            "Nothing was deployed and the database was not changed; fix the cause and re-run the workflow".to_string()
        }
        ("migrate", _) => format!(
            "Migrations may be partly applied: check the schema; if it is inconsistent, restore the database ({backup_text}) with `shipgate restore`"
        ),
        ("smoke", _) => format!(
            "The new version may be serving traffic: roll back with `shipgate rollback` within the window, or fix forward ({backup_text})"
        ),
        _ => format!("Manual investigation needed: check the workflow logs ({backup_text})"),
    };
    Failure {
        stage: actions::one_line(&stage),
        error,
        backup_available: backup.is_some(),
        action_required,
    }
}

/// The artifacts of this deployment, named as seed 004 lists them.
fn artifact_list(
    state: &StateDir,
    files: &StateFiles,
    record: &Path,
    instructions: &Path,
    failure: Option<&Path>,
) -> Vec<Artifact> {
    let id = state.id();
    let single = |name: String, path: &Path| Artifact {
        name,
        files: vec![(
            path.to_path_buf(),
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )],
    };
    let mut list = vec![
        single(format!("deployment-record-{id}"), record),
        single(format!("rollback-instructions-{id}"), instructions),
    ];
    if let Some(path) = failure {
        list.push(single(format!("deployment-failure-report-{id}"), path));
    }
    // Logs: `<stem>-<id>.log` beside the state files (the contract), else the `log_file` the
    // state file names; smoke also ships its JUnit report.
    for (stage, stem) in [
        ("backup", "backup-logs"),
        ("migrate", "migration-logs"),
        ("rollout", "rollout-logs"),
        ("smoke", "smoke-test-logs"),
        ("build", "build-logs"),
    ] {
        let mut paths: Vec<PathBuf> = Vec::new();
        let conventional = state.path(&format!("{stem}-{id}.log"));
        if conventional.is_file() {
            paths.push(conventional);
        } else if let Some(log) = files.log_file(stage) {
            let path = resolve(state, &log);
            if path.is_file() {
                paths.push(path);
            }
        }
        if stage == "smoke"
            && let Some(junit) = files
                .smoke
                .as_ref()
                .map(|s| s.junit.clone())
                .filter(|j| !j.is_empty())
        {
            let path = resolve(state, &junit);
            if path.is_file() && !paths.contains(&path) {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            continue;
        }
        let mut entries = Vec::new();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !entries.iter().any(|(_, n)| n == &name) {
                entries.push((path, name));
            }
        }
        list.push(Artifact {
            name: format!("{stem}-{id}"),
            files: entries,
        });
    }
    list
}

/// A path from a state file: absolute, relative to the working directory, or to the state dir.
fn resolve(state: &StateDir, raw: &str) -> PathBuf {
    let path = PathBuf::from(raw);
    if path.is_absolute() || path.exists() {
        path
    } else {
        state.path(raw)
    }
}

/// A GitHub client from the `github-token` input and the repository, or a usage error.
pub(crate) fn github_client(settings: &Settings) -> Result<GitHub> {
    let token = settings::secret("github-token", &["GITHUB_TOKEN", "GH_TOKEN"]).ok_or_else(|| {
        Error::usage(
            "a GitHub deployment needs a token: set the `github-token` input (default `${{ github.token }}`, with `deployments: write`) or GITHUB_TOKEN",
        )
    })?;
    let repo = settings.repository.clone().ok_or_else(|| {
        Error::usage("a GitHub deployment needs the repository: pass `--repository owner/name` or set GITHUB_REPOSITORY")
    })?;
    let api =
        settings::env("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".to_string());
    Ok(GitHub::new(&api, &token, &repo)?)
}

/// Pages of this commit's deployments to the environment searched for this run's (100 a page).
const MAX_EXISTING_DEPLOYMENT_PAGES: usize = 10;

/// Finds this deployment's GitHub deployment (a re-run must not create a second one), else
/// creates it for the exact commit, then marks it `in_progress`.
async fn create_deployment(
    github: &GitHub,
    record: &Record,
    options: &Options,
    files: &StateFiles,
) -> Result<GitHubDeployment> {
    let sha = record.git_sha.clone().ok_or_else(|| {
        Error::usage(
            "a GitHub deployment needs the exact commit: run `shipgate validate` first (it records the SHA) or set GITHUB_SHA",
        )
    })?;
    if sha.len() != 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::usage(format!(
            "`{}` is not a full commit SHA; GitHub deployments are created for exact commits, never branches",
            actions::one_line(&sha)
        )));
    }
    let (required, reason) = required_contexts(&options.required_contexts, files);
    let existing = crate::github::deployments::list(
        github,
        &record.environment,
        Some(&sha),
        100,
        MAX_EXISTING_DEPLOYMENT_PAGES,
    )
    .await
    .map_err(|e| Error::from(e).context("cannot list the commit's GitHub deployments"))?;
    let found = existing.iter().find(|d| {
        d.payload().get("deployment_id").and_then(Value::as_str)
            == Some(record.deployment_id.as_str())
    });
    let id = match found {
        Some(d) => {
            tracing::info!(
                "GitHub deployment {} already exists for `{}`: reusing it",
                d.id,
                record.deployment_id
            );
            d.id
        }
        None => {
            tracing::info!(
                "creating a GitHub deployment of {} to `{}` for commit {sha} (required contexts: {reason})",
                actions::quote(&record.version),
                record.environment
            );
            let body = json!({
                "ref": sha,
                "task": "deploy",
                "auto_merge": false,
                "required_contexts": required,
                "environment": record.environment,
                "production_environment": record.environment == "production",
                "transient_environment": false,
                "description": truncate(&format!("shipgate {} ({})", record.version, record.deployment_id), 140),
                "payload": payload(record),
            });
            let created: Value = match github.post(&github.repo_path("/deployments"), &body).await {
                Ok(created) => created,
                Err(GitHubError::Status {
                    status: 409,
                    message,
                    ..
                }) => {
                    return Err(Error::gate(format!(
                        "GitHub refused the deployment because required commit statuses are not green ({}): {message}; fix the checks, or set `required-contexts` (`none` to skip GitHub's check, the gate already ran)",
                        required.join(", ")
                    )));
                }
                Err(e) => {
                    return Err(Error::from(e).context("cannot create the GitHub deployment"));
                }
            };
            created.get("id").and_then(Value::as_u64).ok_or_else(|| {
                Error::dependency(format!(
                    "GitHub answered without creating a deployment ({}); shipgate deploys exact SHAs with `auto_merge: false`, so this is unexpected",
                    actions::one_line(created.get("message").and_then(Value::as_str).unwrap_or("no message"))
                ))
            })?
        }
    };
    post_status(
        github,
        id,
        "in_progress",
        &format!("recording deployment {}", record.deployment_id),
        options.environment_url.as_deref(),
    )
    .await?;
    Ok(GitHubDeployment {
        id,
        environment: record.environment.clone(),
        required_contexts: required,
        required_contexts_reason: reason,
    })
}

/// The deployment payload: a summary of the record (what `validate` reads back as `version`).
fn payload(record: &Record) -> Value {
    json!({
        "deployment_id": record.deployment_id,
        "version": record.version,
        "status": record.status,
        "rollback_deadline": record.rollback_deadline,
        "backup_id": record.database_backup.as_ref().map(|b| b.backup_id.clone()),
        "migrations_applied": record.migrations_applied,
        "services": record.services_deployed,
        "generator": record.generator,
    })
}

/// `required_contexts` from the policy: the gate's required commit-status contexts, none, or a
/// list; with the reason for the summary.
fn required_contexts(policy: &str, files: &StateFiles) -> (Vec<String>, String) {
    match policy.trim() {
        "none" => (
            Vec::new(),
            "none (`required-contexts: none`): GitHub does not re-check commit statuses".into(),
        ),
        "gate" => {
            let Some(gate) = &files.gate else {
                return (
                    Vec::new(),
                    "none: `gate` did not run, so there is no required list to hand GitHub".into(),
                );
            };
            // GitHub checks `required_contexts` against commit statuses only: hand it the
            // statuses the gate required and saw pass, never check runs.
            let statuses = gate.required_passed_statuses();
            let n = statuses.len();
            (
                statuses,
                format!(
                    "the gate's {n} required commit status(es) (check runs are not commit statuses)"
                ),
            )
        }
        list => {
            let items = split_list(list);
            let n = items.len();
            (items, format!("{n} context(s) from `required-contexts`"))
        }
    }
}

/// Posts a deployment status with the run as `log_url`.
pub(crate) async fn post_status(
    github: &GitHub,
    id: u64,
    state: &str,
    description: &str,
    environment_url: Option<&str>,
) -> Result<()> {
    // GitHub documents `auto_inactive` for a status that makes this deployment the live one;
    // what it does with other states is not documented, so only `success` asks for it.
    let mut body = json!({
        "state": state,
        "description": truncate(description, 140),
        "auto_inactive": state == "success",
    });
    if let Some(url) = log_url() {
        body["log_url"] = json!(url);
    }
    if let Some(url) = environment_url {
        body["environment_url"] = json!(url);
    }
    let _: Value = github
        .post(
            &github.repo_path(&format!("/deployments/{id}/statuses")),
            &body,
        )
        .await
        .map_err(|e| {
            Error::from(e).context(format!("cannot set GitHub deployment {id} to `{state}`"))
        })?;
    tracing::info!("GitHub deployment {id} is `{state}`");
    Ok(())
}

/// The run's page: `$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID`.
pub(crate) fn log_url() -> Option<String> {
    let server = settings::env("GITHUB_SERVER_URL")?;
    let repo = settings::env("GITHUB_REPOSITORY")?;
    let run = settings::env("GITHUB_RUN_ID")?;
    Some(format!(
        "{}/{repo}/actions/runs/{run}",
        server.trim_end_matches('/')
    ))
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Seed 004 §9: what a person on call reads.
pub(crate) fn rollback_instructions(record: &Record, on_call: Option<&str>) -> String {
    let id = &record.deployment_id;
    let mut out = format!("# Rollback instructions: deployment `{id}`\n\n");
    let mut table = Table::new(&["", ""]);
    table.row(&["Deployment ID", &format!("`{id}`")]);
    table.row(&["Version", &format!("`{}`", record.version)]);
    table.row(&["Environment", &format!("`{}`", record.environment)]);
    table.row(&["Status", &format!("`{}`", record.status)]);
    if let Some(sha) = &record.git_sha {
        table.row(&["Commit", &format!("`{sha}`")]);
    }
    if let Some(previous) = &record.previous_version {
        table.row(&["Previous version", &format!("`{previous}`")]);
    }
    table.row(&[
        "Rollback window",
        &format!(
            "{} minutes from completion (`{}`)",
            record.rollback_window_minutes, record.completed_at
        ),
    ]);
    table.row(&[
        "Rollback deadline",
        &format!("**`{}`**", record.rollback_deadline),
    ]);
    out.push_str(&table.render());
    out.push_str("\n## When to roll back\n\n");
    out.push_str("- Critical service failures not caught by the smoke tests\n");
    out.push_str("- Data corruption or integrity issues\n");
    out.push_str("- Performance degradation beyond acceptable thresholds\n");
    out.push_str("- Security vulnerabilities discovered after the deployment\n");
    out.push_str("\n## Procedure\n\n");
    out.push_str("1. **Confirm the rollback is needed** with the team lead.\n");
    out.push_str(&format!(
        "2. **Roll back** (runs the rollback hook, verifies health, marks the record and the GitHub deployment):\n\n   ```sh\n   shipgate --deployment-id {id} --environment {} rollback --reason \"<why>\"\n   ```\n\n   From GitHub: run the deployment workflow's rollback job (`workflow_dispatch`) with `deployment-id: {id}`. After `{}` the command refuses; add `--force` (input `force: true`) to roll back anyway.\n",
        record.environment, record.rollback_deadline
    ));
    match &record.database_backup {
        Some(backup) => {
            out.push_str(&format!(
                "3. **Restore the database** only if the data must go back to before this deployment (writes since then are lost). Together with the rollback:\n\n   ```sh\n   shipgate --deployment-id {id} rollback --restore-database --reason \"<why>\"\n   ```\n\n   or on its own:\n\n   ```sh\n   shipgate restore --backup-id {} --yes\n   ```\n\n",
                backup.backup_id
            ));
            out.push_str(&format!(
                "   Backup `{}` at `{}` (taken `{}`{}{}).\n",
                backup.backup_id,
                backup.location,
                backup.timestamp,
                backup
                    .sha256
                    .as_ref()
                    .map(|s| format!(", sha256 `{s}`"))
                    .unwrap_or_default(),
                backup
                    .size
                    .map(|s| format!(", {s} bytes"))
                    .unwrap_or_default()
            ));
            if let Some(manual) = manual_restore(backup) {
                out.push_str(&format!(
                    "   By hand, without shipgate (check the SHA-256 first):\n\n   ```sh\n{manual}   ```\n"
                ));
            }
        }
        None => out.push_str(
            "3. **Database**: no backup was recorded for this deployment; a database rollback needs the team's own recovery plan (point-in-time recovery).\n",
        ),
    }
    out.push_str("4. **Verify the services**: health checks on the previous version (the rollback command does this when health URLs are configured).\n");
    out.push_str("5. **Document the incident**: `shipgate rollback` writes an incident stub (`incident-<id>.md`); complete it.\n");
    out.push_str(&format!(
        "\n## After the deadline, or to redeploy a known-good version\n\nRun the deployment workflow by `workflow_dispatch` with `version: {}` (the previous version) — `validate` allows the downgrade with `allow-downgrade: true` — or roll back with `--force`.\n",
        record.previous_version.as_deref().unwrap_or("<previous version>")
    ));
    if let Some(on_call) = on_call {
        out.push_str(&format!("\n## On call\n\n{on_call}\n"));
    }
    out
}

/// The backup's manual restore (the one text, `archive::manual_restore`), indented for the
/// instructions' list.
fn manual_restore(backup: &Backup) -> Option<String> {
    let format = crate::archive::DumpFormat::of(backup.format.as_deref(), &backup.location);
    let text = crate::archive::manual_restore(&backup.location, format, backup.sha256.as_deref())?;
    Some(text.lines().map(|line| format!("   {line}\n")).collect())
}

/// Seed 004 §10: the failure report.
pub(crate) fn failure_report(record: &Record) -> String {
    let Some(failure) = &record.failure else {
        return String::new();
    };
    let mut out = format!(
        "# Deployment failure report: `{}`\n\n",
        record.deployment_id
    );
    let mut table = Table::new(&["", ""]);
    table.row(&["Deployment ID", &format!("`{}`", record.deployment_id)]);
    table.row(&["Version", &format!("`{}`", record.version)]);
    table.row(&["Environment", &format!("`{}`", record.environment)]);
    table.row(&["Status", &format!("`{}`", record.status)]);
    table.row(&["Failed stage", &format!("`{}`", failure.stage)]);
    table.row(&["Error", &failure.error]);
    table.row(&[
        "Backup available",
        &match &record.database_backup {
            Some(b) => format!("yes: `{}` at `{}`", b.backup_id, b.location),
            None => "no".to_string(),
        },
    ]);
    if let Some(url) = record.run.as_ref().and_then(|r| r.url.as_ref()) {
        table.row(&["Workflow run", url]);
    }
    out.push_str(&table.render());
    out.push_str(&format!(
        "\n## Action required\n\n{}\n",
        failure.action_required
    ));
    out.push_str("\n## Stages\n\n");
    let mut stages = Table::new(&["Stage", "Result", "Duration"]);
    for stage in &record.pipeline {
        stages.row(&[
            stage.stage.as_str(),
            stage.result.as_str(),
            &stage
                .duration_ms
                .map(|ms| crate::util::format_duration(std::time::Duration::from_millis(ms)))
                .unwrap_or_else(|| "—".into()),
        ]);
    }
    out.push_str(&stages.render());
    out.push_str(&format!(
        "\nRollback instructions: artifact `rollback-instructions-{}`.\n",
        record.deployment_id
    ));
    out
}

fn summary(record: &Record, publication: &Publication) -> String {
    let icon = match record.status.as_str() {
        "success" => "✅",
        "rolled_back" => "↩️",
        _ => "🚨",
    };
    let mut out = format!(
        "### {icon} Deployment record `{}`: {} of `{}` to `{}`\n\n",
        record.deployment_id, record.status, record.version, record.environment
    );
    let mut table = Table::new(&["Stage", "Result", "Duration"]);
    for stage in &record.pipeline {
        table.row(&[
            stage.stage.as_str(),
            if stage.result == "not_run" {
                "did not run"
            } else {
                stage.result.as_str()
            },
            &stage
                .duration_ms
                .map(|ms| crate::util::format_duration(std::time::Duration::from_millis(ms)))
                .unwrap_or_else(|| "—".into()),
        ]);
    }
    out.push_str(&table.render());
    if let Some(failure) = &record.failure {
        out.push_str(&format!(
            "\n**Failed at `{}`**: {}\n\n**Action required**: {}\n",
            failure.stage, failure.error, failure.action_required
        ));
    }
    out.push_str(&format!(
        "\nRollback window: {} minutes, until **`{}`**{}.\n",
        record.rollback_window_minutes,
        record.rollback_deadline,
        match &record.database_backup {
            Some(b) => format!("; database backup `{}`", b.backup_id),
            None => String::new(),
        }
    ));
    let mut artifacts = Table::new(&["Artifact", "State", "Size"]);
    for artifact in &publication.artifacts {
        artifacts.row(&[
            format!("`{}`", artifact.name),
            artifact.state.to_string(),
            artifact.size.map(|s| format!("{s} B")).unwrap_or_default(),
        ]);
    }
    out.push_str(&format!(
        "\n{}\nRetention: {} days.{}\n",
        artifacts.render(),
        publication.retention_days,
        if publication.service {
            String::new()
        } else {
            format!(
                " No artifact service here: the files are in `{}` for `actions/upload-artifact`.",
                publication.dir
            )
        }
    ));
    if let Some(deployment) = &record.github_deployment {
        out.push_str(&format!(
            "\nGitHub deployment {} (required contexts: {}).\n",
            deployment.id, deployment.required_contexts_reason
        ));
    }
    out
}

/// The record of a deployment: `path` when given (a downloaded artifact), else the state dir's.
pub(crate) fn load(state: &StateDir, path: Option<&Path>) -> Result<(Record, PathBuf)> {
    let path = path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| state.path(&record_file(state.id())));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::usage(format!(
            "cannot read the deployment record `{}`: {e}; run `shipgate record` first, or pass `--record <file>` (e.g. the downloaded `deployment-record-<id>` artifact)",
            path.display()
        ))
    })?;
    let record: Record = serde_json::from_str(&text).map_err(|e| {
        Error::usage(format!(
            "`{}` is not a shipgate deployment record: {e}",
            path.display()
        ))
    })?;
    if record.schema_version > SCHEMA_VERSION {
        return Err(Error::usage(format!(
            "`{}` has schema version {}, newer than this shipgate understands ({SCHEMA_VERSION}); use a newer shipgate",
            path.display(),
            record.schema_version
        )));
    }
    Ok((record, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_keys() {
        assert_eq!(snake("API Gateway"), "api_gateway");
        assert_eq!(snake("auth-service /health"), "auth_service_health");
        assert_eq!(snake("!!"), "check");
    }

    #[test]
    fn statuses_from_workflows() {
        assert_eq!(normalize_status("success"), Some("success"));
        assert_eq!(normalize_status("cancelled"), Some("failure"));
        assert_eq!(normalize_status("rolled-back"), Some("rolled_back"));
        assert_eq!(normalize_status("skipped"), None);
    }

    #[test]
    fn lists_split_on_commas_and_lines() {
        assert_eq!(split_list("a, b\nc,,"), vec!["a", "b", "c"]);
    }

    #[test]
    fn manual_restore_follows_the_format() {
        let backup = Backup {
            backup_id: "b1".into(),
            location: "s3://bk/prod/backup-1.sql.gz".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            sha256: Some("ab".into()),
            format: Some("plain".into()),
            compression: Some("gzip".into()),
            ..Backup::default()
        };
        let text = manual_restore(&backup).expect("command");
        assert!(
            text.contains("aws s3 cp 's3://bk/prod/backup-1.sql.gz' - | gunzip | psql"),
            "{text}"
        );
        assert!(text.contains("sha256sum   # expect ab"), "{text}");
        let custom = Backup {
            format: Some("custom".into()),
            compression: None,
            location: "file:///var/bk/b1.dump".into(),
            ..backup
        };
        let text = manual_restore(&custom).expect("command");
        assert!(
            text.contains("cat '/var/bk/b1.dump' | pg_restore"),
            "{text}"
        );
    }
}

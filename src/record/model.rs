//! The deployment record (seed 004 §8): its shape, the names of the files it is written to,
//! and reading one back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::StateDir;
use crate::state::backup::BackupFile;
use crate::state::gate::RequiredSet;
use crate::state::rollback::{Health as RollbackHealth, Step as RollbackStep};
use crate::state::rollout::RollbackRecord;
use crate::state::smoke::Status as SmokeStatus;

/// The record's own schema version (`schema/deployment-record.schema.json`).
pub(crate) const SCHEMA_VERSION: u32 = 1;
/// The pipeline stages, in order, and the state file each leaves.
pub(crate) const STAGES: [&str; 6] = ["validate", "gate", "backup", "migrate", "rollout", "smoke"];

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
    pub(crate) stage: String,
    pub(crate) traffic_percentage: f64,
    pub(crate) duration_minutes: f64,
    /// `healthy`, `unhealthy` or `not_run`.
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) planned_duration_minutes: Option<f64>,
    #[serde(default)]
    pub(crate) samples: Option<u64>,
    #[serde(default)]
    pub(crate) success_rate: Option<f64>,
    #[serde(default)]
    pub(crate) p95_ms: Option<f64>,
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

/// The run's page: `$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID`.
pub(crate) fn log_url() -> Option<String> {
    let server = crate::inputs::env("GITHUB_SERVER_URL")?;
    let repo = crate::inputs::env("GITHUB_REPOSITORY")?;
    let run = crate::inputs::env("GITHUB_RUN_ID")?;
    Some(format!(
        "{}/{repo}/actions/runs/{run}",
        server.trim_end_matches('/')
    ))
}

/// The record of a deployment: `path` when given (a downloaded artifact), else the state dir's.
pub(crate) fn load(state: &StateDir, path: Option<&Path>) -> Result<(Record, PathBuf)> {
    let path = path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| state.path(&record_file(state.id())));
    let text = crate::inputs::read_text_file(&path).map_err(|e| {
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

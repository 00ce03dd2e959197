//! `deployment-record-<id>.json`: the audit record `record` writes and `rollback` updates (seed
//! 004 §8), read by `rollback` and `notify`; `schema/deployment-record.schema.json` describes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StateDir;
use super::backup::BackupFile;
use super::gate::{PreflightRow, RequiredSet};
use super::rollback::{Health as RollbackHealth, Step as RollbackStep};
use super::rollout::RollbackRecord;
use super::smoke::Status as SmokeStatus;
use crate::error::{Error, Result};

/// The record's own schema version (`schema/deployment-record.schema.json`).
pub(crate) const SCHEMA_VERSION: u32 = 1;
/// The pipeline stages, in order, and the state file each leaves.
pub(crate) const STAGES: [&str; 6] = ["validate", "gate", "backup", "migrate", "rollout", "smoke"];

/// `database_backup`: seed fields plus what makes the backup checkable.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct Backup {
    #[schemars(length(min = 1))]
    pub(crate) backup_id: String,
    #[schemars(regex(pattern = r"^[a-z][a-z0-9+.-]*://"))]
    pub(crate) location: String,
    pub(crate) timestamp: String,
    #[serde(default)]
    #[schemars(regex(pattern = r"^(sha256:)?[0-9a-f]{64}$"))]
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
            compression: Some(taken.compression.name().to_string()),
            sidecar_location: Some(crate::secret::redact_url(&taken.sidecar_location)),
        })
    }
}

/// One entry of `rollout_stages`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RolloutStage {
    #[schemars(length(min = 1))]
    pub(crate) stage: String,
    #[schemars(range(min = 0, max = 100))]
    pub(crate) traffic_percentage: f64,
    #[schemars(range(min = 0))]
    pub(crate) duration_minutes: f64,
    /// `healthy`, `unhealthy` or `not_run`.
    pub(crate) status: String,
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub(crate) planned_duration_minutes: Option<f64>,
    #[serde(default)]
    pub(crate) samples: Option<u64>,
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub(crate) success_rate: Option<f64>,
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub(crate) p95_ms: Option<f64>,
}

/// One row of `pipeline`: what each stage did, or that it did not run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, transform = stage_fields_required)]
pub(crate) struct StageResult {
    #[schemars(extend("enum" = ["validate", "gate", "backup", "migrate", "rollout", "smoke"]))]
    pub(crate) stage: String,
    /// `pass`, `fail`, `rolled_back`, `rollback_failed` or `not_run`.
    #[schemars(extend("enum" = ["pass", "fail", "rolled_back", "rollback_failed", "not_run", "unknown"]))]
    pub(crate) result: String,
    #[serde(default)]
    pub(crate) timestamp: Option<String>,
    #[serde(default)]
    pub(crate) duration_ms: Option<u64>,
}

/// `failure`: seed 004 §10.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct Failure {
    #[schemars(length(min = 1))]
    pub(crate) stage: String,
    #[schemars(length(min = 1))]
    pub(crate) error: String,
    pub(crate) backup_available: bool,
    #[schemars(length(min = 1))]
    pub(crate) action_required: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RunInfo {
    pub(crate) id: String,
    pub(crate) attempt: Option<String>,
    pub(crate) url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct GitHubDeployment {
    #[schemars(range(min = 1))]
    pub(crate) id: u64,
    pub(crate) environment: String,
    pub(crate) required_contexts: Vec<String>,
    pub(crate) required_contexts_reason: String,
}

/// The deployment record: seed 004 §8 field for field, then richer sections.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields,
    title = "shipgate deployment record",
    extend(
        "$id" = "https://github.com/shipgate-dev/shipgate/schema/deployment-record.schema.json",
        "allOf" = [
            {
                "if": { "properties": { "status": { "const": "success" } } },
                "then": { "properties": { "failure": { "type": "null" } } }
            },
            {
                "if": { "properties": { "status": { "const": "failure" } } },
                "then": { "properties": { "failure": { "type": "object" } } }
            },
            {
                "if": { "properties": { "status": { "const": "rolled_back" } } },
                "then": { "properties": { "rollback_available": { "const": false } } }
            }
        ]
    ),
    transform = seed_fields_required
)]
pub(crate) struct Record {
    #[schemars(extend("const" = 1))]
    pub(crate) schema_version: u32,
    #[schemars(extend("format" = "date-time"))]
    pub(crate) timestamp: String,
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"))]
    pub(crate) deployment_id: String,
    #[schemars(length(min = 1))]
    pub(crate) version: String,
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"))]
    pub(crate) environment: String,
    /// `success`, `failure` or `rolled_back`.
    #[schemars(extend("enum" = ["success", "failure", "rolled_back"]))]
    pub(crate) status: String,
    #[schemars(regex(pattern = r"^[0-9a-f]{40}([0-9a-f]{24})?$"))]
    pub(crate) git_sha: Option<String>,
    pub(crate) git_ref: Option<String>,
    #[schemars(length(min = 1))]
    pub(crate) triggered_by: String,
    #[schemars(inner(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")))]
    pub(crate) services_deployed: Vec<String>,
    pub(crate) database_backup: Option<Backup>,
    pub(crate) migrations_applied: Option<u64>,
    pub(crate) rollout_stages: Vec<RolloutStage>,
    #[schemars(extend("required" = ["smoke_tests"], "properties" = { "smoke_tests": { "enum": ["passed", "failed", "not_run"] } }))]
    pub(crate) health_checks: BTreeMap<String, String>,
    pub(crate) rollback_available: bool,
    pub(crate) rollback_window_minutes: u64,
    #[schemars(extend("format" = "date-time"))]
    pub(crate) rollback_deadline: String,

    pub(crate) repository: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) previous_version: Option<String>,
    pub(crate) environment_url: Option<String>,
    pub(crate) run: Option<RunInfo>,
    /// When the deployment completed (smoke, else rollout, else this record): the window's start.
    #[schemars(extend("format" = "date-time"))]
    pub(crate) completed_at: String,
    #[schemars(length(min = 6))]
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
    /// The deployment lease this deployment held on its environment (`lease.json`).
    #[serde(default)]
    pub(crate) lease: Option<LeaseSection>,
    /// Set by `shipgate watch`: the post-deploy watch and how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) watch: Option<RecordWatch>,
    pub(crate) generator: String,
}

/// `lease`: the deployment lease (one deployment per environment at a time): who held it,
/// where, and when it was taken and released.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct LeaseSection {
    /// `s3://…/lease-<environment>.json` or `file://…`.
    pub(crate) location: String,
    pub(crate) holder: super::lease::Holder,
    /// The command that took it (`backup`, `rollout`, `lease`).
    pub(crate) taken_by: String,
    #[schemars(extend("format" = "date-time"))]
    pub(crate) taken_at: String,
    /// The last renewal this deployment made.
    #[schemars(extend("format" = "date-time"))]
    pub(crate) renewed_at: String,
    pub(crate) ttl_seconds: u64,
    /// `held` (not released: it expires `ttl_seconds` after its last renewal), `released`, or
    /// `lost` (it expired and was taken over, or was broken).
    pub(crate) status: super::lease::LeaseStatus,
    pub(crate) released_at: Option<String>,
    /// The expired holder this deployment took it over from.
    pub(crate) takeover_of: Option<super::lease::Holder>,
    pub(crate) note: Option<String>,
}

impl LeaseSection {
    pub(crate) fn of(file: &super::lease::LeaseFile) -> LeaseSection {
        LeaseSection {
            location: file.location.clone(),
            holder: file.holder.clone(),
            taken_by: file.taken_by.clone(),
            taken_at: file.taken_at.clone(),
            renewed_at: file.renewed_at.clone(),
            ttl_seconds: file.ttl_seconds,
            status: file.status,
            released_at: file.released_at.clone(),
            takeover_of: file.takeover_of.clone(),
            note: file.note.clone(),
        }
    }
}

/// `gate`: what `gate.json` said.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct GateSection {
    pub(crate) result: String,
    pub(crate) required: RequiredSet,
    pub(crate) failed: Vec<String>,
    pub(crate) pending: Vec<String>,
    pub(crate) missing: Vec<String>,
    /// The preflight gates' verdicts (change window, security alerts, backup recency).
    #[serde(default)]
    pub(crate) preflight: Vec<PreflightRow>,
}

/// `migrations`: what `migrate.json` said.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct MigrationsSection {
    pub(crate) result: String,
    pub(crate) tool: Option<String>,
    pub(crate) applied_count: Option<u64>,
    pub(crate) applied: Vec<String>,
    pub(crate) lock_wait_ms: u64,
    pub(crate) exit_code: Option<i32>,
}

/// `rollout`: what `rollout.json` said.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RolloutSection {
    pub(crate) result: String,
    pub(crate) version: String,
    pub(crate) previous_version: Option<String>,
    pub(crate) failed_stage: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) rollback: RollbackRecord,
}

/// `smoke`: what `smoke.json` said.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct SmokeSection {
    pub(crate) result: String,
    pub(crate) total: usize,
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    pub(crate) tests: Vec<SmokeTestSection>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct SmokeTestSection {
    pub(crate) name: String,
    pub(crate) status: SmokeStatus,
    pub(crate) duration_ms: u64,
    pub(crate) time_to_ready_ms: Option<u64>,
}

/// `rollback`: who rolled the deployment back, when, why and how it went.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RecordRollback {
    #[schemars(extend("format" = "date-time"))]
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

/// `watch`: the post-deploy watch (`shipgate watch`). `result` is `watched` (a clean window),
/// `breached` (a gate failed: the deployment was rolled back, or the rollback failed: see
/// `status` and `rollback`) or `cancelled` (a signal ended it; nothing was rolled back).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RecordWatch {
    #[schemars(extend("enum" = ["watched", "breached", "cancelled"]))]
    pub(crate) result: String,
    #[schemars(extend("format" = "date-time"))]
    pub(crate) started_at: String,
    #[schemars(extend("format" = "date-time"))]
    pub(crate) ended_at: String,
    /// The window asked for (`--for`) and the interval between checks, in seconds.
    pub(crate) window_seconds: u64,
    pub(crate) interval_seconds: u64,
    /// The window was cut at the rollback deadline.
    pub(crate) capped_by_deadline: bool,
    /// The gate that breached and why.
    pub(crate) gate: Option<String>,
    pub(crate) breach: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct Timings {
    /// Sum of the stages' own durations.
    pub(crate) total_ms: u64,
    /// `duration_ms` of each stage that ran.
    pub(crate) stages: BTreeMap<String, u64>,
}

/// Adds `fields` to `required`: they are written even when null, and the schema says so.
fn require(schema: &mut schemars::Schema, fields: &[&str]) {
    if let Some(required) = schema
        .ensure_object()
        .entry("required")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        .as_array_mut()
    {
        required.extend(fields.iter().map(|f| serde_json::Value::from(*f)));
    }
}

/// Seed 004 §8 fields a record always carries, null when unknown.
fn seed_fields_required(schema: &mut schemars::Schema) {
    require(
        schema,
        &[
            "git_sha",
            "git_ref",
            "database_backup",
            "migrations_applied",
            "failure",
        ],
    );
}

/// Every row of `pipeline` says when its stage ran and how long it took, null when it did not.
fn stage_fields_required(schema: &mut schemars::Schema) {
    require(schema, &["timestamp", "duration_ms"]);
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::STAGES;

    fn errors(record: &Value) -> Vec<String> {
        let schema = schemars::schema_for!(super::Record).to_value();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("schema compiles");
        validator
            .iter_errors(record)
            .map(|e| e.to_string())
            .collect()
    }

    fn valid() -> Value {
        let stage = |name: &str| json!({"stage": name, "result": "pass", "timestamp": null, "duration_ms": null});
        let pipeline: Vec<Value> = STAGES.iter().map(|s| stage(s)).collect();
        json!({
            "schema_version": 1, "timestamp": "2026-01-01T00:00:00Z", "deployment_id": "42-abc",
            "version": "v1.0.0", "environment": "production", "status": "success",
            "git_sha": "0123456789abcdef0123456789abcdef01234567", "git_ref": null,
            "triggered_by": "alice", "services_deployed": ["api"], "database_backup": null,
            "migrations_applied": null, "rollout_stages": [], "health_checks": {"smoke_tests": "passed"},
            "rollback_available": true, "rollback_window_minutes": 60,
            "rollback_deadline": "2026-01-01T01:00:00Z", "completed_at": "2026-01-01T00:00:00Z",
            "pipeline": pipeline,
            "not_run": [], "failure": null, "timings": {"total_ms": 0, "stages": {}},
            "generator": "shipgate test"
        })
    }

    /// The generated schema keeps the rules the hand-kept one had.
    #[test]
    fn the_schema_refuses_what_a_record_never_is() {
        assert_eq!(errors(&valid()), Vec::<String>::new());
        let refused = |edit: &dyn Fn(&mut Value)| {
            let mut record = valid();
            edit(&mut record);
            assert!(!errors(&record).is_empty(), "{record:#}");
        };
        refused(&|r| r["unknown"] = json!(1));
        refused(&|r| r["schema_version"] = json!(2));
        refused(&|r| r["git_sha"] = json!("main"));
        refused(&|r| r["deployment_id"] = json!("../x"));
        refused(&|r| r["status"] = json!("cancelled"));
        refused(&|r| r["timestamp"] = json!("yesterday"));
        refused(&|r| {
            r.as_object_mut()
                .map(|o| o.remove("failure"))
                .unwrap_or_default();
        });
        refused(
            &|r| r["failure"] = json!({"stage": "smoke", "error": "x", "backup_available": false, "action_required": "y"}),
        );
        refused(&|r| r["status"] = json!("failure"));
        refused(&|r| r["status"] = json!("rolled_back"));
        refused(&|r| r["health_checks"] = json!({}));
        refused(&|r| r["pipeline"][0]["stage"] = json!("deploy"));
        refused(&|r| {
            r["pipeline"]
                .as_array_mut()
                .map(|p| p.pop())
                .unwrap_or_default();
        });
        refused(&|r| {
            r["pipeline"][0]
                .as_object_mut()
                .map(|o| o.remove("duration_ms"))
                .unwrap_or_default();
        });
        refused(
            &|r| r["rollout_stages"] = json!([{"stage": "canary", "traffic_percentage": 101, "duration_minutes": 1, "status": "healthy"}]),
        );
        refused(&|r| {
            r["database_backup"] =
                json!({"backup_id": "b", "location": "bucket/key", "timestamp": "t"})
        });
        refused(&|r| r["timings"]["extra"] = json!(1));
    }
}

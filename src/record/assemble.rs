//! Building the record from what the other commands left in the state directory, each stage's
//! file read through its type, with the options the command resolved.

use super::model::{
    Backup, Failure, GateSection, MigrationsSection, Record, RolloutSection, RolloutStage, RunInfo,
    SCHEMA_VERSION, STAGES, SmokeSection, SmokeTestSection, StageResult, Timings,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::actions::{self};
use crate::artifacts::Artifact;
use crate::state::backup::{BackupFile, BackupOutcome};
use crate::state::gate::GateFile;
use crate::state::lease::LeaseFile;
use crate::state::migrate::MigrateFile;
use crate::state::rollout::{RolloutFile, StageRecord as RolloutStageRecord, StageStatus};
use crate::state::smoke::{SmokeFile, Status as SmokeStatus};
use crate::state::validate::ValidateFile;
use crate::state::{Header, StateDir, StateFile};
use crate::text::split_list;

/// Resolved options.
pub(crate) struct Options {
    pub(crate) status: Option<String>,
    pub(crate) failed_stage: Option<String>,
    pub(crate) services: Vec<String>,
    pub(crate) triggered_by: String,
    pub(crate) version: Option<String>,
    pub(crate) window_minutes: u64,
    pub(crate) retention_days: Option<u32>,
    pub(crate) artifacts_required: bool,
    pub(crate) github_deployment: bool,
    pub(crate) environment_url: Option<String>,
    pub(crate) required_contexts: String,
    pub(crate) on_call: Option<String>,
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
    pub(crate) backup: Option<BackupFile>,
    pub(crate) validate: Option<ValidateFile>,
    pub(crate) gate: Option<GateFile>,
    pub(crate) migrate: Option<MigrateFile>,
    pub(crate) rollout: Option<RolloutFile>,
    pub(crate) smoke: Option<SmokeFile>,
    pub(crate) lease: Option<LeaseFile>,
    pub(crate) warnings: Vec<String>,
}

/// The header fields of a stage's file.
pub(crate) struct Ran {
    pub(crate) result: Option<String>,
    pub(crate) timestamp: Option<String>,
    pub(crate) duration_ms: Option<u64>,
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
        let lease = typed::<LeaseFile>(state, &mut warnings);
        StateFiles {
            backup,
            validate,
            gate,
            migrate,
            rollout,
            smoke,
            lease,
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

pub(crate) fn failed(result: &str) -> bool {
    matches!(
        result,
        "fail" | "failed" | "rolled_back" | "rollback_failed"
    ) || interrupted(result)
}

/// A rollout that never wrote its end: it was killed (a cancelled workflow's SIGKILL,
/// `kill -9`, a crash) while shifting traffic or rolling back. Always a failure.
pub(crate) fn interrupted(result: &str) -> bool {
    matches!(result, "in_progress" | "rolling_back")
}

/// Why an interrupted rollout failed, from what its `rollout.json` last said.
pub(crate) fn interrupted_reason(rollout: &RolloutFile) -> String {
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

/// Builds the record from the state files and the options.
/// Where the deployment went: the environment and the repository.
pub(crate) struct Target<'a> {
    pub(crate) environment: &'a str,
    pub(crate) repository: Option<&'a str>,
}

pub(crate) fn assemble(id: &str, target: &Target, options: &Options, files: &StateFiles) -> Record {
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
        .or_else(|| crate::inputs::env("GITHUB_SHA"));
    let git_ref =
        crate::inputs::env("GITHUB_REF").or_else(|| tag.as_ref().map(|t| format!("refs/tags/{t}")));
    let environment = target.environment.to_string();
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
    let run = crate::inputs::env("GITHUB_RUN_ID").map(|run_id| RunInfo {
        url: crate::actions::run_url(),
        attempt: crate::inputs::env("GITHUB_RUN_ATTEMPT"),
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
        })
        .map(|previous| in_tag_form(&previous, validated));

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
        repository: target.repository.map(str::to_string),
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
            preflight: g.preflight.clone(),
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
        lease: files.lease.as_ref().map(super::model::LeaseSection::of),
        watch: None,
        generator: concat!("shipgate ", env!("CARGO_PKG_VERSION")).to_string(),
    }
}

pub(crate) fn rollout_stage(stage: &RolloutStageRecord) -> RolloutStage {
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
pub(crate) fn snake(name: &str) -> String {
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
pub(crate) fn failure_info(
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
pub(crate) fn artifact_list(
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
pub(crate) fn resolve(state: &StateDir, raw: &str) -> PathBuf {
    let path = PathBuf::from(raw);
    if path.is_absolute() || path.exists() {
        path
    } else {
        state.path(raw)
    }
}

/// The previous version written as the record's `version` is (the tag): validate and rollout
/// know it as SemVer (`1.3.2`), the record names releases by tag (`v1.4.0`), so the tag's prefix
/// goes in front (`v1.3.2`). A value that is not SemVer, or already has the prefix, is kept.
fn in_tag_form(previous: &str, validated: Option<&ValidateFile>) -> String {
    let prefix = validated.and_then(|v| v.tag.strip_suffix(v.version.as_str()));
    match prefix {
        Some(prefix)
            if !prefix.is_empty()
                && !previous.starts_with(prefix)
                && semver::Version::parse(previous).is_ok() =>
        {
            format!("{prefix}{previous}")
        }
        _ => previous.to_string(),
    }
}

/// `required_contexts` from the policy: the gate's required commit-status contexts, none, or a
/// list; with the reason for the summary.
pub(crate) fn required_contexts(policy: &str, files: &StateFiles) -> (Vec<String>, String) {
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
}

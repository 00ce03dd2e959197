//! One rollback: inside the record's window (or forced), the hook, the database restore when
//! asked, the health check, then the record and GitHub deployment marked rolled back, the
//! incident stub and both as artifacts. What it needs from the settings (a child shipgate's argv,
//! a GitHub client, who acts) comes in through [`Outside`]; what it ends in, through [`Finished`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{health, report, steps, window};
use crate::actions;
use crate::artifacts::{self, Artifact};
use crate::error::{Error, Kind, Result};
use crate::github::GitHub;
use crate::hooks::{Context, Hook};
use crate::process::{LogFile, Shutdown, Spec};
use crate::record::deployment::post_status;
use crate::state::Header;
use crate::state::StateDir;
use crate::state::backup::BackupFile;
use crate::state::deployment_record::{Backup, Record, RecordRollback, record_file};
use crate::state::rollback::{MarkedDeployment, RollbackFile, Step};

/// How long the database restore may take.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The resolved options of one rollback.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) force: bool,
    pub(crate) reason: String,
    /// `rollback-hook`, else the stage hook (as `rollout` falls back).
    pub(crate) hook: Option<Hook>,
    /// The hook is the stage hook: no rollback hook is configured.
    pub(crate) stage_hook_reused: bool,
    pub(crate) restore_database: bool,
    pub(crate) restore_command: Option<String>,
    pub(crate) health_urls: Vec<String>,
    pub(crate) health_timeout: Duration,
}

/// What the run takes from outside its domain.
pub(crate) struct Outside<'a> {
    /// This executable's `restore --location <location> --yes` for deployment `id`, as the argv
    /// of a child shipgate (`(id, location)`).
    pub(crate) restore_argv: &'a dyn Fn(&str, &str) -> Result<Vec<String>>,
    /// A GitHub client, to mark the deployment inactive.
    pub(crate) github: &'a dyn Fn() -> Result<GitHub>,
    /// Who rolls back, for the record.
    pub(crate) actor: String,
}

/// How the run ended: `rollback.json`, the record's status, the incident stub, and the error to
/// exit with once the file is saved (refused, or a step failed).
pub(crate) struct Finished {
    pub(crate) result: RollbackFile,
    pub(crate) status: String,
    pub(crate) incident: Option<PathBuf>,
    pub(crate) error: Option<Error>,
}

fn finished(
    result: RollbackFile,
    record: &Record,
    incident: Option<PathBuf>,
    error: Option<Error>,
) -> Finished {
    Finished {
        result,
        status: record.status.clone(),
        incident,
        error,
    }
}

/// Rolls back deployment `record` (read from `record_path`), updating the record in place.
pub(crate) async fn run(
    state: &StateDir,
    record: &mut Record,
    record_path: &Path,
    options: &Options,
    outside: &Outside<'_>,
) -> Result<Finished> {
    let id = record.deployment_id.clone();
    let mut result = RollbackFile {
        header: Header {
            duration_ms: Some(0),
            ..Header::now::<RollbackFile>("fail")
        },
        deployment_id: id.clone(),
        version: record.version.clone(),
        previous_version: record.previous_version.clone(),
        reason: options.reason.clone(),
        rollback_deadline: record.rollback_deadline.clone(),
        forced: false,
        refused: false,
        already_rolled_back: false,
        steps: Vec::new(),
        hook: None,
        stage_hook_reused: options.stage_hook_reused,
        database_restored: None,
        health: Vec::new(),
        github_deployment: None,
        incident: None,
        record: Some(record_path.display().to_string()),
        artifacts: None,
        error: None,
    };

    if record.status == "rolled_back" {
        tracing::info!(
            "deployment `{id}` is already rolled back (see `{}`); nothing to do",
            record_path.display()
        );
        result.header.result = "pass".to_string();
        result.already_rolled_back = true;
        return Ok(finished(result, record, None, None));
    }

    // The window.
    match window::closed_since(&record.rollback_deadline, jiff::Timestamp::now()) {
        Ok(Some(closed)) => {
            let ago = crate::ui::format_duration(closed);
            if !options.force {
                result.refused = true;
                let message = format!(
                    "the rollback window of deployment `{id}` closed at {} ({ago} ago, {} minutes after completion); pass `--force` (input `force: true`) to roll back anyway, or redeploy the previous version{}",
                    record.rollback_deadline,
                    record.rollback_window_minutes,
                    record
                        .previous_version
                        .as_ref()
                        .map(|v| format!(" (`{v}`) by workflow_dispatch"))
                        .unwrap_or_default()
                );
                result.error = Some(message.clone());
                return Ok(finished(result, record, None, Some(Error::gate(message))));
            }
            result.forced = true;
            actions::annotate(
                actions::Level::Warning,
                Some("shipgate rollback"),
                &format!(
                    "rolling back deployment `{id}` {ago} after its deadline ({}) because `--force` was given",
                    record.rollback_deadline
                ),
            );
        }
        Ok(None) => {}
        Err(e) if !options.force => return Err(e),
        Err(_) => result.forced = true,
    }

    let backup = if options.restore_database {
        Some(backup_of(state, record)?)
    } else {
        None
    };
    if options.hook.is_none() && backup.is_none() {
        return Err(Error::usage(
            "nothing to roll back with: set the rollback hook (input `rollback-hook`, or `rollback-hook-url` for a webhook; `--rollback-hook`; or `rollback-hook` in the `rollback:` or `rollout:` section of shipgate.yml — the stage hook `hook` serves too, as in `rollout`) and/or `--restore-database`",
        ));
    }
    tracing::info!(
        "rolling back deployment `{id}` ({}{}): {}",
        actions::quote(&record.version),
        record
            .previous_version
            .as_ref()
            .map(|v| format!(" → `{v}`"))
            .unwrap_or_default(),
        options.reason
    );

    let mut log = LogFile::append(&state.path(&format!("rollback-logs-{id}.log")))?;
    // A cancelled run stops its hook and restore (and is reported as a failed rollback).
    let shutdown = Shutdown::listen();
    let context = Context {
        event: "rollback",
        stage: "rollback".to_string(),
        weight: 0,
        version: record.version.clone(),
        deployment_id: id.clone(),
        previous_version: record.previous_version.clone(),
        environment: record.environment.clone(),
        failed_stage: None,
        reason: Some(options.reason.clone()),
    };

    // 1. The hook.
    if let Some(hook) = &options.hook {
        let _group = actions::group("Rollback hook");
        let run = steps::run_hook(
            hook,
            options.stage_hook_reused,
            &context,
            &mut log,
            &shutdown,
        )
        .await?;
        let (ok, cancelled) = (run.ok, run.cancelled);
        result.steps.push(Step {
            name: "hook".to_string(),
            command: hook.display(),
            ok,
            outcome: run.describe(),
            duration_ms: run.duration_ms,
        });
        result.hook = Some(run);
        if !ok {
            let what = match shutdown.received() {
                Some(signal) if cancelled => format!("the rollback hook was stopped by {signal}"),
                _ => "the rollback hook failed".to_string(),
            };
            return Ok(fail(result, record, &what));
        }
    }

    // 2. The database.
    if let Some(backup) = &backup {
        let _group = actions::group(&format!("Restore database backup `{}`", backup.backup_id));
        let spec = restore_spec(outside, state, options, backup, &context)?;
        let step = steps::run_step("restore", &spec, &mut log, &shutdown).await?;
        let ok = step.ok;
        result.steps.push(step);
        result.database_restored = Some(ok);
        if !ok {
            return Ok(fail(
                result,
                record,
                &format!(
                    "restoring the database from backup `{}` failed",
                    backup.backup_id
                ),
            ));
        }
    }

    // 3. Health.
    if options.health_urls.is_empty() {
        actions::annotate(
            actions::Level::Warning,
            Some("shipgate rollback"),
            "health was not verified after the rollback: no `health-urls` configured; check the services by hand",
        );
    } else {
        let _group = actions::group("Verify health");
        result.health =
            health::verify_health(&options.health_urls, options.health_timeout, &mut log).await;
        if result.health.iter().any(|h| h.state != "healthy") {
            return Ok(fail(
                result,
                record,
                "the services are not healthy after the rollback",
            ));
        }
    }

    // 4. Mark the record and the GitHub deployment.
    let rolled_back_at = crate::util::now_rfc3339();
    record.status = "rolled_back".to_string();
    record.rollback_available = false;
    record.rollback = Some(RecordRollback {
        timestamp: rolled_back_at,
        by: outside.actor.clone(),
        reason: options.reason.clone(),
        forced: result.forced,
        steps: result.steps.clone(),
        database_restored: result.database_restored,
        health: result.health.clone(),
        run_url: crate::actions::run_url(),
    });
    let written = state.write_json(&record_file(&id), &record)?;
    result.record = Some(written.display().to_string());
    if let Some(deployment) = &record.github_deployment {
        result.github_deployment = Some(
            mark_github(
                outside.github,
                deployment.id,
                &options.reason,
                record.environment_url.as_deref(),
            )
            .await,
        );
    }

    // 5. The incident stub, and both files as artifacts of this run.
    let incident_path = state.path(&format!("incident-{id}.md"));
    crate::util::write_atomic(
        &incident_path,
        crate::secret::redact(&report::incident(record, &result)).as_bytes(),
    )
    .map_err(|e| Error::usage(format!("cannot write `{}`: {e}", incident_path.display())))?;
    result.incident = Some(incident_path.display().to_string());
    let list = vec![
        Artifact {
            name: format!("incident-{id}"),
            files: vec![
                (incident_path.clone(), format!("incident-{id}.md")),
                (log.path().to_path_buf(), format!("rollback-logs-{id}.log")),
            ],
        },
        Artifact {
            name: format!("deployment-record-{id}-rolled-back"),
            files: vec![(written.clone(), record_file(&id))],
        },
    ];
    let publication = artifacts::publish(&state.path("artifacts"), &list, None).await;
    for failure in publication.failures() {
        actions::annotate(
            actions::Level::Warning,
            Some("shipgate rollback"),
            &format!(
                "artifact `{}` was not uploaded: {}; its files are in `{}`",
                failure.name,
                failure.error.as_deref().unwrap_or("unknown error"),
                failure.dir
            ),
        );
    }
    result.artifacts = Some(publication);
    result.header.result = "pass".to_string();
    tracing::info!(
        "deployment `{id}` rolled back; incident stub `{}`",
        incident_path.display()
    );
    Ok(finished(result, record, Some(incident_path), None))
}

/// The backup to restore: the record's, else `backup.json`'s.
fn backup_of(state: &StateDir, record: &Record) -> Result<Backup> {
    if let Some(backup) = &record.database_backup {
        return Ok(backup.clone());
    }
    let from_state = state.load::<BackupFile>()?.as_ref().and_then(Backup::of);
    from_state.ok_or_else(|| {
        Error::usage(format!(
            "`--restore-database` was given but deployment `{}` has no database backup (none in the record, no `backup.json`); roll back without it or restore from your own recovery point",
            record.deployment_id
        ))
    })
}

/// The restore: the user's script, or this very executable's `restore --location <location> --yes`,
/// run as a plain CLI child (no runner files, so its outputs and annotations do not mix with
/// ours; its output is streamed, redacted, into this step's log). Its environment is the hook's
/// (`SHIPGATE_*` of the rollback) plus `SHIPGATE_BACKUP_ID`, `SHIPGATE_BACKUP_LOCATION` and
/// `SHIPGATE_BACKUP_SHA256`.
fn restore_spec(
    outside: &Outside<'_>,
    state: &StateDir,
    options: &Options,
    backup: &Backup,
    context: &Context,
) -> Result<Spec> {
    let mut spec = match &options.restore_command {
        Some(script) => Spec::shell("restore", script),
        None => Spec::new(
            "restore",
            (outside.restore_argv)(state.id(), &backup.location)?,
        )
        .shipgate_child(),
    };
    for var in [
        "GITHUB_OUTPUT",
        "GITHUB_ENV",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_STATE",
        "GITHUB_PATH",
        "GITHUB_ACTIONS",
    ] {
        spec = spec.env_remove(var);
    }
    for (key, value) in context.env() {
        spec = spec.env(key, value);
    }
    spec = spec
        .env("SHIPGATE_BACKUP_ID", backup.backup_id.clone())
        .env("SHIPGATE_BACKUP_LOCATION", backup.location.clone());
    if let Some(sha) = &backup.sha256 {
        spec = spec.env("SHIPGATE_BACKUP_SHA256", sha.clone());
    }
    Ok(spec.timeout(Some(RESTORE_TIMEOUT)))
}

async fn mark_github(
    github: &dyn Fn() -> Result<GitHub>,
    id: u64,
    reason: &str,
    environment_url: Option<&str>,
) -> MarkedDeployment {
    let outcome = async {
        let github = github()?;
        post_status(
            &github,
            id,
            "inactive",
            &format!("rolled back by shipgate: {reason}"),
            environment_url,
        )
        .await
    }
    .await;
    match outcome {
        Ok(()) => MarkedDeployment {
            id,
            state: Some("inactive".to_string()),
            error: None,
        },
        Err(e) => {
            actions::annotate(
                actions::Level::Warning,
                Some("shipgate rollback"),
                &format!(
                    "production is rolled back, but GitHub deployment {id} could not be marked inactive: {e}"
                ),
            );
            MarkedDeployment {
                id,
                state: None,
                error: Some(e.to_string()),
            }
        }
    }
}

/// A step failed: the message says production may be in between versions.
fn fail(mut result: RollbackFile, record: &Record, what: &str) -> Finished {
    let message = format!(
        "{what}; deployment `{}` is NOT rolled back cleanly: production may be in between versions — act now (log: `rollback-logs-{}.log` in the state dir)",
        record.deployment_id, record.deployment_id
    );
    result.error = Some(message.clone());
    finished(
        result,
        record,
        None,
        Some(Error::new(Kind::RollbackFailed, message)),
    )
}

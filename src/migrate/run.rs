//! One migration run: the backup check, the lock, the history before, the command (guarded so
//! that its SQL stops before the lock can go, even if shipgate dies), the history after, unlock.

use std::path::Path;
use std::time::Duration;

use super::history::{TableName, count, describe_before, display_table, snapshot, tools};
use super::lock::{LOCK_PING_EVERY, acquire, stop_sessions};
use crate::actions::{self, Level};
use crate::error::{Error, Result, ResultExt};
use crate::exit;
use crate::postgres::{self, Database};
use crate::process::{self, Finished, LogFile, Spec};
use crate::secret::Secret;
use crate::state::StateDir;
use crate::state::backup::{BackupFile, BackupOutcome};
use crate::state::migrate::{BackupRef, MigrateFile};
use crate::ui::format_duration;

/// Resolved options.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) argv: Vec<String>,
    pub(crate) shell: bool,
    pub(crate) timeout: Duration,
    pub(crate) lock_timeout: Duration,
    pub(crate) lock_key: i64,
    /// Where the key came from, for logs and the state file.
    pub(crate) lock_key_source: String,
    pub(crate) history_table: Option<TableName>,
    pub(crate) backup_required: bool,
}

impl Options {
    /// The command as logs show it (the script alone for `--shell`), redacted.
    pub(crate) fn shown(&self) -> String {
        if self.shell {
            crate::secret::redact(self.argv.last().map(String::as_str).unwrap_or(""))
        } else {
            crate::secret::redact(&self.argv.join(" "))
        }
    }
}

/// Backup check, lock, count, run, count, unlock. Returns the exit code of a run that got as far
/// as the command; earlier failures are errors.
pub(crate) async fn migrate(
    options: &Options,
    db: &Database,
    url: &Secret,
    state: &StateDir,
    log_path: &Path,
    result: &mut MigrateFile,
) -> Result<exit::Status> {
    result.backup = check_backup(state, options.backup_required)?;
    let mut log = LogFile::append(log_path)?;
    log.line(&format!(
        "[{}] shipgate migrate: deployment {}, environment {}, database {}",
        crate::util::now_rfc3339(),
        state.id(),
        result.environment,
        db.display()
    ));

    let shutdown = process::shutdown_signal();
    tokio::pin!(shutdown);

    let lock_group = actions::group("Migration lock");
    let db = db.with_application_name(&format!("shipgate migrate {}", state.id()));
    let mut session = db
        .session()
        .await
        .context("cannot open the connection that holds the migration lock")?;
    tracing::info!(
        "taking the migration lock (advisory lock {} from {}) on {}",
        options.lock_key,
        options.lock_key_source,
        db.display()
    );
    let waited = acquire(
        &mut session,
        options.lock_key,
        options.lock_timeout,
        shutdown.as_mut(),
        result,
    )
    .await;
    result.lock_wait_ms = waited.as_ref().map_or_else(|(w, _)| *w, |w| *w).as_millis() as u64;
    if let Err((_, error)) = waited {
        log.line(&format!(
            "[{}] not run: {}",
            crate::util::now_rfc3339(),
            error.message()
        ));
        return Err(error);
    }
    tracing::info!(
        "holding the migration lock (waited {})",
        format_duration(Duration::from_millis(result.lock_wait_ms))
    );
    log.line(&format!(
        "[{}] migration lock {} taken after {}",
        crate::util::now_rfc3339(),
        options.lock_key,
        format_duration(Duration::from_millis(result.lock_wait_ms))
    ));
    drop(lock_group);

    let before = match snapshot(&db, options.history_table.as_ref()).await {
        Ok(before) => Some(before),
        Err(e) => {
            actions::annotate(
                Level::Warning,
                Some("shipgate migrate"),
                &format!("{e}; the migrations applied will not be counted"),
            );
            None
        }
    };
    if let Some(before) = &before {
        describe_before(before, options.history_table.as_ref());
    }

    // A cancellation that arrived while counting: do not start anything.
    let stopped = tokio::select! {
        biased;
        _ = shutdown.as_mut() => true,
        _ = std::future::ready(()) => false,
    };
    if stopped {
        return Err(Error::dependency(
            "stopped before the migration command started; nothing was run",
        ));
    }

    // The command's sessions carry PGAPPNAME (libpq, pgx, lib/pq, node-postgres, sqlx honour
    // it), so that the ones it leaves running can be found and stopped under the lock: by
    // shipgate when the command ends, by the guard (through the lock session, before the lock
    // can go) when shipgate dies first.
    let spec = Spec::new("migration command", options.argv.clone())
        .secret_env("DATABASE_URL", url)
        .env("PGAPPNAME", &result.application_name)
        .env("SHIPGATE_DEPLOYMENT_ID", state.id())
        .env("SHIPGATE_ENVIRONMENT", &result.environment)
        .env_remove("INPUT_GITHUB-TOKEN")
        .timeout(Some(options.timeout))
        .die_with_shipgate(
            session.keepalive().ok(),
            Some(postgres::stop_sessions_script(&result.application_name)),
        );
    let run_group = actions::group(&format!("Run {}", actions::quote(&options.shown())));
    tracing::info!(
        "running {} (timeout {})",
        actions::quote(&options.shown()),
        format_duration(options.timeout)
    );
    let finished = {
        let run = process::run_guarded(&spec, Some(&mut log), shutdown.as_mut());
        tokio::pin!(run);
        // The lock connection sits idle while the command runs: a query now and then keeps
        // proxies, NAT and `idle_session_timeout` from dropping it, and notices if it was.
        // (Scaled like retry pauses, so that tests see it within their time.)
        let every = crate::util::retry_delay(LOCK_PING_EVERY).max(Duration::from_millis(20));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                finished = &mut run => break finished,
                _ = ping.tick(), if !result.lock_lost => {
                    if let Err(e) = session.query("SELECT 1").await {
                        result.lock_lost = true;
                        actions::annotate(
                            Level::Warning,
                            Some("shipgate migrate"),
                            &format!("{e}: the migration lock is lost while the command still runs; another run may start and overlap this one"),
                        );
                    }
                }
            }
        }
    };
    drop(run_group);
    let (finished, guard) = finished?;
    record_finish(result, &finished);
    stop_sessions(&mut session, result, &mut log).await;

    let after = snapshot(&db, options.history_table.as_ref()).await;
    match (&before, after) {
        (Some(before), Ok(after)) => {
            let counted = count(before, &after);
            result.tool = tools(&counted);
            result.applied_count = counted.applied_count;
            result.applied = counted.applied;
            result.failed = counted.failed;
            result.history_tables = counted.tables;
        }
        (_, Err(e)) => actions::annotate(
            Level::Warning,
            Some("shipgate migrate"),
            &format!("{e}; the migrations applied are not counted"),
        ),
        (None, Ok(_)) => {}
    }
    if result.tool.is_none() && before.is_some() {
        actions::annotate(
            Level::Warning,
            Some("shipgate migrate"),
            &match &options.history_table {
                Some(name) => format!(
                    "the history table {} does not exist after the run; the migrations applied are not counted (check `history-table`)",
                    actions::quote(&display_table(name))
                ),
                None => "no migration history table of a known tool was found; the migrations applied are not counted (set `history-table` to count them)".to_string(),
            },
        );
    }

    match session.advisory_unlock(options.lock_key).await {
        Ok(true) => {}
        Ok(false) | Err(_) if result.lock_lost => {}
        Ok(false) | Err(_) => {
            result.lock_lost = true;
            actions::annotate(
                Level::Warning,
                Some("shipgate migrate"),
                "the connection holding the migration lock was lost during the run (database restart or cut connection); another run may have overlapped this one: check the migration history",
            );
        }
    }
    session.close().await;
    if let Some(guard) = guard {
        guard.dismiss().await;
    }
    log.line(&format!(
        "[{}] result: {}; applied {}: {}",
        crate::util::now_rfc3339(),
        finished.describe(),
        result
            .applied_count
            .map_or_else(|| "unknown".to_string(), |n| n.to_string()),
        if result.applied.is_empty() {
            "-".to_string()
        } else {
            result.applied.join(", ")
        }
    ));

    Ok(if finished.success() {
        exit::Status::Success
    } else if finished.timed_out {
        exit::Status::Timeout
    } else {
        exit::Status::Dependency
    })
}

pub(crate) fn record_finish(result: &mut MigrateFile, finished: &Finished) {
    result.left_processes = finished.left_processes;
    result.warning = finished.warning.clone();
    result.exit_code = finished.exit_code;
    result.signal = finished.signal;
    result.timed_out = finished.timed_out;
    result.cancelled = finished.cancelled;
    result.command_duration_ms = Some(finished.duration_ms);
    if finished.success() {
        result.header.result = "pass".to_string();
    } else {
        result.output_tail = finished.tail.clone();
        result.error = Some(format!("the migration command {}", how_it_ended(result)));
    }
}

/// Refuses to migrate without a verified backup of this deployment (seed 004 §3: a restorable
/// backup comes before any database change), unless told to.
pub(crate) fn check_backup(state: &StateDir, required: bool) -> Result<Option<BackupRef>> {
    let path = state.path("backup.json");
    let fix = "run `shipgate backup` for this deployment first, or pass `--no-backup-required` (input `backup-required: false`) to migrate without one";
    let backup: Option<BackupFile> = state.load()?;
    let Some(backup) = backup else {
        if required {
            return Err(Error::gate(format!(
                "no backup of deployment `{}`: `{}` does not exist; {fix}",
                state.id(),
                path.display()
            )));
        }
        actions::annotate(
            Level::Warning,
            Some("shipgate migrate"),
            &format!(
                "migrating deployment `{}` without a backup (`backup-required: false`)",
                state.id()
            ),
        );
        return Ok(None);
    };
    let reference = match &backup.outcome {
        BackupOutcome::Taken(taken) => BackupRef {
            backup_id: Some(taken.backup_id.clone()),
            location: Some(crate::secret::redact_url(&taken.location)),
            verified: backup.taken().is_some_and(|t| t.verified),
        },
        BackupOutcome::Failed(failed) => BackupRef {
            backup_id: failed.backup_id.clone(),
            location: failed.location.as_deref().map(crate::secret::redact_url),
            verified: false,
        },
    };
    if !reference.verified {
        let id = reference
            .backup_id
            .as_deref()
            .map_or_else(String::new, |id| format!(" {}", actions::quote(id)));
        if required {
            return Err(Error::gate(format!(
                "the backup{id} of deployment `{}` is not verified (`{}` does not say `verified: true` with `result: pass`); {fix}",
                state.id(),
                path.display()
            )));
        }
        actions::annotate(
            Level::Warning,
            Some("shipgate migrate"),
            &format!(
                "migrating deployment `{}` with an unverified backup (`backup-required: false`)",
                state.id()
            ),
        );
    } else {
        tracing::info!(
            "verified backup{}: {}",
            reference
                .backup_id
                .as_deref()
                .map_or_else(String::new, |id| format!(" {}", actions::quote(id))),
            reference.location.as_deref().unwrap_or("(no location)")
        );
    }
    Ok(Some(reference))
}

pub(crate) fn how_it_ended(result: &MigrateFile) -> String {
    let duration = format_duration(Duration::from_millis(
        result.command_duration_ms.unwrap_or(0),
    ));
    if result.timed_out {
        return format!(
            "timed out after {}; its whole process group was killed",
            format_duration(Duration::from_millis(result.timeout_ms))
        );
    }
    if result.cancelled {
        return format!("was stopped after {duration} because shipgate was cancelled");
    }
    match (result.exit_code, result.signal) {
        (Some(127), _) if result.shell => {
            "failed with exit code 127: the shell could not find a command in the script".into()
        }
        (Some(code), _) => format!("failed with exit code {code} after {duration}"),
        (None, Some(signal)) => format!("was killed by signal {signal} after {duration}"),
        _ => format!("ended without a status after {duration}"),
    }
}

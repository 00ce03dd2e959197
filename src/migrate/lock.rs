//! The migration lock: a PostgreSQL advisory lock held on a session of its own for the whole
//! run; its key (stable across runners and versions), the wait that names the holder, and the
//! stop of the command's leftover sessions before the lock is released.

use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::actions::{self, Level};
use crate::error::Error;
use crate::postgres::{self, LockHolder, Session};
use crate::process::LogFile;
use crate::state::migrate::MigrateFile;
use crate::ui::format_duration;

/// Pauses between attempts to take the lock: from the first to the last, doubling.
const LOCK_POLL_FIRST: Duration = Duration::from_millis(50);
const LOCK_POLL_MAX: Duration = Duration::from_millis(250);
/// How often the lock connection is used while the command runs.
pub(crate) const LOCK_PING_EVERY: Duration = Duration::from_secs(30);
/// How often the holder is named again while waiting.
const LOCK_REPORT_EVERY: Duration = Duration::from_secs(30);
/// PostgreSQL keeps the first 63 bytes of an `application_name`.
const APPLICATION_NAME_MAX: usize = 63;

/// What the default lock key is derived from: one lock per repository and environment.
pub(crate) fn default_lock_text(repository: &str, environment: &str) -> String {
    format!("shipgate migrate {repository} {environment}")
}

/// The advisory lock key for `text`: the first 8 bytes of its SHA-256, big-endian, as a signed
/// 64-bit integer. Stable across versions and machines: every runner must derive the same key.
pub(crate) fn hashed_key(text: &str) -> i64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// `shipgate-migrate-<deployment id>-<random>`: distinct per run (two runs of one deployment,
/// for two databases on one server, must not stop each other's sessions), within the 63 bytes
/// PostgreSQL keeps.
pub(crate) fn application_name(deployment_id: &str) -> String {
    let suffix = format!("-{}", crate::util::random_hex(3));
    let prefix = "shipgate-migrate-";
    let room = APPLICATION_NAME_MAX - prefix.len() - suffix.len();
    // Deployment ids are ASCII (letters, digits, `.`, `_`, `-`).
    let id: String = deployment_id.chars().take(room).collect();
    format!("{prefix}{id}{suffix}")
}

/// Stops what the command left running on the server (its sessions, found by
/// `application_name`) while the lock is still held, and says so when it was more than
/// connections closing.
pub(crate) async fn stop_sessions(
    session: &mut Session,
    result: &mut MigrateFile,
    log: &mut LogFile,
) {
    if result.lock_lost {
        // The lock connection is gone (already reported): nothing to protect, no way to ask.
        return;
    }
    let stopped = match session.stop_sessions(&result.application_name).await {
        Ok(stopped) => stopped,
        Err(e) => {
            actions::annotate(
                Level::Warning,
                Some("shipgate migrate"),
                &format!(
                    "{e}: cannot check for database sessions the migration command left running (application_name `{}`); check `pg_stat_activity` before the next migration",
                    result.application_name
                ),
            );
            return;
        }
    };
    let busy: Vec<&postgres::SessionSeen> = stopped.sessions.iter().filter(|s| s.busy()).collect();
    if busy.is_empty() && stopped.remaining == 0 {
        return;
    }
    let listed = busy
        .iter()
        .map(|s| {
            format!(
                "pid {} ({}{})",
                s.pid.map_or_else(|| "?".to_string(), |p| p.to_string()),
                s.state.as_deref().unwrap_or("?"),
                s.query
                    .as_deref()
                    .map(|q| format!(": {}", actions::quote(q)))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let message = if stopped.remaining == 0 {
        format!(
            "{} database session(s) of the migration command were still running SQL after it ended ({listed}); they were cancelled (terminated if needed) before the migration lock was released",
            busy.len()
        )
    } else {
        format!(
            "database sessions of the migration command were still running after it ended ({listed}); {} still there after a minute of cancelling and terminating them: the lock is released anyway, check `pg_stat_activity` for application_name `{}` before the next migration",
            stopped.remaining, result.application_name
        )
    };
    log.line(&format!(
        "[{}] warning: {message}",
        crate::util::now_rfc3339()
    ));
    actions::annotate(Level::Warning, Some("shipgate migrate"), &message);
    result.stopped_sessions = busy.into_iter().cloned().collect();
    result.warning = Some(match result.warning.take() {
        Some(earlier) => format!("{earlier}; {message}"),
        None => message,
    });
}

/// Polls `pg_try_advisory_lock` until it succeeds, the lock timeout passes, or shipgate is told
/// to stop. Returns how long it waited; on failure also the error naming the holder.
pub(crate) async fn acquire(
    session: &mut Session,
    key: i64,
    timeout: Duration,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    result: &mut MigrateFile,
) -> std::result::Result<Duration, (Duration, Error)> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut pause = LOCK_POLL_FIRST;
    let mut last_report: Option<Instant> = None;
    loop {
        match session.try_advisory_lock(key).await {
            Ok(true) => return Ok(started.elapsed()),
            Ok(false) => {}
            Err(e) => {
                return Err((
                    started.elapsed(),
                    Error::from(e).context("cannot take the migration lock"),
                ));
            }
        }
        let now = Instant::now();
        let report_due = last_report.is_none_or(|at| now - at >= LOCK_REPORT_EVERY);
        if report_due || now >= deadline {
            let holders = session.advisory_lock_holders(key).await.unwrap_or_default();
            for holder in &holders {
                if !result.lock_holders.iter().any(|h| h.pid == holder.pid) {
                    result.lock_holders.push(holder.clone());
                }
            }
            let named = name_holders(&holders);
            if now >= deadline {
                return Err((
                    started.elapsed(),
                    Error::timeout(format!(
                        "the migration lock (advisory lock {key}) is still held by {named} after waiting {}; let that run finish and re-run, end it if it is stuck (`SELECT pg_terminate_backend(<pid>)`), or wait longer with `--lock-timeout`",
                        format_duration(started.elapsed())
                    )),
                ));
            }
            tracing::info!(
                "the migration lock is held by {named}; waiting up to {} for it",
                format_duration(deadline - now)
            );
            last_report = Some(now);
        }
        let sleep = pause.min(deadline.saturating_duration_since(Instant::now()));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.as_mut() => {
                return Err((
                    started.elapsed(),
                    Error::dependency("stopped while waiting for the migration lock; nothing was run"),
                ));
            }
        }
        pause = (pause * 2).min(LOCK_POLL_MAX);
    }
}

pub(crate) fn name_holders(holders: &[LockHolder]) -> String {
    match holders {
        [] => "a session that released it as it was looked up".to_string(),
        [one] => one.describe(),
        many => many
            .iter()
            .map(LockHolder::describe)
            .collect::<Vec<_>>()
            .join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_key_never_changes() {
        // Every runner, every version of shipgate, must derive the same key: this pins it.
        assert_eq!(
            hashed_key(&default_lock_text("octo/app", "production")),
            -4_271_874_471_539_250_901
        );
        // SHA-256("") starts e3b0c44298fc1c14.
        assert_eq!(hashed_key(""), -2_039_914_840_885_289_964);
        assert_ne!(
            hashed_key(&default_lock_text("octo/app", "production")),
            hashed_key(&default_lock_text("octo/app", "staging"))
        );
    }
}

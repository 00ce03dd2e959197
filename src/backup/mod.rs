//! The backup's domain, under `shipgate backup`, `backup prune` and `restore`: its `backup:`
//! configuration, the stream (`archive`), taking the backup (`dump`), `verify`, the `sidecar`,
//! `report`, `prune`, `restore` and the destination (`storage`). Values come in as parameters:
//! nothing here reads `settings` or a clap struct.

pub(crate) mod archive;
pub(crate) mod config;
pub(crate) mod directory;
pub(crate) mod dump;
pub(crate) mod prune;
pub(crate) mod report;
pub(crate) mod restore;
pub(crate) mod sidecar;
pub(crate) mod storage;
pub(crate) mod verify;

use crate::process::SharedLog;

/// A timestamped line in the log file only.
pub(crate) fn log_line(log: &SharedLog, text: &str) {
    if let Ok(mut log) = log.lock() {
        log.line(&format!("[{}] {text}", crate::util::now_rfc3339()));
    }
}

/// Shows `progress` (redrawn in place on a live terminal, else a line) and logs it to the log
/// file.
pub(crate) fn show_progress(log: &SharedLog, progress: &archive::Progress) {
    let line = progress.line();
    if crate::ui::live() {
        let (text, fraction) = progress.live();
        crate::ui::progress(&text, fraction);
    } else {
        crate::ui::progress(&line, None);
    }
    log_line(log, &line);
}

/// How often progress is shown in plain lines (a live terminal redraws more often).
pub(crate) const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `work`, calling `tick` every [`PROGRESS_EVERY`] (more often on a live terminal) until
/// it is done.
async fn ticking<T>(work: impl std::future::Future<Output = T>, mut tick: impl FnMut()) -> T {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(crate::ui::progress_every(PROGRESS_EVERY));
    ticker.tick().await;
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticker.tick() => tick(),
        }
    }
}

/// Runs `work`, showing `progress` every [`PROGRESS_EVERY`] until it is done.
pub(crate) async fn with_progress<T>(
    log: &SharedLog,
    progress: &archive::Progress,
    work: impl std::future::Future<Output = T>,
) -> T {
    ticking(work, || show_progress(log, progress)).await
}

/// Runs `work`, whose progress cannot be measured (`pg_restore --jobs` from a directory),
/// showing `what` and how long it has run every [`PROGRESS_EVERY`] until it is done.
pub(crate) async fn with_elapsed<T>(
    log: &SharedLog,
    what: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    let started = std::time::Instant::now();
    ticking(work, || {
        let line = format!(
            "{what}: {} so far",
            crate::ui::whole_seconds(started.elapsed())
        );
        crate::ui::progress(&line, None);
        log_line(log, &line);
    })
    .await
}

/// Logs to stderr and the log file.
pub(crate) fn say(log: &SharedLog, text: &str) {
    tracing::info!("{text}");
    log_line(log, text);
}

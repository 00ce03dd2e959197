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

/// Logs to stderr and the log file.
pub(crate) fn say(log: &SharedLog, text: &str) {
    tracing::info!("{text}");
    log_line(log, text);
}

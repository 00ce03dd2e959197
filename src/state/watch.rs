//! `watch.json`: the post-deploy watch — its window, what the gates said, the breach and the
//! rollback it triggered, or the signal that ended it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rollout::StageVerdict;
use super::{Header, StateFile};

/// `watch.json`, and `watch`'s `--format json` object. `result` is `in_progress` while it runs
/// (a reader takes it as interrupted), then `pass` (a clean window: the record is marked
/// watched), `rolled_back` (a breach, rolled back), `rollback_failed` or `cancelled` (a signal
/// ended it; nothing was rolled back). A re-run continues an `in_progress` or `cancelled` watch
/// until the same `ends_at`, and changes nothing after the others.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct WatchFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) deployment_id: String,
    pub(crate) version: String,
    /// When the first run of this watch started (RFC 3339).
    pub(crate) started_at: String,
    /// When the window ends: `--for` after `started_at`, or the record's rollback deadline when
    /// that comes first (`capped_by_deadline`).
    pub(crate) ends_at: String,
    pub(crate) capped_by_deadline: bool,
    /// `--for` and `--interval`, in milliseconds.
    pub(crate) for_ms: u64,
    pub(crate) interval_ms: u64,
    /// Probes taken and metric measurements made by this run.
    pub(crate) samples: u64,
    pub(crate) measurements: u64,
    /// The gates' last verdicts.
    pub(crate) verdicts: Vec<StageVerdict>,
    /// The gate that breached and why, in words.
    pub(crate) breach: Option<Breach>,
    /// `SIGTERM` or `SIGINT`, when a signal ended the watch.
    pub(crate) cancelled_by: Option<String>,
    /// The rollback the breach triggered: `rollback.json`'s `result` (`pass`, `fail`).
    pub(crate) rollback: Option<String>,
    /// Whether `shipgate notify` announced the rollback (`None`: not run).
    pub(crate) notified: Option<bool>,
    pub(crate) log_file: String,
}

impl StateFile for WatchFile {
    const FILE: &'static str = "watch.json";
    const COMMAND: &'static str = "watch";
}

/// What breached.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Breach {
    pub(crate) gate: String,
    pub(crate) reason: String,
    /// When it was seen (RFC 3339).
    pub(crate) at: String,
}
